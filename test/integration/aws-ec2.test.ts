import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Ec2Emulator, startEc2Emulator } from '../../local/aws/ec2';
import { type SsmEmulator, startSsmEmulator } from '../../local/aws/ssm';
import type { Fleet, ManagedNode, PingStatus } from '../../local/fleet';
import { Ec2Inventory } from '../../shared/aws/ec2';
import { parseClusterConfig } from '../../shared/config';
import { testInventory } from '../helpers/inventory';
import { UNCHECKED_TRUST_ANCHORS } from '../helpers/trust-anchors';

const CLUSTER = parseClusterConfig({
  name: 'prod',
  inventory: testInventory('prod'),
  certificates: UNCHECKED_TRUST_ANCHORS,
  vault: {
    address: 'https://vault.internal:8200',
    tokenSecretId: 'token',
    tokenRotation: { iamServerIdHeader: 'vault.internal' },
  },
});
const id = (n: number) => `i-${n.toString(16).padStart(17, '0')}`;
const CLUSTER_NODES = 1_100;
const UNREGISTERED = new Set([id(500), id(501), id(1_099)]);
const OFFLINE = new Set([id(7), id(8)]);

/** SSM-registered agents that only answer pings: this test sends no command. */
function pingOnlyFleet(ids: string[]): Fleet {
  const nodes = ids.map(
    (instanceId): ManagedNode => ({
      instanceId,
      computerName: instanceId,
      ipAddress: '127.0.0.1',
      tags: {},
      pingStatus: (): PingStatus => (OFFLINE.has(instanceId) ? 'ConnectionLost' : 'Online'),
      runScript: () => Promise.reject(new Error('no commands in this test')),
    }),
  );
  return { nodes: () => nodes, node: (instanceId) => nodes.find((node) => node.instanceId === instanceId) };
}

let ec2: Ec2Emulator;
let ssm: SsmEmulator;
let inventory: Ec2Inventory;

beforeAll(async () => {
  ec2 = await startEc2Emulator();
  const registered: string[] = [];
  for (let n = 0; n < CLUSTER_NODES; n += 1) {
    ec2.launch({
      instanceId: id(n),
      privateIpAddress: `10.1.${Math.floor(n / 250)}.${n % 250}`,
      autoScalingGroup: n < 3 ? 'prod-servers' : 'prod-clients',
      tags: { 'nomad-role': 'client' },
    });
    if (!UNREGISTERED.has(id(n))) registered.push(id(n));
  }
  // Another workload's instances, and one of ours already gone.
  for (let n = 0; n < 20; n += 1)
    ec2.launch({ instanceId: id(5_000 + n), privateIpAddress: '10.9.0.1', autoScalingGroup: 'web' });
  ec2.launch({
    instanceId: id(9_999),
    privateIpAddress: '10.1.9.9',
    autoScalingGroup: 'prod-clients',
    state: 'terminated',
  });
  ssm = await startSsmEmulator({ fleet: pingOnlyFleet(registered) });
  inventory = new Ec2Inventory(ec2.client({ maxAttempts: 1 }), ssm.client({ maxAttempts: 1 }));
});

afterAll(async () => {
  await ssm?.stop();
  await ec2?.stop();
});

describe('EC2 inventory through the real EC2 and SSM clients', () => {
  it("lists exactly the cluster's running instances, with role and address from EC2 and ping from SSM", async () => {
    const nodes = await inventory.list(CLUSTER);

    expect(nodes).toHaveLength(CLUSTER_NODES);
    expect(nodes.filter((node) => node.role === 'server').map((node) => node.instanceId)).toEqual([
      id(0),
      id(1),
      id(2),
    ]);
    expect(nodes.find((node) => node.instanceId === id(260))).toEqual({
      instanceId: id(260),
      role: 'client',
      ip: '10.1.1.10',
      online: true,
    });
    const offline = nodes.filter((node) => !node.online).map((node) => node.instanceId);
    expect(new Set(offline)).toEqual(new Set([...OFFLINE, ...UNREGISTERED]));
    // Two pages of up to 1,000 instances; 22 pings of up to 50 ids, and halving where a batch held an
    // agent that has not registered (SSM refuses the whole batch then): far fewer than 50 more each.
    expect(ec2.calls.get('DescribeInstances')).toBe(2);
    expect(ssm.calls.get('DescribeInstanceInformation')).toBeLessThan(22 + 2 * 15);
  });

  it('describes one instance, unknown ones as undefined, terminated ones as terminated', async () => {
    expect(await inventory.describe(id(1))).toEqual({
      instanceId: id(1),
      state: 'running',
      ip: '10.1.0.1',
      autoScalingGroup: 'prod-servers',
      instanceProfileArn: undefined,
    });
    expect(await inventory.describe(id(9_999))).toMatchObject({ state: 'terminated', ip: undefined });
    expect(await inventory.describe('i-00000000000077777')).toBeUndefined();
    expect(await inventory.online(id(500))).toBe(false);
    expect(await inventory.online(id(9))).toBe(true);
  });

  it('identifies one instance by its provisioning alone, and nothing that is not a running node of the cluster', async () => {
    expect(await inventory.identify(CLUSTER, id(2))).toEqual({
      instanceId: id(2),
      role: 'server',
      ip: '10.1.0.2',
    });
    expect(await inventory.identify(CLUSTER, id(260))).toEqual({
      instanceId: id(260),
      role: 'client',
      ip: '10.1.1.10',
    });
    expect(await inventory.identify(CLUSTER, id(9_999))).toBeUndefined();
    expect(await inventory.identify(CLUSTER, id(5_000))).toBeUndefined();
    expect(await inventory.identify(CLUSTER, 'i-00000000000077777')).toBeUndefined();
  });
});
