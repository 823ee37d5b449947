import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeSandbox } from '../../local/node/sandbox';
import { startWorld, type World } from '../../local/world';
import { verifyNode } from '../../local/world/verify';
import { VaultClient, type VaultResponse } from '../../shared/vault/client';
import { waitFor } from '../helpers/wait-for';

let world: World;
let newcomer: NodeSandbox;

const record = (instanceId: string) => world.runtime.table.getNode(world.cluster.name, instanceId);

beforeAll(async () => {
  world = await startWorld({ servers: 1, clients: 1, cluster: { name: 'lifecycle' } });
  await world.tick();
  await world.settle();
});

afterAll(async () => {
  await world?.stop();
});

describe('EC2 instance lifecycle events on the local world', () => {
  it('gives a new instance its certificates once its SSM agent registers, without waiting for a tick', async () => {
    newcomer = await world.fleet.addClient({ online: false });
    const looks = () => world.ssm.calls.get('DescribeInstanceInformation') ?? 0;
    const looksBefore = looks();

    world.events.ec2StateChange(newcomer.instanceId, 'running');
    // The agent registers some seconds after `running`; until then the event is retried from its
    // queue. Two inventory looks while the node is offline: the first delivery and one redelivery.
    await waitFor(() => looks() >= looksBefore + 2, {
      timeoutMs: 10_000,
      what: 'the running event to be handled and redelivered while the agent is not registered',
    });
    expect(await record(newcomer.instanceId)).toBeUndefined();
    newcomer.setOnline(true);
    await world.settle();

    const node = await record(newcomer.instanceId);
    expect(node).toMatchObject({ status: 'idle', role: 'client' });
    expect((await verifyNode(world.cluster, newcomer, node)).problems).toEqual([]);
  });

  it('retires a terminated instance and revokes its serials in Vault', async () => {
    const before = (await record(newcomer.instanceId))!;
    const vault = new VaultClient({
      address: world.vault.address,
      caBundlePem: world.vault.caPem!,
      timeoutMs: 5_000,
    });

    world.events.ec2StateChange(newcomer.instanceId, 'terminated');
    await world.settle();

    expect(await record(newcomer.instanceId)).toMatchObject({ status: 'retired' });
    for (const serial of [before.agent!.serial, before.cli!.serial]) {
      const certificate = await vault.read<VaultResponse>(`pki_int/cert/${serial}`);
      expect(certificate.data?.revocation_time, serial).toBeGreaterThan(0);
    }
    expect(
      world.events
        .events()
        .some(
          (event) =>
            event['detail-type'] === 'NodeRetired' && event.detail.instanceId === newcomer.instanceId,
        ),
    ).toBe(true);
  });

  it('leaves a retired instance out of every later rollout, saying why in the plan', async () => {
    const plan = (await world.invoke({
      action: 'plan',
      cluster: 'lifecycle',
      targets: 'all',
      reason: 'after retirement',
    })) as { plan: { entries: { instanceId: string; decision: string; reason: string }[] } };
    const rotation = (await world.invoke({
      action: 'rotate',
      cluster: 'lifecycle',
      targets: 'all',
      reason: 'after retirement',
    })) as { waves: { instanceIds: string[] }[] };
    await world.settle();

    expect(plan.plan.entries.find((entry) => entry.instanceId === newcomer.instanceId)).toMatchObject({
      decision: 'skip',
      reason: 'instance is terminated',
    });
    const rotated = rotation.waves.flatMap((wave) => wave.instanceIds);
    expect(rotated).toHaveLength(2);
    expect(rotated).not.toContain(newcomer.instanceId);
    expect(await record(newcomer.instanceId)).toMatchObject({ status: 'retired' });
  });
});
