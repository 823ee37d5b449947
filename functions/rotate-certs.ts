import { z } from 'zod';
import { describeError } from '../shared/errors';
import { beginInvocationLog } from '../shared/log-context';
import { lambdaRuntimeFrom, type Runtime } from '../shared/runtime';
import { parseOrThrow } from '../shared/validation';
import { renewIfDue } from '../shared/vault-token/tokens';
import { deadlineFrom, type InvocationContext } from './context';

/** A schedule tick: the scheduler's explicit input, or an EventBridge rule's "Scheduled Event". */
const tickSchema = z.union(
  [
    z.strictObject({ tick: z.literal(true), cluster: z.string().optional() }),
    z.looseObject({ source: z.literal('aws.events'), 'detail-type': z.literal('Scheduled Event') }),
  ],
  {
    message:
      'must be {"tick": true} or a Scheduled Event; plan, rotate and reissue go to the manual-ops function URL',
  },
);

/**
 * rotate-certs: the scheduled tick, for every cluster (or the one named): keep the Vault token alive,
 * report the CA's remaining life, then sync, reconcile, continue or plan a rollout. It takes nothing
 * else: manual requests run in manual-ops, so they can neither take the tick's one reserved execution
 * nor reach this function with an unverified invoker.
 */
export function rotateCertsHandler(runtime: Runtime) {
  return async (event: unknown, context: InvocationContext) => {
    beginInvocationLog(runtime.logger, context);
    const deadline = deadlineFrom(context, runtime.clock);
    const tick = parseOrThrow(tickSchema, event, 'rotate-certs event');
    const only = 'tick' in tick && typeof tick.cluster === 'string' ? tick.cluster : undefined;
    const clusters = only === undefined ? runtime.clusterNames() : [runtime.cluster(only).name];
    const reports = [];
    for (const cluster of clusters) {
      await keepTokenAlive(runtime, cluster);
      // Before the tick, so a tick that fails still reports the CA's remaining life.
      await publishIssuerExpiry(runtime, cluster);
      reports.push(
        await runtime.rotation(cluster).tick({ deadline, owner: context.awsRequestId, actor: 'schedule' }),
      );
    }
    return { action: 'tick', reports };
  };
}

/** renew-self the cluster's periodic token when under half its period; a failure is only logged. */
async function keepTokenAlive(runtime: Runtime, cluster: string): Promise<void> {
  try {
    const { client, tokens } = runtime.vault(cluster);
    await renewIfDue(client, await tokens.token());
  } catch (error) {
    runtime.logger.warn('could not check the Vault token TTL', {
      cluster,
      error: describeError(error),
    });
  }
}

/**
 * CaDaysToExpiry: days until the issuing CA expires. Vault refuses a leaf that would outlive it
 * (leaf_not_after_behavior=err), so signing stops one certificate TTL before that; the alarm fires
 * well before. A failure to read is only logged: the metric then goes missing, which the alarm ignores.
 */
async function publishIssuerExpiry(runtime: Runtime, cluster: string): Promise<void> {
  try {
    const notAfter = await runtime.authority(cluster).issuerNotAfter();
    runtime.issuerTelemetry.caDaysToExpiry(cluster, (notAfter - runtime.clock.now()) / 86_400_000);
  } catch (error) {
    runtime.logger.warn('could not read the issuing CA certificate', {
      cluster,
      error: describeError(error),
    });
  }
}

export const handler = (event: unknown, context: InvocationContext) =>
  rotateCertsHandler(lambdaRuntimeFrom(process.env))(event, context);
