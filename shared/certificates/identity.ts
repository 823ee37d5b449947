import type { ClusterConfig } from '../config';
import type { NodeRecord } from '../state/records';
import type { NodeRole } from './names';

/** The tag only EC2 Auto Scaling may set: the `aws:` prefix is reserved to AWS. */
export const AUTO_SCALING_GROUP_TAG = 'aws:autoscaling:groupName';

/** What EC2 says about an instance: only attributes the account's provisioning sets. */
export interface ProvisionedIdentity {
  /** The reserved `aws:autoscaling:groupName` tag, which only Auto Scaling may set. */
  autoScalingGroup?: string;
  /** The instance profile ARN; attaching one takes iam:PassRole on its role. */
  instanceProfileArn?: string;
}

/**
 * The role an instance's provisioning gives it in `cluster`: `undefined` when it is no node of the
 * cluster, `ambiguous` when it matches both roles (it then gets no certificate at all).
 */
export function provisionedRole(
  cluster: ClusterConfig,
  identity: ProvisionedIdentity,
): NodeRole | 'ambiguous' | undefined {
  const matching = (['server', 'client'] as const).filter((role) => {
    const wanted = cluster.inventory[role === 'server' ? 'servers' : 'clients'];
    const group = identity.autoScalingGroup;
    const profile = identity.instanceProfileArn;
    return (
      (wanted.autoScalingGroups.length === 0 ||
        (group !== undefined && wanted.autoScalingGroups.includes(group))) &&
      (wanted.instanceProfileArns.length === 0 ||
        (profile !== undefined && wanted.instanceProfileArns.includes(profile)))
    );
  });
  if (matching.length === 2) return 'ambiguous';
  return matching[0];
}

/** Why a server was refused a place in the cluster's server set, or undefined when it has one. */
export function serverSetRefusal(
  cluster: ClusterConfig,
  instanceId: string,
  known: readonly NodeRecord[],
): string | undefined {
  const set = cluster.inventory.serverSet;
  if ('instanceIds' in set) {
    return set.instanceIds.includes(instanceId)
      ? undefined
      : `server-not-in-server-set: ${instanceId} is not one of the cluster's configured server instance ids`;
  }
  const admitted = known.filter(
    (node) =>
      node.instanceId !== instanceId &&
      node.role === 'server' &&
      node.status !== 'retired' &&
      node.status !== 'refused',
  ).length;
  return admitted < set.count
    ? undefined
    : `server-set-full: the cluster already has its ${set.count} servers; retire one before another may join`;
}
