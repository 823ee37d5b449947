import type { SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { z } from 'zod';
import { describeError } from '../shared/errors';
import { applyInvocationStatus, type InvocationStatusRuntime } from '../shared/intake/invocation-status';
import { beginInvocationLog, withCorrelation } from '../shared/log-context';
import { PATTERNS } from '../shared/patterns';
import { lambdaRuntimeFrom, type Runtime } from '../shared/runtime';
import { deadlineFrom, type InvocationContext, parseJsonBody, processSqsRecords } from './context';

const invocationEventSchema = z.looseObject({
  source: z.literal('aws.ssm'),
  'detail-type': z.literal('EC2 Command Invocation Status-change Notification'),
  detail: z.looseObject({
    'command-id': z.string().min(1),
    'instance-id': z.string().regex(new RegExp(PATTERNS.instanceId)),
    status: z.string(),
  }),
});

/**
 * command-status: SSM invocation status events, delivered by EventBridge through SQS in batches. A
 * message that is not such an event is dropped with a warning (a retry could not change it); one that
 * fails to apply goes back to the queue.
 */
export function commandStatusHandler(runtime: InvocationStatusRuntime & Pick<Runtime, 'clock'>) {
  return async (event: SQSEvent, context: InvocationContext): Promise<SQSBatchResponse> => {
    beginInvocationLog(runtime.logger, context);
    const deadline = deadlineFrom(context, runtime.clock);
    const handleRecord = async (record: SQSRecord): Promise<void> => {
      const parsed = invocationEventSchema.safeParse(parseJsonBody(record.body));
      if (!parsed.success) {
        runtime.logger.warn('dropping a message that is not an SSM invocation event', {
          messageId: record.messageId,
        });
        return;
      }
      const { 'command-id': commandId, 'instance-id': instanceId, status } = parsed.data.detail;
      await withCorrelation(runtime.logger, { commandId, instanceId }, async () => {
        try {
          await applyInvocationStatus(runtime, { commandId, instanceId, status }, deadline);
        } catch (error) {
          runtime.logger.error('invocation event not applied; it will be redelivered', {
            commandId,
            instanceId,
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
