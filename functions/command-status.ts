import type { SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { z } from 'zod';
import { describeError } from '../shared/errors';
import { applyCommandStatus, type CommandStatusRuntime } from '../shared/intake/command-status';
import { beginInvocationLog, withCorrelation } from '../shared/log-context';
import { lambdaRuntimeFrom, type Runtime } from '../shared/runtime';
import { deadlineFrom, type InvocationContext, parseJsonBody, processSqsRecords } from './context';

const commandEventSchema = z.looseObject({
  source: z.literal('aws.ssm'),
  'detail-type': z.literal('EC2 Command Status-change Notification'),
  detail: z.looseObject({
    'command-id': z.string().min(1),
    'document-name': z.string().min(1),
    status: z.string().min(1),
  }),
});

/**
 * command-status: SSM command status events, one per command and status, delivered by EventBridge
 * through SQS in batches. A message that is not such an event is dropped with a warning (a retry
 * could not change it); one that fails to apply goes back to the queue.
 */
export function commandStatusHandler(runtime: CommandStatusRuntime & Pick<Runtime, 'clock'>) {
  return async (event: SQSEvent, context: InvocationContext): Promise<SQSBatchResponse> => {
    beginInvocationLog(runtime.logger, context);
    const deadline = deadlineFrom(context, runtime.clock);
    const handleRecord = async (record: SQSRecord): Promise<void> => {
      const parsed = commandEventSchema.safeParse(parseJsonBody(record.body));
      if (!parsed.success) {
        runtime.logger.warn('dropping a message that is not an SSM command event', {
          messageId: record.messageId,
        });
        return;
      }
      const { 'command-id': commandId, status } = parsed.data.detail;
      await withCorrelation(runtime.logger, { commandId }, async () => {
        try {
          await applyCommandStatus(runtime, { commandId, status }, deadline);
        } catch (error) {
          runtime.logger.error('command event not applied; it will be redelivered', {
            commandId,
            status,
            error: describeError(error),
          });
          throw error;
        }
      });
    };
    return processSqsRecords(event, handleRecord);
  };
}

export const handler = (event: SQSEvent, context: InvocationContext) =>
  commandStatusHandler(lambdaRuntimeFrom(process.env))(event, context);
