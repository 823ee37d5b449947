import { createHash } from 'node:crypto';
import {
  DescribeSecretCommand,
  PutSecretValueCommand,
  type SecretsManagerClient,
  UpdateSecretVersionStageCommand,
} from '@aws-sdk/client-secrets-manager';
import { ConflictError, NotFoundError } from '../errors';
import { generateGossipKey, gossipKeyFingerprint } from './key';

/** One version of the gossip key secret, as far as it can be known without reading the key. */
export interface StagedGossipKey {
  versionId: string;
  /** The key's fingerprint; undefined for a version the rotator did not write (a placeholder, a key set by hand). */
  fingerprint?: string;
  /** Whether the rollout asked about wrote this version. */
  ofRollout: boolean;
}

export interface GossipKeyStages {
  current?: StagedGossipKey;
  pending?: StagedGossipKey;
  previous?: StagedGossipKey;
}

/**
 * The cluster's gossip key in Secrets Manager: AWSPENDING while a rollout installs it, AWSCURRENT
 * once every server uses it, AWSPREVIOUS kept for repairs. Servers read the key themselves with
 * their instance role; the rotator writes a new one and moves the stages but never reads a key back,
 * so its role needs no GetSecretValue. It learns fingerprints from the version ids it writes.
 */
export interface GossipKeyCustody {
  stages(secretId: string, rolloutId: string): Promise<GossipKeyStages>;
  /**
   * A fresh key as AWSPENDING for this rollout, or the one it already staged (a step cut off and run
   * again keeps its key). Moves AWSPENDING off any version an ended rollout left.
   */
  stagePending(secretId: string, rolloutId: string): Promise<Required<StagedGossipKey>>;
  /** AWSCURRENT to the rollout's key (AWSPREVIOUS follows to the key it replaces); done once is done. */
  promotePending(secretId: string, rolloutId: string): Promise<void>;
  /** The rollout's key no longer pending (a halted rotation); nothing to do when it is not. */
  discardPending(secretId: string, rolloutId: string): Promise<void>;
}

/**
 * `gossip-<fingerprint>-<rollout tag>`: 48 characters, inside the 32 to 64 Secrets Manager takes
 * for a ClientRequestToken. The tag is a hash of the rollout id, whose own length varies.
 */
const VERSION_ID = /^gossip-([0-9a-f]{16})-([0-9a-f]{24})$/;

function gossipVersionId(fingerprint: string, rolloutId: string): string {
  return `gossip-${fingerprint}-${rolloutTag(rolloutId)}`;
}

function rolloutTag(rolloutId: string): string {
  return createHash('sha256').update(rolloutId).digest('hex').slice(0, 24);
}

export class SecretsManagerGossipKeys implements GossipKeyCustody {
  constructor(private readonly secrets: SecretsManagerClient) {}

  async stages(secretId: string, rolloutId: string): Promise<GossipKeyStages> {
    const { VersionIdsToStages } = await this.secrets.send(new DescribeSecretCommand({ SecretId: secretId }));
    const tag = rolloutTag(rolloutId);
    const stages: GossipKeyStages = {};
    for (const [versionId, labels] of Object.entries(VersionIdsToStages ?? {})) {
      const match = VERSION_ID.exec(versionId);
      const staged: StagedGossipKey = {
        versionId,
        ...(match?.[1] !== undefined ? { fingerprint: match[1] } : {}),
        ofRollout: match?.[2] === tag,
      };
      if (labels.includes('AWSCURRENT')) stages.current = staged;
      if (labels.includes('AWSPENDING')) stages.pending = staged;
      if (labels.includes('AWSPREVIOUS')) stages.previous = staged;
    }
    return stages;
  }

  async stagePending(secretId: string, rolloutId: string): Promise<Required<StagedGossipKey>> {
    const before = await this.stages(secretId, rolloutId);
    const staged = [before.pending, before.current].find((version) => version?.ofRollout);
    if (staged?.fingerprint !== undefined) return { ...staged, fingerprint: staged.fingerprint };

    const key = generateGossipKey();
    const fingerprint = gossipKeyFingerprint(key);
    const versionId = gossipVersionId(fingerprint, rolloutId);
    await this.secrets.send(
      new PutSecretValueCommand({
        SecretId: secretId,
        ClientRequestToken: versionId,
        SecretString: key,
        VersionStages: ['AWSPENDING'],
      }),
    );
    // Two runs staging at once would each write a key; only the one left pending may go on.
    const after = await this.stages(secretId, rolloutId);
    if (after.pending?.versionId !== versionId) {
      throw new ConflictError('another key was staged for the gossip secret at the same time', {
        context: { secretId },
      });
    }
    return { versionId, fingerprint, ofRollout: true };
  }

  async promotePending(secretId: string, rolloutId: string): Promise<void> {
    const { current, pending } = await this.stages(secretId, rolloutId);
    if (current?.ofRollout) return;
    if (!pending?.ofRollout) {
      throw new NotFoundError('the gossip secret holds no pending key of this rollout', {
        context: { secretId },
      });
    }
    await this.secrets.send(
      new UpdateSecretVersionStageCommand({
        SecretId: secretId,
        VersionStage: 'AWSCURRENT',
        MoveToVersionId: pending.versionId,
        ...(current !== undefined ? { RemoveFromVersionId: current.versionId } : {}),
      }),
    );
  }

  async discardPending(secretId: string, rolloutId: string): Promise<void> {
    const { pending } = await this.stages(secretId, rolloutId);
    if (!pending?.ofRollout) return;
    await this.secrets.send(
      new UpdateSecretVersionStageCommand({
        SecretId: secretId,
        VersionStage: 'AWSPENDING',
        RemoveFromVersionId: pending.versionId,
      }),
    );
  }
}

/** The key a rollout staged (pending, or current once promoted), staged now if it has none yet. */
export async function rolloutKey(
  custody: GossipKeyCustody,
  secretId: string,
  rolloutId: string,
): Promise<{ versionId: string; fingerprint: string }> {
  const stages = await custody.stages(secretId, rolloutId);
  const staged = [stages.pending, stages.current].find((version) => version?.ofRollout);
  if (staged?.fingerprint === undefined) return custody.stagePending(secretId, rolloutId);
  return { versionId: staged.versionId, fingerprint: staged.fingerprint };
}
