import type { SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { z } from 'zod';
import { describeError, TransientError } from '../shared/errors';
import {
  anotherLookRemains,
  applyInstanceStateChange,
  type InstanceStateRuntime,
} from '../shared/intake/instance-state';
import { beginInvocationLog, withCorrelation } from '../shared/log-context';
import { PATTERNS } from '../shared/patterns';
import { lambdaRuntimeFrom } from '../shared/runtime';
import { deadlineFrom, type InvocationContext, parseJsonBody, processSqsRecords } from './context';

export { MAX_REGISTRATION_CHECKS } from '../shared/intake/instance-state';

const stateChangeSchema = z.looseObject({
  source: z.literal('aws.ec2'),
  'detail-type': z.literal('EC2 Instance State-change Notification'),
  detail: z.looseObject({
    'instance-id': z.string().regex(new RegExp(PATTERNS.instanceId)),
    state: z.string(),
  }),
});

/**
 * instance-state: EC2 state changes through SQS, each checked with EC2 first. `running` → certificates
 * as soon as the SSM agent is online; `terminated` (confirmed) → revoke the node's serials and retire
 * it. A message that is not such an event is dropped; one that fails to apply, whose node has not
 * registered with SSM yet, or whose instance is still shutting down, goes back to the queue.
 */
export function instanceStateHandler(runtime: InstanceStateRuntime) {
  return async (event: SQSEvent, context: InvocationContext): Promise<SQSBatchResponse> => {
    beginInvocationLog(runtime.logger, context);
    const deadline = deadlineFrom(context, runtime.clock);
    const handleRecord = async (record: SQSRecord): Promise<void> => {
      const parsed = stateChangeSchema.safeParse(parseJsonBody(record.body));
      if (!parsed.success) return;
      const { 'instance-id': instanceId, state } = parsed.data.detail;
      const result = await withCorrelation(runtime.logger, { instanceId }, async () => {
        try {
          return await applyInstanceStateChange(runtime, { instanceId, state }, deadline);
        } catch (error) {
          runtime.logger.error('instance state change not applied; it will be redelivered', {
            instanceId,
            state,
            error: describeError(error),
          });
          throw error;
        }
      });
      const receives = Number(record.attributes.ApproximateReceiveCount ?? '1');
      // Thrown only to have the batch processor hand the message back; not an error worth a log line.
      if (anotherLookRemains(result, receives))
        throw new TransientError(`instance ${result}; looked at again later`, { context: { instanceId } });
    };
    return processSqsRecords(event, handleRecord);
  };
}

export const handler = (event: SQSEvent, context: InvocationContext) =>
  instanceStateHandler(lambdaRuntimeFrom(process.env))(event, context);
