import { RotatorError } from '../errors';
import type { AttemptState } from './model';

/** Everything that moves an attempt; the engine names one of these for every attempt write. */
export type AttemptEvent =
  /** Its wave sends the attempt's step (the first step starts a try). */
  | 'claim'
  /** The command could not be sent (throttled, refused) or its claim was orphaned: back to waiting. */
  | 'release'
  /** A step finished and another follows. */
  | 'step-succeeded'
  /** The last step finished. */
  | 'succeeded'
  /** A step failed, tries remain and the plan retries. */
  | 'failed'
  /** A step failed with no tries left, or the plan halts at once. */
  | 'exhausted'
  /** A failed attempt's backoff is over: its next try waits for the wave like a new one. */
  | 'retry'
  /** Its rollout was superseded. */
  | 'abandon';

/**
 * The one table of legal attempt moves. The engine asks it before every conditional write, and the
 * write then expects the `from` state, so two invocations applying the same event cannot both win.
 */
export const ATTEMPT_TRANSITIONS: Readonly<
  Record<AttemptEvent, Readonly<Partial<Record<AttemptState, AttemptState>>>>
> = {
  claim: { pending: 'sent' },
  release: { sent: 'pending' },
  'step-succeeded': { sent: 'pending' },
  succeeded: { sent: 'done' },
  failed: { sent: 'failed', pending: 'failed' },
  exhausted: { sent: 'exhausted', pending: 'exhausted' },
  retry: { failed: 'pending' },
  abandon: { pending: 'abandoned', sent: 'abandoned', failed: 'abandoned' },
};

export class IllegalTransitionError extends RotatorError {}

/** The state `event` moves an attempt in `from` to; IllegalTransitionError when the table has no such move. */
export function transition(from: AttemptState, event: AttemptEvent): AttemptState {
  const to = ATTEMPT_TRANSITIONS[event][from];
  if (to === undefined) {
    throw new IllegalTransitionError(`an attempt in ${from} cannot take ${event}`, {
      context: { from, event },
    });
  }
  return to;
}
