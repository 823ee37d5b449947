import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type World } from '../../local/world';
import { VaultClient, type VaultResponse } from '../../shared/vault/client';
import { waitFor } from '../helpers/wait-for';

let world: World;
const CLUSTER = 'identity';

const record = (instanceId: string) => world.runtime.table.getNode(CLUSTER, instanceId);
const nodesOf = (role: 'server' | 'client') => world.fleet.nodes().filter((node) => node.role === role);
const subjectAltNames = async (instanceId: string) => {
  const node = world.fleet.node(instanceId)!;
  const pem = await readFile(join(node.root, world.cluster.files.agentCert.path), 'utf8');
  return new X509Certificate(pem).subjectAltName ?? '';
};
const busEvents = (type: string) => world.events.events().filter((event) => event['detail-type'] === type);

beforeAll(async () => {
  world = await startWorld({ servers: 1, clients: 2, cluster: { name: CLUSTER } });
  await world.tick();
  await world.settle();
});

afterAll(async () => {
  await world?.stop();
});

describe('node identity comes from EC2 provisioning, never from tags or the node', () => {
  it('puts the address EC2 reports in the server certificate, not the one the SSM agent reports', async () => {
    const [server] = nodesOf('server');
    const ec2Address = world.ec2.instance(server!.instanceId).privateIpAddress;

    expect(server!.ipAddress).not.toBe(ec2Address);
    expect((await record(server!.instanceId))?.ip).toBe(ec2Address);
    expect(await subjectAltNames(server!.instanceId)).toContain(`IP Address:${ec2Address}`);
  });

  it('never gives a client re-tagged as a server a server certificate, even in an emergency reissue', async () => {
    const [client] = nodesOf('client');
    // Anyone with ec2:CreateTags may do this; the reserved Auto Scaling tag they may not.
    world.ec2.createTags(client!.instanceId, { 'nomad-role': 'server', 'nomad-cluster': CLUSTER });
    expect(() =>
      world.ec2.createTags(client!.instanceId, { 'aws:autoscaling:groupName': `${CLUSTER}-servers` }),
    ).toThrow(/reserved/);

    await world.invoke({ action: 'reissue', cluster: CLUSTER, targets: 'all', reason: 'identity test' });
    await world.settle();

    expect(await record(client!.instanceId)).toMatchObject({ role: 'client', status: 'idle' });
    const names = await subjectAltNames(client!.instanceId);
    expect(names).toContain('DNS:client.global.nomad');
    expect(names).not.toContain('server.global.nomad');
  });

  it('never signs a server certificate for a client whose state-table item says server', async () => {
    const [client] = nodesOf('client');
    const before = await subjectAltNames(client!.instanceId);
    await world.invoke({
      action: 'reissue',
      cluster: CLUSTER,
      targets: [client!.instanceId],
      reason: 'identity test: table tampering',
    });
    // Someone with write access to the table, between the plan and Vault's signature.
    await world.runtime.table.updateNode(
      CLUSTER,
      client!.instanceId,
      {},
      { role: 'server' },
      world.clock.now(),
    );

    await world.settle();

    expect(await record(client!.instanceId)).toMatchObject({ lastError: 'identity-mismatch' });
    expect(await subjectAltNames(client!.instanceId)).toBe(before);
    expect(before).not.toContain('server.global.nomad');
    // The next scheduled run puts the item back to what EC2 says, and the retry then rotates the client.
    await world.tick();
    expect(await record(client!.instanceId)).toMatchObject({ role: 'client' });
    world.clock.advance(2 * 60_000);
    await world.tick();
    await world.settle();
    expect(await record(client!.instanceId)).toMatchObject({ role: 'client', status: 'idle' });
    const after = await subjectAltNames(client!.instanceId);
    expect(after).toContain('DNS:client.global.nomad');
    expect(after).not.toContain('server.global.nomad');
    expect(await world.runtime.table.getActiveRollout(CLUSTER)).toBeUndefined();
  });

  it('refuses a server beyond the server set, with a reason, an event and an alarm metric', async () => {
    const intruder = 'i-0badbadbadbadbad0';
    // An instance launched into the servers' group when the cluster already has its one server.
    world.ec2.launch({
      instanceId: intruder,
      privateIpAddress: '10.0.9.9',
      autoScalingGroup: `${CLUSTER}-servers`,
    });

    await world.tick();
    await world.settle();

    expect(await record(intruder)).toMatchObject({
      role: 'server',
      status: 'refused',
      lastError: expect.stringMatching(/^server-set-full/),
    });
    expect(world.telemetry.total('NodeRefused')).toBe(1);
    expect(busEvents('NodeRefused').map((event) => event.detail.instanceId)).toEqual([intruder]);
    const plan = (await world.invoke({
      action: 'plan',
      cluster: CLUSTER,
      targets: 'all',
      reason: 'check',
    })) as {
      plan: { entries: { instanceId: string; decision: string; reason: string }[] };
    };
    expect(plan.plan.entries.find((entry) => entry.instanceId === intruder)).toMatchObject({
      decision: 'skip',
      reason: expect.stringMatching(/^refused: server-set-full/),
    });
  });

  it('retires nothing on a termination message EC2 does not confirm', async () => {
    const [, client] = nodesOf('client');
    const before = await record(client!.instanceId);

    world.events.ec2StateChange(client!.instanceId, 'terminated');
    await world.settle();

    const after = await record(client!.instanceId);
    expect(after).toMatchObject({ status: 'idle', agent: before!.agent });
    const vault = new VaultClient({
      address: world.vault.address,
      caBundlePem: world.vault.caPem!,
      timeoutMs: 5_000,
    });
    const certificate = await vault.read<VaultResponse>(`pki_int/cert/${before!.agent!.serial}`);
    expect(certificate.data?.revocation_time).toBe(0);
    expect(busEvents('NodeRetired')).toEqual([]);
    expect(
      world.logger.lines.some(
        (line) =>
          line.message === 'termination not confirmed by EC2; nothing retired' && line.state === 'running',
      ),
    ).toBe(true);
  });

  it('takes back a retired node that EC2 reports running again, with new certificates', async () => {
    const [, client] = nodesOf('client');
    const id = client!.instanceId;
    const revoked = (await record(id))!.agent!.serial;
    world.ec2.setState(id, 'terminated');
    world.events.ec2StateChange(id, 'terminated');
    await waitFor(async () => (await record(id))?.status === 'retired', {
      timeoutMs: 20_000,
      what: 'the node to be retired',
    });

    world.ec2.setState(id, 'running');
    await world.tick();
    await world.settle();

    const back = await record(id);
    expect(back).toMatchObject({ status: 'idle', lastAction: expect.any(String) });
    expect(back!.agent!.serial).not.toBe(revoked);
    expect(busEvents('NodeReinstated').map((event) => event.detail.instanceId)).toEqual([id]);
  });

  it('spends one EC2 describe and no SSM call on a launch outside every cluster', async () => {
    const describes = () => world.ec2.calls.get('DescribeInstances') ?? 0;
    const pings = () => world.ssm.calls.get('DescribeInstanceInformation') ?? 0;
    const [describesBefore, pingsBefore] = [describes(), pings()];
    world.ec2.launch({
      instanceId: 'i-0feedfeedfeedfee0',
      privateIpAddress: '10.0.8.8',
      autoScalingGroup: 'web',
    });

    world.events.ec2StateChange('i-0feedfeedfeedfee0', 'running');
    await world.settle();

    expect(describes() - describesBefore).toBe(1);
    expect(pings() - pingsBefore).toBe(0);
  });
});
