import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { z } from 'zod';
import { describeError } from '../shared/errors';
import { PATTERNS } from '../shared/patterns';
import { lambdaRuntimeFrom, type Runtime } from '../shared/runtime';
import { type InvocationContext, parseJsonBody } from './context';

const stateChangeSchema = z.looseObject({
  source: z.literal('aws.ec2'),
  'detail-type': z.literal('EC2 Instance State-change Notification'),
  detail: z.looseObject({
    'instance-id': z.string().regex(new RegExp(PATTERNS.instanceId)),
    state: z.string(),
  }),
});

/**
 * A new instance registers with SSM some seconds after `running`. Until then we cannot tell it from an
 * instance that is not a Nomad node at all, so the message is retried this many times (the queue's
 * visibility timeout apart) and then dropped quietly; the scheduled tick picks up late registrations.
 */
export const MAX_REGISTRATION_CHECKS = 10;

/**
 * instance-state: EC2 state changes through SQS. `running` → certificates as soon as the SSM agent is
 * online; `terminated` → revoke the node's serials and retire it.
 */
export function instanceStateHandler(runtime: Runtime) {
  return async (event: SQSEvent, _context: InvocationContext): Promise<SQSBatchResponse> => {
    const batchItemFailures: SQSBatchResponse['batchItemFailures'] = [];
    for (const record of event.Records) {
      const parsed = stateChangeSchema.safeParse(parseJsonBody(record.body));
      if (!parsed.success) continue;
      const { 'instance-id': instanceId, state } = parsed.data.detail;
      try {
        if (state === 'terminated') {
          for (const cluster of runtime.clusterNames())
            await runtime.rotation(cluster).retire(instanceId, 'ec2-terminated');
        } else if (state === 'running' && !(await startIfOnline(runtime, instanceId))) {
          const receives = Number(record.attributes.ApproximateReceiveCount ?? '1');
          if (receives < MAX_REGISTRATION_CHECKS)
            batchItemFailures.push({ itemIdentifier: record.messageId });
        }
      } catch (error) {
        runtime.logger.error('instance state change not applied; it will be redelivered', {
          instanceId,
          state,
          error: describeError(error),
        });
        batchItemFailures.push({ itemIdentifier: record.messageId });
      }
    }
    return { batchItemFailures };
  };
}

/** True when the instance is an online node of a configured cluster (and got its rollout). */
async function startIfOnline(runtime: Runtime, instanceId: string): Promise<boolean> {
  for (const cluster of runtime.config.clusters) {
    const node = (await runtime.inventory.list(cluster)).find(
      (candidate) => candidate.instanceId === instanceId,
    );
    if (node === undefined) continue;
    if (!node.online) return false;
    await runtime.rotation(cluster.name).onInstanceRunning(instanceId, 'ec2-running');
    return true;
  }
  return false;
}

export const handler = (event: SQSEvent, context: InvocationContext) =>
  instanceStateHandler(lambdaRuntimeFrom(process.env))(event, context);
