import type { SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { z } from 'zod';
import { describeError, TransientError } from '../shared/errors';
import {
  applyInstanceStateChange,
  type InstanceStateRuntime,
  registrationCheckRemains,
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
 * instance-state: EC2 state changes through SQS. `running` → certificates as soon as the SSM agent is
 * online; `terminated` → revoke the node's serials and retire it. A message that is not such an event
 * is dropped; one that fails to apply, or whose instance has not registered with SSM yet, goes back
 * to the queue.
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
      if (result === 'unregistered' && registrationCheckRemains(receives))
        throw new TransientError('instance not registered with SSM yet', { context: { instanceId } });
    };
    return processSqsRecords(event, handleRecord);
  };
}

export const handler = (event: SQSEvent, context: InvocationContext) =>
  instanceStateHandler(lambdaRuntimeFrom(process.env))(event, context);
