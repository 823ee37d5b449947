import { failureReason } from '../certificates/outputs';
import type { AttemptRecord, RolloutRecord } from '../rollout/model';
import type { FailurePolicy, StepBatches, StepOutcome, StepVerdict } from '../rollout/plan';
import { splitByReachability } from '../state/reachability';
import type { NodeStore } from '../state/store';
import type { GossipClusterConfig } from './plan';

// What the plans that restart servers one at a time (staged restarts, enable) share: one server per
// command, none to a server whose SSM agent is offline, and the line between a refusal sent before
// the server was touched (tried again after backoff) and anything after (the rollout halts).

export function gossipRetryPolicy(cluster: GossipClusterConfig): FailurePolicy {
  const { maxTries, backoffBaseSeconds, backoffMaxSeconds } = cluster.gossip;
  return { kind: 'retry', maxTries, backoffBaseSeconds, backoffMaxSeconds };
}

export async function oneServerEach(
  nodes: Pick<NodeStore, 'getNodes'>,
  rollout: RolloutRecord,
  attempts: readonly AttemptRecord[],
): Promise<StepBatches> {
  const { online, offline } = await splitByReachability(nodes, rollout.cluster, attempts);
  return {
    batches: online.map((attempt) => [attempt]),
    unreachable: offline.map((attempt) => ({ attempt, reason: 'server-offline' })),
  };
}

/**
 * A failed command's verdict: another try when the script refused before touching the server
 * (`untouched`: its gate did not hold, a read failed), else final: a server that went down and did
 * not come back must not be followed by a second.
 */
export function failedCommandVerdict(
  outcome: Extract<StepOutcome, { state: 'failed' }>,
  untouched: readonly string[],
): StepVerdict {
  const reason = failureReason(outcome.stdout, outcome.detail);
  const retry = untouched.some((refusal) => reason === refusal || reason.startsWith(`${refusal}:`));
  return retry ? { ok: false, reason } : { ok: false, reason, final: true };
}
