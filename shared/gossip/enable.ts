import type { Logger } from '../logger';
import type { AttemptRecord, RolloutRecord } from '../rollout/model';
import type { RolloutMilestone, StepOutcome, StepVerdict } from '../rollout/plan';
import { type GossipKeyCustody, rolloutKey } from './custody';
import { readChange } from './outputs';
import { type ServerByServerDependencies, ServerByServerPlan } from './staged';

export const GOSSIP_ENABLE_PLAN = 'gossipenable';

/**
 * What the cluster goes through while encryption is enabled, said in the plan (dry run) and the
 * started event: servers that came up encrypted and those still in clear cannot gossip, so each
 * side sees the other failed and an encrypted follower's health fails (it cannot reach the leader
 * through serf) until the leader is encrypted too. Raft is untouched by gossip: the leader keeps
 * leading and the servers keep their votes, which is what each restart is judged on meanwhile.
 */
export const ENABLE_SOFT_PARTITION =
  "from the first restart until the last, servers encrypted and servers in clear cannot gossip: each side sees the other failed, encrypted followers answer health 500 and keyring calls reach only their side; Raft keeps the leader and every vote, autopilot's dead-server cleanup is off meanwhile, and the leader restarts last";

export interface GossipEnableDependencies extends ServerByServerDependencies {
  custody: GossipKeyCustody;
  logger: Logger;
}

/**
 * Enabling gossip encryption on a cluster that gossips in clear: a new key staged as AWSPENDING,
 * then one server per wave, followers first and the leader last. On each: autopilot's dead-server
 * cleanup switched off (an encrypted server looks failed to those in clear, and must not be pruned
 * from Raft), `encrypt` written to the 0600 config file (with no keyring file, Nomad seeds
 * serf.keyring from it), a restart, and Raft's word that it is back as a voter with its keyring
 * seeded, held for the stabilization time. The last server waits for the full gate instead (every
 * server alive, one keyring, autopilot able to lose one) and puts the cleanup back as it was; then
 * AWSCURRENT moves to the key. A server whose gate before its restart did not hold is tried again
 * later; one that does not come back halts the rollout at once with the gossip alarm.
 */
export class GossipEnablePlan extends ServerByServerPlan<GossipEnableDependencies> {
  readonly name = GOSSIP_ENABLE_PLAN;
  readonly steps = [{ name: 'enable' }] as const;
  /** Sent before the server was touched: its gate did not hold yet, or a read or the autopilot switch failed. */
  protected readonly untouchedRefusals = ['gate-closed', 'acl-token-unreadable', 'autopilot-config-failed'];
  get #secretId(): string {
    return this.deps.cluster.gossip.secretId;
  }

  /** The key is staged before the first server sees it; a run cut off here stages the same one again. */
  async send(rollout: RolloutRecord, _step: string, attempts: readonly AttemptRecord[], routingKey: string) {
    const key = await rolloutKey(this.deps.custody, this.#secretId, rollout.rolloutId);
    const attempt = attempts[0]!;
    const lastServer = attempt.wave === rollout.waveCount - 1;
    return this.deps.commands.send(
      'enable',
      [attempt.target],
      {
        attemptId: attempt.token,
        versionId: key.versionId,
        keyFingerprint: key.fingerprint,
        expectedServers: Number(rollout.settings.servers),
        lastServer,
        restoreCleanup: lastServer && rollout.settings.cleanupDeadServers === true,
      },
      routingKey,
    );
  }

  async judge(rollout: RolloutRecord, attempt: AttemptRecord, outcome: StepOutcome): Promise<StepVerdict> {
    if (outcome.state === 'failed') return this.failedVerdict(outcome);
    const read = readChange(outcome.stdout, attempt.token, 'enable');
    if (!read.ok) return { ok: false, reason: read.reason, final: true };
    const { report } = read;
    const key = await rolloutKey(this.deps.custody, this.#secretId, rollout.rolloutId);
    if (report.keyringFile?.length !== 1 || report.keyringFile[0] !== key.fingerprint)
      return { ok: false, reason: 'enable-not-proven:keyring-not-seeded', final: true };
    if (attempt.wave === rollout.waveCount - 1) {
      // The last server proved every server gossips on the key: it is the cluster's key now.
      const servers = Number(rollout.settings.servers);
      if (!report.list.ok || report.list.counts[key.fingerprint] !== servers)
        return { ok: false, reason: 'enable-not-proven:keyring-not-on-every-server', final: true };
      await this.deps.custody.promotePending(this.#secretId, rollout.rolloutId);
    }
    return { ok: true };
  }

  async onSucceeded(rollout: RolloutRecord, attempt: AttemptRecord) {
    await this.deps.events.publish('GossipServerEncrypted', {
      cluster: rollout.cluster,
      rolloutId: rollout.rolloutId,
      instanceId: attempt.target,
    });
  }

  async announce(rollout: RolloutRecord, milestone: RolloutMilestone, targets: readonly string[]) {
    const base = { cluster: rollout.cluster, rolloutId: rollout.rolloutId };
    if (milestone === 'started') {
      await this.deps.events.publish('GossipEnableStarted', {
        ...base,
        reason: rollout.reason,
        servers: targets,
        softPartition: ENABLE_SOFT_PARTITION,
      });
    } else if (milestone === 'halted') {
      this.deps.telemetry.gossipRotationFailed(rollout.cluster);
      this.deps.logger.error(
        'enabling gossip encryption halted: servers may be split between encrypted and clear',
        {
          ...base,
          reason: rollout.haltReason,
        },
      );
      await this.deps.events.publish('GossipEnableHalted', { ...base, reason: rollout.haltReason });
    } else {
      const stages = await this.deps.custody.stages(this.#secretId, rollout.rolloutId);
      await this.deps.events.publish('GossipEncryptionEnabled', {
        ...base,
        fingerprint: stages.current?.fingerprint ?? 'unknown',
      });
    }
  }
}
