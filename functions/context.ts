import type { Clock } from '../shared/clock';

/** The part of the Lambda context the handlers use; the local world passes its own. */
export interface InvocationContext {
  getRemainingTimeInMillis(): number;
  awsRequestId: string;
}

/** Stop this long before the Lambda timeout so state is written and the rest is left to the next run. */
const SAFETY_MARGIN_MS = 20_000;

export function deadlineFrom(context: InvocationContext, clock: Clock): number {
  return clock.now() + Math.max(context.getRemainingTimeInMillis() - SAFETY_MARGIN_MS, 1_000);
}

/** An SQS body as JSON, or undefined when it is not JSON (the schema check then drops it). */
export function parseJsonBody(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
