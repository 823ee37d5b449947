import { failureReason } from '../certificates/outputs';
import type { EventPublisher } from '../certificates/ports';
import { NotFoundError } from '../errors';
import type { AttemptRecord, RolloutRecord } from '../rollout/model';
import type { RolloutMilestone, RolloutPlan, StepBatches, StepOutcome, StepVerdict } from '../rollout/plan';
import type { GossipKeyCustody } from './custody';
import { readChange } from './outputs';
import type { GossipClusterConfig, GossipCommands, GossipTelemetry } from './plan';

export const GOSSIP_REPAIR_PLAN = 'gossiprepair';

export interface GossipRepairDependencies {
  cluster: GossipClusterConfig;
  custody: GossipKeyCustody;
  commands: GossipCommands;
  events: EventPublisher;
  telemetry: GossipTelemetry;
}

/**
 * Repair of servers the cluster's gossip key no longer reaches (a removal while one still used the
 * old key as primary, a server restored with an old data dir): one server per wave, each stopped,
 * its serf.keyring rewritten to the current key alone, started, and proven to reach every server
 * again before the next one is touched. The first failure halts, with the gossip alarm.
 */
export class GossipRepairPlan implements RolloutPlan {
  readonly name = GOSSIP_REPAIR_PLAN;
  readonly steps = [{ name: 'repair' }] as const;
  readonly #deps: GossipRepairDependencies;

  constructor(dependencies: GossipRepairDependencies) {
    this.#deps = dependencies;
  }

  failurePolicy() {
    return { kind: 'halt' } as const;
  }

  async batch(
    _rollout: RolloutRecord,
    _step: string,
    attempts: readonly AttemptRecord[],
  ): Promise<StepBatches> {
    return { batches: attempts.map((attempt) => [attempt]), unreachable: [] };
  }

  async send(rollout: RolloutRecord, _step: string, attempts: readonly AttemptRecord[], routingKey: string) {
    const { current } = await this.#deps.custody.stages(
      this.#deps.cluster.gossip.secretId,
      rollout.rolloutId,
    );
    if (current?.fingerprint === undefined)
      throw new NotFoundError('the gossip secret holds no key the rotator wrote', {
        context: { cluster: rollout.cluster },
      });
    return this.#deps.commands.send(
      'repair',
      attempts.map((attempt) => attempt.target),
      {
        attemptId: attempts[0]!.token,
        versionId: current.versionId,
        keyFingerprint: current.fingerprint,
        expectedServers: Number(rollout.settings.servers),
      },
      routingKey,
    );
  }

  async judge(rollout: RolloutRecord, attempt: AttemptRecord, outcome: StepOutcome): Promise<StepVerdict> {
    if (outcome.state === 'failed')
      return { ok: false, reason: failureReason(outcome.stdout, outcome.detail) };
    const read = readChange(outcome.stdout, attempt.token, 'repair');
    if (!read.ok) return { ok: false, reason: read.reason };
    const { report } = read;
    const servers = Number(rollout.settings.servers);
    if (!report.healthy || report.members.alive !== servers)
      return { ok: false, reason: `repair-not-proven:${report.members.alive}-of-${servers}-alive` };
    return { ok: true, carry: { primary: report.keyringFile?.[0] ?? 'none' } };
  }

  async onSucceeded(rollout: RolloutRecord, attempt: AttemptRecord, result?: Record<string, unknown>) {
    await this.#deps.events.publish('GossipServerRepaired', {
      cluster: rollout.cluster,
      rolloutId: rollout.rolloutId,
      instanceId: attempt.target,
      primary: typeof result?.primary === 'string' ? result.primary : 'unknown',
    });
  }

  async announce(rollout: RolloutRecord, milestone: RolloutMilestone, targets: readonly string[]) {
    const base = { cluster: rollout.cluster, rolloutId: rollout.rolloutId };
    if (milestone === 'started') {
      await this.#deps.events.publish('GossipRepairStarted', {
        ...base,
        reason: rollout.reason,
        servers: targets,
      });
    } else if (milestone === 'halted') {
      this.#deps.telemetry.gossipRotationFailed(rollout.cluster);
      await this.#deps.events.publish('GossipRepairHalted', { ...base, reason: rollout.haltReason });
    } else {
      await this.#deps.events.publish('GossipRepairFinished', base);
    }
  }
}
