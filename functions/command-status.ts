import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { z } from 'zod';
import { ConflictError, describeError } from '../shared/errors';
import { PATTERNS } from '../shared/patterns';
import { parseCommandComment } from '../shared/rotation/engine';
import { lambdaRuntimeFrom, type Runtime } from '../shared/runtime';
import { deadlineFrom, type InvocationContext, parseJsonBody } from './context';

const invocationEventSchema = z.looseObject({
  source: z.literal('aws.ssm'),
  'detail-type': z.literal('EC2 Command Invocation Status-change Notification'),
  detail: z.looseObject({
    'command-id': z.string().min(1),
    'instance-id': z.string().regex(new RegExp(PATTERNS.instanceId)),
    status: z.string(),
  }),
});

const IN_PROGRESS = new Set(['Pending', 'InProgress', 'Delayed']);

/**
 * command-status: SSM invocation status events, delivered by EventBridge through SQS in batches. Each
 * record is read back with GetCommandInvocation (events carry no output), routed to its cluster by the
 * command comment, and applied. Records that fail for a retryable reason go back to the queue.
 */
export function commandStatusHandler(runtime: Runtime) {
  return async (event: SQSEvent, context: InvocationContext): Promise<SQSBatchResponse> => {
    const deadline = deadlineFrom(context, runtime.clock);
    const batchItemFailures: SQSBatchResponse['batchItemFailures'] = [];
    for (const record of event.Records) {
      const parsed = invocationEventSchema.safeParse(parseJsonBody(record.body));
      if (!parsed.success) {
        runtime.logger.warn('dropping a message that is not an SSM invocation event', {
          messageId: record.messageId,
        });
        continue;
      }
      const { 'command-id': commandId, 'instance-id': instanceId, status } = parsed.data.detail;
      if (IN_PROGRESS.has(status)) continue;
      try {
        const outcome = await runtime.commands.invocation(commandId, instanceId);
        const tag = parseCommandComment(outcome.comment);
        if (tag === undefined || !runtime.clusterNames().includes(tag.cluster)) continue;
        await runtime.rotation(tag.cluster).onInvocation(instanceId, tag, outcome, deadline);
      } catch (error) {
        if (error instanceof ConflictError) continue;
        runtime.logger.error('invocation event not applied; it will be redelivered', {
          commandId,
          instanceId,
          error: describeError(error),
        });
        batchItemFailures.push({ itemIdentifier: record.messageId });
      }
    }
    return { batchItemFailures };
  };
}

export const handler = (event: SQSEvent, context: InvocationContext) =>
  commandStatusHandler(lambdaRuntimeFrom(process.env))(event, context);
