import { withCorrelation } from '../log-context';
import type { Runtime } from '../runtime';

/**
 * A new instance registers with SSM some seconds after `running`. Until then we cannot tell it from an
 * instance that is not a Nomad node at all, so the message is retried this many times (the queue's
 * visibility timeout apart) and then dropped quietly; the scheduled tick picks up late registrations.
 */
export const MAX_REGISTRATION_CHECKS = 10;

/** One "EC2 Instance State-change Notification", already validated. */
export interface InstanceStateChange {
  instanceId: string;
  state: string;
}

/**
 * What became of a state change. `unregistered`: the instance is running but not (yet) an online
 * node of any configured cluster.
 */
export type InstanceStateResult = 'retired' | 'rollout-started' | 'unregistered' | 'ignored';

export type InstanceStateRuntime = Pick<
  Runtime,
  'config' | 'clusterNames' | 'inventory' | 'rotation' | 'logger' | 'clock'
>;

/**
 * `terminated` revokes the node's serials and retires it in every cluster that knows it; `running`
 * gives an online node its certificates at once. Other states need nothing.
 */
export async function applyInstanceStateChange(
  runtime: InstanceStateRuntime,
  change: InstanceStateChange,
  deadline: number,
): Promise<InstanceStateResult> {
  if (change.state === 'terminated') {
    for (const cluster of runtime.clusterNames())
      await withCorrelation(runtime.logger, { cluster }, () =>
        runtime.rotation(cluster).retire(change.instanceId, 'ec2-terminated'),
      );
    return 'retired';
  }
  if (change.state !== 'running') return 'ignored';
  return (await startIfOnline(runtime, change.instanceId, deadline)) ? 'rollout-started' : 'unregistered';
}

/** Whether an unregistered instance's message should come back for another look. */
export function registrationCheckRemains(receiveCount: number): boolean {
  return receiveCount < MAX_REGISTRATION_CHECKS;
}

/** True when the instance is an online node of a configured cluster (and got its rollout). */
async function startIfOnline(
  runtime: InstanceStateRuntime,
  instanceId: string,
  deadline: number,
): Promise<boolean> {
  for (const cluster of runtime.config.clusters) {
    const node = (await runtime.inventory.list(cluster)).find(
      (candidate) => candidate.instanceId === instanceId,
    );
    if (node === undefined) continue;
    if (!node.online) return false;
    await withCorrelation(runtime.logger, { cluster: cluster.name }, () =>
      runtime.rotation(cluster.name).onInstanceRunning(instanceId, 'ec2-running', deadline),
    );
    return true;
  }
  return false;
}
