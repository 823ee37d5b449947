import { execFileSync } from 'node:child_process';
import {
  CreateSecretCommand,
  GetSecretValueCommand,
  type SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type SecretsManagerEmulator, startSecretsManagerEmulator } from '../../local/aws/secrets-manager';
import { NotFoundError, ValidationError } from '../../shared/errors';
import { SecretsManagerGossipKeys } from '../../shared/gossip/custody';
import { generateGossipKey, gossipKeyFingerprint, isGossipKey } from '../../shared/gossip/key';

const ROLLOUT = '20261203120000-a1b2c3';
const NEXT_ROLLOUT = '20270103120000-d4e5f6';

let sm: SecretsManagerEmulator;
let client: SecretsManagerClient;
let custody: SecretsManagerGossipKeys;
let secretId: string;
let secrets = 0;

beforeAll(async () => {
  sm = await startSecretsManagerEmulator();
  client = sm.client();
  custody = new SecretsManagerGossipKeys(client);
});

afterAll(async () => {
  await sm.stop();
});

/** A gossip secret as the stack creates it: a placeholder AWSCURRENT that is not a key. */
beforeEach(async () => {
  secrets += 1;
  const created = await client.send(
    new CreateSecretCommand({ Name: `prod/gossip-key-${secrets}`, SecretString: 'placeholder-not-a-key' }),
  );
  secretId = created.ARN!;
});

/** What a server reads with its instance role. */
async function read(stage: 'AWSCURRENT' | 'AWSPENDING' | 'AWSPREVIOUS'): Promise<string> {
  const { SecretString } = await client.send(
    new GetSecretValueCommand({ SecretId: secretId, VersionStage: stage }),
  );
  return SecretString!;
}

const puts = () => sm.calls.get('PutSecretValue') ?? 0;

describe('gossip key', () => {
  it('is 32 random bytes in standard base64, and its fingerprint is what a node computes with coreutils', () => {
    const key = generateGossipKey();

    const onNode = execFileSync('bash', ['-c', 'base64 -d | sha256sum | cut -c1-16'], { input: key })
      .toString()
      .trim();

    expect(Buffer.from(key, 'base64')).toHaveLength(32);
    expect(isGossipKey(key)).toBe(true);
    expect(gossipKeyFingerprint(key)).toBe(onNode);
  });

  it('refuses to fingerprint what serf would not take, without echoing it', () => {
    const twentyBytes = Buffer.from('a secret of 20 bytes').toString('base64');

    const refused = (() => {
      try {
        gossipKeyFingerprint(twentyBytes);
      } catch (error) {
        return error;
      }
    })();

    expect(refused).toBeInstanceOf(ValidationError);
    expect((refused as Error).message).not.toContain(twentyBytes);
    expect(isGossipKey(Buffer.alloc(16).toString('base64'))).toBe(true);
    expect(isGossipKey(Buffer.alloc(24).toString('base64'))).toBe(true);
    expect(isGossipKey(`${Buffer.alloc(32).toString('base64')}\n`)).toBe(false);
  });
});

describe('gossip key custody in Secrets Manager', () => {
  it('stages a new key as AWSPENDING, leaving AWSCURRENT to the servers until the rotation promotes it', async () => {
    const staged = await custody.stagePending(secretId, ROLLOUT);

    const pending = await read('AWSPENDING');
    expect(gossipKeyFingerprint(pending)).toBe(staged.fingerprint);
    expect(await read('AWSCURRENT')).toBe('placeholder-not-a-key');
    expect(JSON.stringify(staged)).not.toContain(pending);
    expect(await custody.stages(secretId, ROLLOUT)).toMatchObject({
      pending: { versionId: staged.versionId, fingerprint: staged.fingerprint, ofRollout: true },
      current: { ofRollout: false },
    });
    expect((await custody.stages(secretId, ROLLOUT)).current?.fingerprint).toBeUndefined();
  });

  it('keeps the key it staged when the step runs again after a cut-off', async () => {
    const first = await custody.stagePending(secretId, ROLLOUT);
    const putsBefore = puts();

    const again = await custody.stagePending(secretId, ROLLOUT);

    expect(again).toEqual(first);
    expect(puts()).toBe(putsBefore);
  });

  it('promotes the rollout key to AWSCURRENT with the replaced key as AWSPREVIOUS, once', async () => {
    const staged = await custody.stagePending(secretId, ROLLOUT);
    const pending = await read('AWSPENDING');

    await custody.promotePending(secretId, ROLLOUT);
    await custody.promotePending(secretId, ROLLOUT);

    expect(await read('AWSCURRENT')).toBe(pending);
    expect(await read('AWSPREVIOUS')).toBe('placeholder-not-a-key');
    const stages = await custody.stages(secretId, ROLLOUT);
    expect(stages.current).toMatchObject({ versionId: staged.versionId, fingerprint: staged.fingerprint });
    expect(await custody.stagePending(secretId, ROLLOUT)).toEqual(staged);
  });

  it("stages the next rollout's key over a halted rollout's, and a discard touches only its own", async () => {
    const halted = await custody.stagePending(secretId, ROLLOUT);

    const next = await custody.stagePending(secretId, NEXT_ROLLOUT);
    await custody.discardPending(secretId, ROLLOUT);

    expect(next.fingerprint).not.toBe(halted.fingerprint);
    expect((await custody.stages(secretId, NEXT_ROLLOUT)).pending?.versionId).toBe(next.versionId);

    await custody.discardPending(secretId, NEXT_ROLLOUT);

    expect((await custody.stages(secretId, NEXT_ROLLOUT)).pending).toBeUndefined();
    expect(await read('AWSCURRENT')).toBe('placeholder-not-a-key');
  });

  it('refuses to promote when this rollout has no pending key, and changes nothing', async () => {
    await custody.stagePending(secretId, NEXT_ROLLOUT);
    const before = await custody.stages(secretId, ROLLOUT);

    await expect(custody.promotePending(secretId, ROLLOUT)).rejects.toBeInstanceOf(NotFoundError);

    expect(await custody.stages(secretId, ROLLOUT)).toEqual(before);
  });
});
