import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import type { SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import type { Clock } from '../shared/clock';

/** The part of the Lambda context the handlers use; the local world passes its own. */
export interface InvocationContext {
  getRemainingTimeInMillis(): number;
  awsRequestId: string;
}

/** Stop this long before the Lambda timeout so state is written and the rest is left to the next run. */
const SAFETY_MARGIN_MS = 20_000;

/**
 * When to stop starting work: the invocation's own end, read from its remaining time, less the safety
 * margin. An invocation with less than the margin left gets no time to start anything rather than a
 * fixed minimum that could outlast it.
 */
export function deadlineFrom(context: InvocationContext, clock: Clock): number {
  return clock.now() + Math.max(context.getRemainingTimeInMillis() - SAFETY_MARGIN_MS, 0);
}

/** An SQS body as JSON, or undefined when it is not JSON (the schema check then drops it). */
export function parseJsonBody(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * An SQS batch through Powertools: a record whose handler throws is reported in `batchItemFailures`
 * and comes back from SQS, the others are deleted. Records are handled one after another, in the
 * queue's order, as events of one command arrive in order. A batch where every record failed is
 * answered the same way rather than by throwing, so SQS still retries exactly those records and the
 * invocation does not count as a function error.
 */
export function processSqsRecords(
  event: SQSEvent,
  handleRecord: (record: SQSRecord) => Promise<void>,
): Promise<SQSBatchResponse> {
  return processPartialResponse(event, handleRecord, new BatchProcessor(EventType.SQS), {
    processInParallel: false,
    throwOnFullBatchFailure: false,
  });
}
