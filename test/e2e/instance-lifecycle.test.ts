import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { NodeSandbox } from '../../local/node/sandbox';
import { startWorld, type World } from '../../local/world';
import { verifyNode } from '../../local/world/verify';
import type { NodeRecord } from '../../shared/state/records';
import { VaultClient, type VaultResponse } from '../../shared/vault/client';
import { waitFor } from '../helpers/wait-for';

let world: World;

const record = (instanceId: string) => world.runtime.table.getNode(world.cluster.name, instanceId);

/** What the newcomer's arrival produced, captured when it finished, before a later test retired it. */
interface Arrival {
  newcomer: NodeSandbox;
  /** Its record while the agent was not registered yet, after the event had been redelivered. */
  whileUnregistered: NodeRecord | undefined;
  /** Its record once the agent registered and the redelivered event issued it. */
  issued: NodeRecord | undefined;
  /** What `verifyNode` found wrong with the node and its record then. */
  problems: string[];
}
let arrival: Promise<Arrival> | undefined;

/**
 * Every test needs a launched client that got its certificates from its `running` event: the first
 * caller (whichever test runs first, alone with `-t` or shuffled) launches it with its agent still
 * registering, as an autoscaling group does, and captures what that produced; later callers reuse
 * it, so the file pays for one issuance as before, and the retirement tests retire this same node.
 */
function ensureArrived(): Promise<Arrival> {
  arrival ??= (async () => {
    const newcomer = await world.launchClient({ online: false });
    const looks = () => world.ssm.calls.get('DescribeInstanceInformation') ?? 0;
    const looksBefore = looks();

    world.events.ec2StateChange(newcomer.instanceId, 'running');
    // The agent registers some seconds after `running`; until then the event is retried from its
    // queue. Two inventory looks while the node is offline: the first delivery and one redelivery.
    await waitFor(() => looks() >= looksBefore + 2, {
      timeoutMs: 10_000,
      what: 'the running event to be handled and redelivered while the agent is not registered',
    });
    const whileUnregistered = await record(newcomer.instanceId);
    newcomer.setOnline(true);
    await world.settle();

    const issued = await record(newcomer.instanceId);
    const { problems } = await verifyNode(world.cluster, newcomer, issued);
    return { newcomer, whileUnregistered, issued, problems };
  })();
  return arrival;
}

/** The newcomer terminated, with the serials it held before, to check their revocation. */
interface Retirement {
  newcomer: NodeSandbox;
  before: NodeRecord;
}
let retirement: Promise<Retirement> | undefined;

/** Both retirement tests need the issued newcomer terminated; the first caller terminates it. */
function ensureRetired(): Promise<Retirement> {
  retirement ??= (async () => {
    const { newcomer, issued } = await ensureArrived();
    expect(issued, 'the newcomer issued before it is terminated').toMatchObject({ status: 'idle' });
    world.terminate(newcomer.instanceId);
    await world.settle();
    return { newcomer, before: issued! };
  })();
  return retirement;
}

beforeAll(async () => {
  world = await startWorld({ servers: 1, clients: 1, cluster: { name: 'lifecycle' } });
  await world.tick();
  await world.settle();
});

/**
 * A test that failed while a node was offline would leave its `running` event redelivered for
 * ever and every later `settle()` waiting on it: bring every agent back and let the queues drain.
 */
afterEach(async () => {
  if (!world) return;
  for (const node of world.fleet.nodes()) node.setOnline(true);
  await world.settle();
});

afterAll(async () => {
  await world?.stop();
});

describe('EC2 instance lifecycle events on the local world', () => {
  it('gives a new instance its certificates once its SSM agent registers, without waiting for a tick', async () => {
    const { whileUnregistered, issued, problems } = await ensureArrived();

    expect(whileUnregistered).toBeUndefined();
    expect(issued).toMatchObject({ status: 'idle', role: 'client' });
    expect(problems).toEqual([]);
  });

  it('retires a terminated instance and revokes its serials in Vault', async () => {
    const { newcomer, before } = await ensureRetired();
    const vault = new VaultClient({
      address: world.vault.address,
      caBundlePem: world.vault.caPem!,
      timeoutMs: 5_000,
    });

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
    const { newcomer } = await ensureRetired();
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
