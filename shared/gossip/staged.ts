import { failureReason } from '../certificates/outputs';
import type { EventPublisher } from '../certificates/ports';
import type { AttemptRecord, RolloutRecord } from '../rollout/model';
import type {
  FailurePolicy,
  RolloutMilestone,
  RolloutPlan,
  StepBatches,
  StepOutcome,
  StepVerdict,
} from '../rollout/plan';
import { splitByReachability } from '../state/reachability';
import type { NodeStore } from '../state/store';
import type { GossipClusterConfig, GossipCommands, GossipTelemetry } from './plan';

export function gossipRetryPolicy(cluster: GossipClusterConfig): FailurePolicy {
  const { maxTries, backoffBaseSeconds, backoffMaxSeconds } = cluster.gossip;
  return { kind: 'retry', maxTries, backoffBaseSeconds, backoffMaxSeconds };
}

export interface ServerByServerDependencies {
  cluster: GossipClusterConfig;
  commands: GossipCommands;
  nodes: Pick<NodeStore, 'getNodes'>;
  events: EventPublisher;
  telemetry: GossipTelemetry;
}

/**
 * What the plans that restart servers one at a time (staged restarts, enable) share: one server per
 * command, none to a server whose SSM agent is offline, and the line between a refusal the script
 * sent before it touched the server (`untouchedRefusals`: tried again after backoff) and anything
 * after (final: a server that went down and did not come back is never followed by a second).
 */
export abstract class ServerByServerPlan<Dependencies extends ServerByServerDependencies>
  implements RolloutPlan
{
  abstract readonly name: string;
  abstract readonly steps: readonly { name: string }[];
  protected abstract readonly untouchedRefusals: readonly string[];

  constructor(protected readonly deps: Dependencies) {}

  failurePolicy(): FailurePolicy {
    return gossipRetryPolicy(this.deps.cluster);
  }

  async batch(
    rollout: RolloutRecord,
    _step: string,
    attempts: readonly AttemptRecord[],
  ): Promise<StepBatches> {
    const { online, offline } = await splitByReachability(this.deps.nodes, rollout.cluster, attempts);
    return {
      batches: online.map((attempt) => [attempt]),
      unreachable: offline.map((attempt) => ({ attempt, reason: 'server-offline' })),
    };
  }

  protected failedVerdict(outcome: Extract<StepOutcome, { state: 'failed' }>): StepVerdict {
    const reason = failureReason(outcome.stdout, outcome.detail);
    const retry = this.untouchedRefusals.some(
      (refusal) => reason === refusal || reason.startsWith(`${refusal}:`),
    );
    return retry ? { ok: false, reason } : { ok: false, reason, final: true };
  }

  abstract send(
    rollout: RolloutRecord,
    step: string,
    attempts: readonly AttemptRecord[],
    routingKey: string,
  ): Promise<string>;
  abstract judge(rollout: RolloutRecord, attempt: AttemptRecord, outcome: StepOutcome): Promise<StepVerdict>;
  abstract announce(
    rollout: RolloutRecord,
    milestone: RolloutMilestone,
    targets: readonly string[],
  ): Promise<void>;
}
