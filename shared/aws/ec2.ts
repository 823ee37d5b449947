import { isIPv4 } from 'node:net';
import { DescribeInstancesCommand, type EC2Client, type Filter, type Instance } from '@aws-sdk/client-ec2';
import { DescribeInstanceInformationCommand, InvalidInstanceId, type SSMClient } from '@aws-sdk/client-ssm';
import { AUTO_SCALING_GROUP_TAG, provisionedRole } from '../certificates/identity';
import type {
  DescribedInstance,
  InstanceDirectory,
  InventoryNode,
  NodeInventory,
  ProvisionedNode,
} from '../certificates/ports';
import type { ClusterConfig } from '../config';
import { matchesPattern } from '../patterns';

/** DescribeInstances pages hold up to 1,000 instances. */
const INSTANCES_PAGE = 1000;
/** DescribeInstanceInformation's InstanceIds filter and page size both stop at 50 here. */
const PING_BATCH = 50;
/** A filter takes at most 200 values. */
const FILTER_VALUES = 200;

/**
 * Inventory from what only provisioning can set: EC2 lists the running instances of the cluster's
 * Auto Scaling groups and instance profiles, and decides role and IP (`PrivateIpAddress`); SSM only
 * says whether each one's agent is online. Tags and whatever a node reports about itself decide nothing.
 */
export class Ec2Inventory implements NodeInventory, InstanceDirectory {
  constructor(
    private readonly ec2: EC2Client,
    private readonly ssm: SSMClient,
  ) {}

  async list(cluster: ClusterConfig): Promise<InventoryNode[]> {
    const instances = new Map<string, DescribedInstance>();
    for (const filter of identityFilters(cluster))
      for (const instance of await this.#describeAll([
        filter,
        { Name: 'instance-state-name', Values: ['running'] },
      ]))
        instances.set(instance.instanceId, instance);
    const members = [...instances.values()].flatMap((instance) => provisionedNode(cluster, instance) ?? []);
    const online = await this.#onlineAmong(members.map((member) => member.instanceId));
    return members.map((member) => ({ ...member, online: online.has(member.instanceId) }));
  }

  async identify(cluster: ClusterConfig, instanceId: string): Promise<ProvisionedNode | undefined> {
    const instance = await this.describe(instanceId);
    return instance?.state === 'running' ? provisionedNode(cluster, instance) : undefined;
  }

  async describe(instanceId: string): Promise<DescribedInstance | undefined> {
    if (!matchesPattern('instanceId', instanceId)) return undefined;
    // A filter instead of InstanceIds: an unknown id is an empty answer, not InvalidInstanceID.NotFound.
    const [instance] = await this.#describeAll([{ Name: 'instance-id', Values: [instanceId] }]);
    return instance;
  }

  async online(instanceId: string): Promise<boolean> {
    return (await this.#onlineAmong([instanceId])).has(instanceId);
  }

  async #describeAll(filters: Filter[]): Promise<DescribedInstance[]> {
    const found: DescribedInstance[] = [];
    let nextToken: string | undefined;
    do {
      const page = await this.ec2.send(
        new DescribeInstancesCommand({ Filters: filters, MaxResults: INSTANCES_PAGE, NextToken: nextToken }),
      );
      for (const reservation of page.Reservations ?? [])
        for (const instance of reservation.Instances ?? []) {
          const described = describedInstance(instance);
          if (described !== undefined) found.push(described);
        }
      nextToken = page.NextToken;
    } while (nextToken);
    return found;
  }

  async #onlineAmong(instanceIds: readonly string[]): Promise<Set<string>> {
    const online = new Set<string>();
    for (let start = 0; start < instanceIds.length; start += PING_BATCH)
      for (const id of await this.#onlineInBatch(instanceIds.slice(start, start + PING_BATCH)))
        online.add(id);
    return online;
  }

  /**
   * SSM refuses the whole request when one id is no managed node it knows (an instance whose agent
   * has not registered yet): that batch is then asked in halves until the unknown ids stand alone
   * (a dozen calls for one among 50, not 50), and those count as offline.
   */
  async #onlineInBatch(instanceIds: string[]): Promise<string[]> {
    const online: string[] = [];
    let nextToken: string | undefined;
    try {
      do {
        const page = await this.ssm.send(
          new DescribeInstanceInformationCommand({
            Filters: [{ Key: 'InstanceIds', Values: instanceIds }],
            MaxResults: PING_BATCH,
            NextToken: nextToken,
          }),
        );
        for (const info of page.InstanceInformationList ?? [])
          if (info.InstanceId !== undefined && info.PingStatus === 'Online') online.push(info.InstanceId);
        nextToken = page.NextToken;
      } while (nextToken);
    } catch (error) {
      if (!(error instanceof InvalidInstanceId)) throw error;
      if (instanceIds.length === 1) return [];
      const half = Math.ceil(instanceIds.length / 2);
      return [
        ...(await this.#onlineInBatch(instanceIds.slice(0, half))),
        ...(await this.#onlineInBatch(instanceIds.slice(half))),
      ];
    }
    return online;
  }
}

/** One filter per identity kind the cluster uses; together they cover every instance that may match. */
function identityFilters(cluster: ClusterConfig): Filter[] {
  const { servers, clients } = cluster.inventory;
  const groups = [...new Set([...servers.autoScalingGroups, ...clients.autoScalingGroups])];
  // A role named by profile alone is not found through the groups: list its profiles too.
  const profiles = [
    ...new Set(
      [servers, clients].flatMap((role) =>
        role.autoScalingGroups.length === 0 ? role.instanceProfileArns : [],
      ),
    ),
  ];
  return [
    ...chunk(groups).map((values) => ({ Name: `tag:${AUTO_SCALING_GROUP_TAG}`, Values: values })),
    ...chunk(profiles).map((values) => ({ Name: 'iam-instance-profile.arn', Values: values })),
  ];
}

function chunk(values: string[]): string[][] {
  const chunks: string[][] = [];
  for (let start = 0; start < values.length; start += FILTER_VALUES)
    chunks.push(values.slice(start, start + FILTER_VALUES));
  return chunks;
}

/** An instance as a node of `cluster`: role from its provisioning, IP from EC2; nothing when it is none. */
function provisionedNode(cluster: ClusterConfig, instance: DescribedInstance): ProvisionedNode | undefined {
  const role = provisionedRole(cluster, instance);
  // An instance matching both roles gets nothing rather than the more powerful certificate.
  if (role === undefined || role === 'ambiguous' || instance.ip === undefined) return undefined;
  return { instanceId: instance.instanceId, role, ip: instance.ip };
}

/** EC2's answer, checked before anything acts on it. */
function describedInstance(instance: Instance): DescribedInstance | undefined {
  const instanceId = instance.InstanceId;
  if (instanceId === undefined || !matchesPattern('instanceId', instanceId)) return undefined;
  const ip = instance.PrivateIpAddress;
  return {
    instanceId,
    state: instance.State?.Name ?? 'unknown',
    ip: ip !== undefined && isIPv4(ip) ? ip : undefined,
    autoScalingGroup: instance.Tags?.find((tag) => tag.Key === AUTO_SCALING_GROUP_TAG)?.Value,
    instanceProfileArn: instance.IamInstanceProfile?.Arn,
  };
}
