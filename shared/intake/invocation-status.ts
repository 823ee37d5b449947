import { ConflictError } from '../errors';
import { withCorrelation } from '../log-context';
import { parseRoutingKey } from '../rollout/routing';
import type { Runtime } from '../runtime';

/** Statuses after which the invocation still changes; only a final one has output worth reading. */
const IN_PROGRESS_STATUSES = new Set(['Pending', 'InProgress', 'Delayed']);

/** One SSM "EC2 Command Invocation Status-change Notification", already validated. */
export interface InvocationStatusChange {
  commandId: string;
  instanceId: string;
  status: string;
}

/** What became of a status change; every one of them is final for its queue message. */
export type InvocationStatusResult = 'in-progress' | 'not-ours' | 'applied' | 'already-applied';

export type InvocationStatusRuntime = Pick<Runtime, 'commands' | 'clusterNames' | 'rotation' | 'logger'>;

/**
 * Apply one invocation status change: a final status is read back with GetCommandInvocation (events
 * carry no output), routed to its cluster by the command comment, and applied. A ConflictError means
 * a duplicate event, the reconcile path or a concurrent tick got there first, so there is nothing
 * left to do. Anything else thrown is worth a retry of the same message.
 */
export async function applyInvocationStatus(
  runtime: InvocationStatusRuntime,
  change: InvocationStatusChange,
  deadline: number,
): Promise<InvocationStatusResult> {
  if (IN_PROGRESS_STATUSES.has(change.status)) return 'in-progress';
  try {
    const outcome = await runtime.commands.invocation(change.commandId, change.instanceId);
    const tag = parseRoutingKey(outcome.comment);
    if (tag === undefined || !runtime.clusterNames().includes(tag.cluster)) return 'not-ours';
    const applied = await withCorrelation(runtime.logger, { cluster: tag.cluster }, () =>
      runtime.rotation(tag.cluster).onInvocation(change.instanceId, tag, outcome, deadline),
    );
    return applied ? 'applied' : 'already-applied';
  } catch (error) {
    if (error instanceof ConflictError) return 'already-applied';
    throw error;
  }
}
