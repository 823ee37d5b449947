import { ConflictError } from '../errors';
import { withCorrelation } from '../log-context';
import type { CommandResult } from '../rollout/plan';
import { parseRoutingKey } from '../rollout/routing';
import type { Runtime } from '../runtime';

/**
 * The statuses after which a command no longer changes (SSM CommandStatus: Pending, InProgress,
 * Cancelling and these). SSM gives a command one of them once every invocation has ended, so only
 * then are its results worth reading.
 */
const FINAL_STATUSES = new Set(['Success', 'Failed', 'TimedOut', 'Cancelled']);

/** One SSM "EC2 Command Status-change Notification", already validated. */
export interface CommandStatusChange {
  commandId: string;
  status: string;
}

/** What became of a status change; every one of them is final for its queue message. */
export type CommandStatusResult = 'in-progress' | 'not-ours' | 'applied' | 'already-applied';

export type CommandStatusRuntime = Pick<Runtime, 'commands' | 'clusterNames' | 'rotation' | 'logger'>;

/**
 * Apply a command's final status: its invocations are listed once (events carry neither output nor
 * comment), a target whose output the listing cut is read alone, the command is routed to its
 * cluster by its comment, and every target's result goes to the engine at once. A ConflictError
 * means a duplicate event, the reconcile path or a concurrent tick got there first; what it left
 * unapplied the next reconcile reads. Anything else thrown is worth a retry of the same message.
 */
export async function applyCommandStatus(
  runtime: CommandStatusRuntime,
  change: CommandStatusChange,
  deadline: number,
): Promise<CommandStatusResult> {
  if (!FINAL_STATUSES.has(change.status)) return 'in-progress';
  try {
    const listing = await runtime.commands.invocations(change.commandId);
    const tag = parseRoutingKey(listing.comment);
    if (tag === undefined || !runtime.clusterNames().includes(tag.cluster)) return 'not-ours';
    const results = new Map<string, CommandResult>(listing.results);
    for (const target of listing.cut)
      results.set(target, await runtime.commands.invocation(change.commandId, target));
    const applied = await withCorrelation(runtime.logger, { cluster: tag.cluster }, () =>
      runtime.rotation(tag.cluster).onCommand(tag, results, deadline),
    );
    return applied ? 'applied' : 'already-applied';
  } catch (error) {
    if (error instanceof ConflictError) return 'already-applied';
    throw error;
  }
}
