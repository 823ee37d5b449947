import { provisionedRole } from '../certificates/identity';
import { withCorrelation } from '../log-context';
import type { Runtime } from '../runtime';

/**
 * A new node's SSM agent registers some seconds after `running`, so the message is retried this many
 * times (the queue's visibility timeout apart) and then dropped quietly; the scheduled tick picks up
 * late registrations. A termination still shutting down is retried the same way.
 */
export const MAX_REGISTRATION_CHECKS = 10;

/** One "EC2 Instance State-change Notification", already validated. */
export interface InstanceStateChange {
  instanceId: string;
  state: string;
}

/**
 * What became of a state change. `unregistered`: the instance is a node of a cluster but its SSM
 * agent is not online yet; `shutting-down`: a termination EC2 has not finished; both come back for
 * another look. `not-terminated`: the message said terminated but EC2 says otherwise.
 */
export type InstanceStateResult =
  | 'retired'
  | 'rollout-started'
  | 'unregistered'
  | 'shutting-down'
  | 'not-terminated'
  | 'ignored';

export type InstanceStateRuntime = Pick<
  Runtime,
  'config' | 'clusterNames' | 'instances' | 'rotation' | 'logger' | 'clock'
>;

/**
 * A state change is a claim anyone able to send to the queue could make, so EC2 is asked first:
 * `terminated` retires the node (revoking its serials) in every cluster that knows it only once EC2
 * reports it terminated or no longer knows it; `running` gives a node of a cluster its certificates
 * at once. An instance outside every cluster costs that one describe call.
 */
export async function applyInstanceStateChange(
  runtime: InstanceStateRuntime,
  change: InstanceStateChange,
  deadline: number,
): Promise<InstanceStateResult> {
  if (change.state !== 'terminated' && change.state !== 'running') return 'ignored';
  const instance = await runtime.instances.describe(change.instanceId);
  if (change.state === 'terminated') {
    if (instance?.state === 'shutting-down') return 'shutting-down';
    if (instance !== undefined && instance.state !== 'terminated') {
      runtime.logger.warn('termination not confirmed by EC2; nothing retired', {
        instanceId: change.instanceId,
        state: instance.state,
      });
      return 'not-terminated';
    }
    for (const cluster of runtime.clusterNames())
      await withCorrelation(runtime.logger, { cluster }, () =>
        runtime.rotation(cluster).retire(change.instanceId, 'ec2-terminated'),
      );
    return 'retired';
  }
  if (instance === undefined || instance.state !== 'running') return 'ignored';
  const cluster = runtime.config.clusters.find((candidate) => {
    const role = provisionedRole(candidate, instance);
    return role === 'server' || role === 'client';
  });
  if (cluster === undefined) return 'ignored';
  if (!(await runtime.instances.online(change.instanceId))) return 'unregistered';
  await withCorrelation(runtime.logger, { cluster: cluster.name }, () =>
    runtime.rotation(cluster.name).onInstanceRunning(change.instanceId, 'ec2-running', deadline),
  );
  return 'rollout-started';
}

/** Whether a message should come back for another look (registration, or a termination under way). */
export function anotherLookRemains(result: InstanceStateResult, receiveCount: number): boolean {
  return (result === 'unregistered' || result === 'shutting-down') && receiveCount < MAX_REGISTRATION_CHECKS;
}
