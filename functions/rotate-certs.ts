import { z } from 'zod';
import { parseManualRequest, planRequestFrom } from '../shared/certificates/requests';
import { describeError, ValidationError } from '../shared/errors';
import { beginInvocationLog } from '../shared/log-context';
import { lambdaRuntimeFrom, type Runtime } from '../shared/runtime';
import { renewIfDue } from '../shared/vault-token/tokens';
import { deadlineFrom, type InvocationContext } from './context';

/** A schedule tick: the scheduler's explicit input, or an EventBridge rule's "Scheduled Event". */
const tickSchema = z.union([
  z.strictObject({ tick: z.literal(true), cluster: z.string().optional() }),
  z.looseObject({ source: z.literal('aws.events'), 'detail-type': z.literal('Scheduled Event') }),
]);

/**
 * rotate-certs: the scheduled tick (every cluster: sync, reconcile, continue or plan a rollout) and the
 * manual invoke (`plan`, `rotate`, `reissue`). A bad manual payload is refused before anything is read
 * from or written to AWS, Vault or the table.
 */
export function rotateCertsHandler(runtime: Runtime) {
  return async (event: unknown, context: InvocationContext) => {
    beginInvocationLog(runtime.logger, context);
    const deadline = deadlineFrom(context, runtime.clock);
    const tick = tickSchema.safeParse(event);
    if (tick.success) {
      const only =
        'tick' in tick.data && typeof tick.data.cluster === 'string' ? tick.data.cluster : undefined;
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
    }

    const request = parseManualRequest(event, runtime.clusterNames());
    const rotation = runtime.rotation(request.cluster);
    const targets = request.targets;
    if (Array.isArray(targets)) {
      const issues = await rotation.targetIssues(targets);
      if (issues.length > 0) throw new ValidationError('invalid manual request', issues);
    }
    const planRequest = planRequestFrom(request);
    if (request.action === 'plan') {
      return { action: 'plan', plan: await rotation.plan(planRequest) };
    }
    await rotation.syncInventory();
    const rollout = await rotation.start(
      {
        ...planRequest,
        reason: request.reason,
        actor: request.requestedBy ?? 'manual-invoke',
      },
      deadline,
    );
    return {
      action: request.action,
      rolloutId: rollout?.rolloutId ?? null,
      mode: rollout?.mode ?? null,
      waves: rollout?.waves ?? [],
      message:
        rollout === undefined ? 'nothing to rotate: no selected node can be rotated now' : 'rollout started',
    };
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
