import { describe, expect, it } from 'vitest';
import { provisionedRole, serverSetRefusal } from '../../shared/certificates/identity';
import { parseClusterConfig, parseClustersConfig } from '../../shared/config';
import type { NodeRecord } from '../../shared/state/records';
import { fakeCluster } from '../helpers/fake-cluster';
import { UNCHECKED_TRUST_ANCHORS } from '../helpers/trust-anchors';

const PROFILE = 'arn:aws:iam::123456789012:instance-profile/nomad-server';
const cluster = (inventory: Record<string, unknown>, name = 'prod') =>
  parseClusterConfig({
    name,
    inventory,
    certificates: UNCHECKED_TRUST_ANCHORS,
    vault: {
      address: 'https://vault.internal:8200',
      tokenSecretId: 'token',
      tokenRotation: { iamServerIdHeader: 'vault.internal' },
    },
  });
const byGroups = {
  servers: { autoScalingGroups: ['prod-servers'] },
  clients: { autoScalingGroups: ['prod-clients'] },
  serverSet: { count: 3 },
};
const server = (instanceId: string, status: NodeRecord['status'] = 'idle'): NodeRecord => ({
  cluster: 'prod',
  instanceId,
  role: 'server',
  ip: '10.0.0.1',
  status,
  failures: 0,
  version: 1,
  updatedAt: 0,
});

describe('provisioned role', () => {
  it('follows the Auto Scaling group, and needs both group and profile where both are named', () => {
    const both = cluster({
      ...byGroups,
      servers: { autoScalingGroups: ['prod-servers'], instanceProfileArns: [PROFILE] },
    });

    expect(provisionedRole(cluster(byGroups), { autoScalingGroup: 'prod-servers' })).toBe('server');
    expect(provisionedRole(cluster(byGroups), { autoScalingGroup: 'prod-clients' })).toBe('client');
    expect(provisionedRole(cluster(byGroups), { autoScalingGroup: 'web' })).toBeUndefined();
    expect(provisionedRole(cluster(byGroups), {})).toBeUndefined();
    expect(provisionedRole(both, { autoScalingGroup: 'prod-servers' })).toBeUndefined();
    expect(provisionedRole(both, { autoScalingGroup: 'prod-servers', instanceProfileArn: PROFILE })).toBe(
      'server',
    );
  });

  it('gives an instance that matches both roles neither', () => {
    const overlapping = cluster({
      servers: { autoScalingGroups: ['prod-nodes'] },
      clients: { instanceProfileArns: [PROFILE] },
      serverSet: { count: 3 },
    });

    expect(
      provisionedRole(overlapping, { autoScalingGroup: 'prod-nodes', instanceProfileArn: PROFILE }),
    ).toBe('ambiguous');
  });
});

describe('server set', () => {
  it('admits a new server while the count has room, counting neither retired nor refused servers', () => {
    const known = [
      server('i-00000001'),
      server('i-00000002'),
      server('i-00000003', 'retired'),
      server('i-00000004', 'refused'),
    ];

    expect(serverSetRefusal(cluster(byGroups), 'i-00000005', known)).toBeUndefined();
    expect(serverSetRefusal(cluster(byGroups), 'i-00000006', [...known, server('i-00000005')])).toMatch(
      /^server-set-full: the cluster already has its 3 servers/,
    );
  });

  it('admits only the listed instance ids when the set is a list', () => {
    const listed = cluster({ ...byGroups, serverSet: { instanceIds: ['i-0123456789abcdef0'] } });

    expect(serverSetRefusal(listed, 'i-0123456789abcdef0', [])).toBeUndefined();
    expect(serverSetRefusal(listed, 'i-0fedcba987654321f', [])).toMatch(/^server-not-in-server-set/);
  });
});

describe('inventory configuration', () => {
  it('names the field when a role has no identity, or one group serves both roles', () => {
    expect(() => cluster({ ...byGroups, clients: {} })).toThrow(
      /inventory\.clients: must name at least one Auto Scaling group or instance profile ARN/,
    );
    expect(() => cluster({ ...byGroups, clients: { autoScalingGroups: ['prod-servers'] } })).toThrow(
      /inventory\.clients\.autoScalingGroups\.0: prod-servers is also listed for servers/,
    );
    expect(() => cluster({ ...byGroups, serverSet: { count: 0 } })).toThrow(/inventory\.serverSet/);
    expect(() => cluster({ ...byGroups, servers: { instanceProfileArns: ['nomad-server'] } })).toThrow(
      /inventory\.servers\.instanceProfileArns\.0: must be an instance profile ARN/,
    );
  });

  it('refuses two clusters that share an Auto Scaling group', () => {
    const input = (name: string) => ({
      name,
      inventory: byGroups,
      certificates: UNCHECKED_TRUST_ANCHORS,
      vault: {
        address: 'https://vault.internal:8200',
        tokenSecretId: 'token',
        tokenRotation: { iamServerIdHeader: 'vault.internal' },
      },
    });

    expect(() => parseClustersConfig([input('prod'), input('staging')])).toThrow(
      /1\.inventory\.servers\.autoScalingGroups\.0: prod-servers already identifies nodes of cluster prod/,
    );
  });
});

describe('server admission', () => {
  it('admits a new server only under the cluster lease: the event path leaves it to the next tick', async () => {
    const h = await fakeCluster([
      { instanceId: 'i-0000000000000000a', role: 'server' },
      { instanceId: 'i-0000000000000000b', role: 'client' },
    ]);

    await h.rotation().onInstanceRunning('i-0000000000000000a', 'ec2-running', Number.MAX_SAFE_INTEGER);
    const afterEvent = await h.table.getNode('prod', 'i-0000000000000000a');
    await h.rotation().tick({ deadline: Number.MAX_SAFE_INTEGER, owner: 'tick', actor: 'schedule' });

    expect(afterEvent).toBeUndefined();
    expect(await h.table.getNode('prod', 'i-0000000000000000a')).toMatchObject({
      role: 'server',
      status: 'idle',
    });
    expect(await h.table.getNode('prod', 'i-0000000000000000b')).toMatchObject({ role: 'client' });
  });
});
