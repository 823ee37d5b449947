import { generateKeyPairSync } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { NodeSandbox } from '../../local/node/sandbox';
import { DOCUMENT_NAMES, FUNCTIONS, startWorld, type World } from '../../local/world';
import { verifyNode } from '../../local/world/verify';
import type { AuditEntry, NodeRecord } from '../../shared/state/records';
import { findSecrets } from '../helpers/secret-scan';

let world: World;

const records = async () =>
  new Map(
    (await world.runtime.table.listNodes(world.cluster.name)).map(
      (node) => [node.instanceId, node] as [string, NodeRecord],
    ),
  );
const servers = () => world.fleet.nodes().filter((node) => node.role === 'server');
const clients = () => world.fleet.nodes().filter((node) => node.role === 'client');
const tick = async () => {
  await world.tick();
  await world.settle();
};

/** After the failure backoff, the next scheduled tick rotates the node and it serves its new pair. */
async function expectRotatedOnRetry(node: NodeSandbox): Promise<void> {
  world.clock.advance(2 * 60_000);
  await tick();
  const after = (await records()).get(node.instanceId)!;
  expect(after).toMatchObject({ status: 'idle', lastAction: 'rotated-reload' });
  expect((await verifyNode(world.cluster, node, after)).problems).toEqual([]);
}

/** Everything a run produced that could leak: SSM parameters, events, logs, every table item. */
async function everythingProduced(): Promise<Record<string, unknown>> {
  const table = world.runtime.table;
  return {
    ssmParameters: world.ssm.history(),
    events: world.events.events(),
    logs: world.logger.lines,
    nodes: await table.listNodes(world.cluster.name),
    rollouts: await table.listRollouts(world.cluster.name),
    audit: await table.listAudit(world.cluster.name, world.clock.now()),
  };
}

/** What the first issuance produced, captured when it finished, before any later test added to it. */
interface Issuance {
  rotatedEvents: ReturnType<World['events']['events']>;
  audit: AuditEntry[];
  pushSucceeded: number;
  pushFailed: number;
}
let issuance: Promise<Issuance> | undefined;

/**
 * Every test starts from an issued fleet with every node idle, whatever ran before it (or nothing,
 * with `-t`): the first call issues the fleet and captures what that produced; later calls only
 * check, and bring back a node an earlier failed test left mid-fault, so one failure does not
 * cascade into unrelated tests.
 */
async function ensureIssued(): Promise<Issuance> {
  issuance ??= (async () => {
    await tick();
    return {
      rotatedEvents: world.events
        .events()
        .filter((event) => event.source === 'nomad-rotator' && event['detail-type'] === 'CertificateRotated'),
      audit: await world.runtime.table.listAudit(world.cluster.name, world.clock.now()),
      pushSucceeded: world.telemetry.total('PushSucceeded'),
      pushFailed: world.telemetry.total('PushFailed'),
    };
  })();
  const issued = await issuance;
  for (let round = 0; round < 3 && !(await fleetIdle()); round += 1) {
    // Past any failure backoff, so the next tick retries what an interrupted test left failed.
    world.clock.advance(2 * 60_000);
    await tick();
  }
  expect(await fleetIdle(), 'every node idle with a certificate before the test').toBe(true);
  return issued;
}

const fleetIdle = async () => {
  const current = await records();
  return world.fleet.nodes().every((node) => {
    const record = current.get(node.instanceId);
    return record?.status === 'idle' && record.agent !== undefined;
  });
};

/** Undo every knob and fault a test may set, even when it failed before undoing them itself. */
afterEach(async () => {
  if (!world) return;
  world.ssm.knobs.beforeRun = undefined;
  world.ssm.knobs.dropNextEvents = 0;
  world.ssm.limiter.tps = 0;
  world.vault.unseal();
  for (const node of world.fleet.nodes()) {
    node.setOnline(true);
    await node.clearFault('ignore-sighup');
    await node.clearFault('read-only');
  }
});

/**
 * The most servers with an install open at once along a trail: dispatched and not yet succeeded or
 * failed. Counted per server, not per entry: a throttled send is audited `install-dispatched` and
 * dispatched again later, which is the same server, not a second one.
 */
function maxServersInFlight(serverEntries: readonly AuditEntry[]): number {
  const open = new Set<string>();
  let most = 0;
  for (const entry of serverEntries) {
    if (entry.action === 'install-dispatched') open.add(entry.instanceId!);
    if (entry.action === 'install-succeeded' || entry.action === 'install-failed')
      open.delete(entry.instanceId!);
    most = Math.max(most, open.size);
  }
  return most;
}

beforeAll(async () => {
  world = await startWorld({
    servers: 2,
    clients: 2,
    cluster: { name: 'e2e', rollout: { clientWaveSize: 2 } },
  });
});

afterAll(async () => {
  await world?.stop();
});

describe('certificate rotation end to end on the local world', () => {
  it('issues every node a certificate it serves, with keys that never left the node', async () => {
    await ensureIssued();

    const current = await records();
    for (const node of world.fleet.nodes()) {
      const verdict = await verifyNode(world.cluster, node, current.get(node.instanceId));
      expect(verdict.problems, node.instanceId).toEqual([]);
    }
    const privateKeys = await Promise.all(
      world.fleet
        .nodes()
        .flatMap((node) =>
          ['opt/nomad/agent-certs/agent.key', 'opt/nomad/cli-certs/cli.key'].map((path) =>
            readFile(join(node.root, path), 'utf8'),
          ),
        ),
    );
    const keyBodies = privateKeys.map((pem) => pem.split('\n').slice(1, 3).join(''));
    const token = await world.runtime.vault(world.cluster.name).tokens.current();
    expect(findSecrets(await everythingProduced(), [...keyBodies, token.token, token.accessor])).toEqual([]);
  });

  it('reports each rotation as a bus event, an audit item and metrics', async () => {
    const ids = world.fleet
      .nodes()
      .map((node) => node.instanceId)
      .sort();

    // What the first issuance produced, captured when it finished (later tests rotate again).
    const { rotatedEvents, audit, pushSucceeded, pushFailed } = await ensureIssued();

    expect(rotatedEvents.map((event) => event.detail.instanceId).sort()).toEqual(ids);
    expect(
      audit
        .filter((entry) => entry.action === 'install-succeeded')
        .map((entry) => entry.instanceId)
        .sort(),
    ).toEqual(ids);
    expect(pushSucceeded).toBe(ids.length);
    expect(pushFailed).toBe(0);
    // The fleet's expiry is measured by the scheduled tick; the one that issued ran before any certificate.
    await tick();
    const expiry = world.telemetry.points.filter((point) => point.name === 'MinHoursToExpiry').at(-1);
    expect(expiry?.value).toBeGreaterThan(23);
    // And the issuing CA's remaining life, read from Vault on every tick, for the CaDaysToExpiry alarm.
    const caDays = world.telemetry.points.filter((point) => point.name === 'CaDaysToExpiry').at(-1);
    expect(caDays?.value).toBeGreaterThan(30);
  });

  it('changes nothing when every SSM event of the run is delivered again, late and out of order', async () => {
    await ensureIssued();
    const before = await records();
    const commandsBefore = world.ssm.history().length;
    const replay = world.events
      .events()
      .filter((event) => event.source === 'aws.ssm')
      .reverse();

    for (const event of replay) world.events.putAwsEvent(structuredClone(event));
    await world.settle();

    expect(replay.length).toBeGreaterThan(0);
    expect(await records()).toEqual(before);
    expect(world.ssm.history()).toHaveLength(commandsBefore);
  });

  it('never reloads two servers at a time (audit trail)', async () => {
    const { audit: issuanceAudit } = await ensureIssued();
    // The whole trail so far: later tests rotate the servers again, the invariant holds for all of it.
    const audit = await world.runtime.table.listAudit(world.cluster.name, world.clock.now());

    const serverIds = servers()
      .map((node) => node.instanceId)
      .sort();
    const issuedServers = issuanceAudit.filter((entry) => entry.group === 'server');
    // Counted first: a trail without server entries would pass the in-flight check vacuously.
    expect(
      issuedServers
        .filter((entry) => entry.action === 'install-dispatched')
        .map((entry) => entry.instanceId)
        .sort(),
    ).toEqual(serverIds);
    expect(issuedServers.filter((entry) => entry.action === 'install-succeeded')).toHaveLength(
      serverIds.length,
    );
    expect(maxServersInFlight(issuedServers)).toBe(1);
    expect(maxServersInFlight(audit.filter((entry) => entry.group === 'server'))).toBeLessThanOrEqual(1);
  });

  it.each([
    [
      { action: 'destroy', cluster: 'e2e', targets: 'all', reason: 'x-x' },
      /action: must be one of plan, rotate, reissue, rotate-gossip/,
    ],
    [
      { action: 'rotate', cluster: 'e2e', targets: ['i-123'], reason: 'bad id' },
      /targets\.0: must be an EC2 instance id/,
    ],
    [
      { action: 'rotate', cluster: 'e2e', targets: 'all', reason: 'extra', force: true },
      /force: unknown field/,
    ],
    [{ action: 'rotate', cluster: 'e2e', targets: [], reason: 'empty' }, /targets/],
    [
      { action: 'rotate', cluster: 'e2e', targets: ['i-0123456789abcdef0'], reason: 'foreign' },
      /i-0123456789abcdef0 is not a node of cluster e2e/,
    ],
    [
      { action: 'rotate', cluster: 'other', targets: 'all', reason: 'unknown cluster' },
      /cluster: other is not configured/,
    ],
  ])('refuses a bad manual payload with a clear error and changes nothing: %j', async (payload, message) => {
    await ensureIssued();
    const before = await everythingProduced();

    await expect(world.invoke(payload)).rejects.toThrow(message);

    const after = await everythingProduced();
    expect(after.nodes).toEqual(before.nodes);
    expect(after.rollouts).toEqual(before.rollouts);
    expect((after.ssmParameters as unknown[]).length).toBe((before.ssmParameters as unknown[]).length);
  });

  it('leaves a node on its working certificate when its reload does not take effect, then retries', async () => {
    await ensureIssued();
    const node = clients()[0]!;
    const before = (await records()).get(node.instanceId)!;
    const failuresBefore = world.telemetry.total('PushFailed');
    const eventsBefore = world.events.events().length;
    await node.injectFault('ignore-sighup');

    await world.invoke({
      action: 'rotate',
      cluster: 'e2e',
      targets: [node.instanceId],
      reason: 'e2e rollback',
    });
    await world.settle();

    const failed = (await records()).get(node.instanceId)!;
    expect(failed).toMatchObject({ status: 'failed', lastError: 'new-certificate-not-served' });
    // Counted from before this test: earlier tests fail pushes of their own.
    expect(world.telemetry.total('PushFailed')).toBeGreaterThan(failuresBefore);
    expect(
      world.events
        .events()
        .slice(eventsBefore)
        .some(
          (event) =>
            event['detail-type'] === 'CertificatePushFailed' && event.detail.instanceId === node.instanceId,
        ),
    ).toBe(true);
    expect((await verifyNode(world.cluster, node, before)).problems).toEqual([]);
    await node.clearFault('ignore-sighup');
    await expectRotatedOnRetry(node);
  });

  it('refuses a certificate that does not match the key on the node and keeps the working pair', async () => {
    await ensureIssued();
    const node = clients()[1]!;
    const before = (await records()).get(node.instanceId)!;
    const pendingKey = join(node.root, 'opt/nomad/agent-certs/.pending/agent.key');
    // The key the CSR came from is replaced before install: the signed certificate no longer pairs with it.
    world.ssm.knobs.beforeRun = async ({ documentName, instanceId }) => {
      if (documentName !== DOCUMENT_NAMES.install || instanceId !== node.instanceId) return;
      const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      await writeFile(pendingKey, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
    };

    try {
      await world.invoke({ action: 'rotate', cluster: 'e2e', targets: [node.instanceId], reason: 'pair' });
      await world.settle();
    } finally {
      world.ssm.knobs.beforeRun = undefined;
    }

    expect((await records()).get(node.instanceId)).toMatchObject({
      status: 'failed',
      lastError: 'no-certificate-for-this-node',
    });
    expect((await verifyNode(world.cluster, node, before)).problems).toEqual([]);
    await expectRotatedOnRetry(node);
  });

  it.each([
    {
      fault: 'a CA bundle that does not parse',
      reason: 'invalid-ca-bundle',
      corrupt: (script: string) =>
        script.replace(
          /CA_BUNDLE_B64='[^']*'/,
          `CA_BUNDLE_B64='${Buffer.from('-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n').toString('base64')}'`,
        ),
    },
    {
      fault: 'certificates without the names of the node’s role and region',
      reason: 'wrong-names',
      corrupt: (script: string) => script.replace("REGION='global'", "REGION='elsewhere'"),
    },
  ])(
    'refuses $fault before touching anything; the agent stays up on its pair',
    async ({ reason, corrupt }) => {
      await ensureIssued();
      const node = clients()[1]!;
      const before = (await records()).get(node.instanceId)!;
      world.ssm.knobs.beforeRun = ({ documentName, instanceId, script }) =>
        documentName === DOCUMENT_NAMES.install && instanceId === node.instanceId
          ? corrupt(script)
          : undefined;

      try {
        await world.invoke({
          action: 'rotate',
          cluster: 'e2e',
          targets: [node.instanceId],
          reason: 'corrupt',
        });
        await world.settle();
      } finally {
        world.ssm.knobs.beforeRun = undefined;
      }

      expect((await records()).get(node.instanceId)).toMatchObject({
        status: 'failed',
        lastError: expect.stringMatching(new RegExp(`^${reason}`)),
      });
      expect(node.unitState().state).toBe('active');
      expect((await verifyNode(world.cluster, node, before)).problems).toEqual([]);
      await expectRotatedOnRetry(node);
    },
  );

  it('restores the files it already wrote when a later write fails, and retries once the disk is back', async () => {
    await ensureIssued();
    const node = clients()[0]!;
    const before = (await records()).get(node.instanceId)!;
    // cli.key is the last file written: the agent certificate, key, CA and CLI certificate are replaced first.
    await node.makeReadOnly(['/opt/nomad/cli-certs/cli.key']);

    await world.invoke({ action: 'rotate', cluster: 'e2e', targets: [node.instanceId], reason: 'disk' });
    await world.settle();

    expect((await records()).get(node.instanceId)).toMatchObject({
      status: 'failed',
      lastError: 'write-failed',
    });
    expect((await verifyNode(world.cluster, node, before)).problems).toEqual([]);
    await node.clearFault('read-only');
    await expectRotatedOnRetry(node);
  });

  it('leaves an offline node on its working pair, rotates the others, and catches it up when it is back', async () => {
    await ensureIssued();
    const [offline, online] = clients() as [NodeSandbox, NodeSandbox];
    const before = await records();
    offline.setOnline(false);

    await world.invoke({ action: 'rotate', cluster: 'e2e', targets: 'clients', reason: 'offline node' });
    await world.settle();

    const during = await records();
    expect(during.get(offline.instanceId)).toMatchObject({ status: 'failed' });
    expect(during.get(offline.instanceId)?.agent?.serial).toBe(before.get(offline.instanceId)?.agent?.serial);
    expect((await verifyNode(world.cluster, offline, before.get(offline.instanceId))).problems).toEqual([]);
    expect(during.get(online.instanceId)?.agent?.serial).not.toBe(
      before.get(online.instanceId)?.agent?.serial,
    );
    offline.setOnline(true);
    world.clock.advance(2 * 60_000);
    await tick();
    const after = (await records()).get(offline.instanceId)!;
    expect(after.agent?.serial).not.toBe(before.get(offline.instanceId)?.agent?.serial);
    expect((await verifyNode(world.cluster, offline, after)).problems).toEqual([]);
  });

  it('rotates each due node once when two scheduled ticks run at the same time', async () => {
    await ensureIssued();
    const since = world.clock.now();
    world.clock.advance(17 * 3_600_000);

    try {
      await Promise.all([world.tick(), world.tick()]);
      await world.settle();
    } finally {
      // Vault signs in real time: left 17 h ahead, the rotator would find the new certificates due too.
      world.clock.reset();
    }

    const audit = await world.runtime.table.listAudit(world.cluster.name, since + 18 * 3_600_000);
    const installs = audit.filter((entry) => entry.action === 'install-succeeded' && entry.at >= since);
    const perNode = new Map<string, number>();
    for (const entry of installs) perNode.set(entry.instanceId!, (perNode.get(entry.instanceId!) ?? 0) + 1);
    expect(Object.fromEntries(perNode)).toEqual(
      Object.fromEntries(world.fleet.nodes().map((node) => [node.instanceId, 1])),
    );
    const current = await records();
    for (const node of world.fleet.nodes())
      expect((await verifyNode(world.cluster, node, current.get(node.instanceId))).problems).toEqual([]);
  });

  it('resumes a tick cut off by its deadline on the next one, rotating each node once', async () => {
    // Without events every step waits for a tick's reconcile, so the tick's deadline decides how far it gets.
    await ensureIssued();
    world.ssm.knobs.dropNextEvents = 1_000;
    const before = await records();
    const started = (await world.invoke({
      action: 'rotate',
      cluster: 'e2e',
      targets: 'all',
      reason: 'cut off',
    })) as { rolloutId: string };
    await world.settle();
    const waiting = await records();

    // 21 s left: the handler keeps a 20 s margin, so its deadline is one second away and already past
    // when it first checks it.
    const cutOff = world.lambda.invoke(FUNCTIONS.rotateCerts, { tick: true }, 21_000);
    world.clock.advance(5_000);
    await cutOff;
    await world.settle();
    expect(await records()).toEqual(waiting);

    try {
      for (let round = 0; round < 12; round += 1) {
        if ((await world.runtime.table.getRollout('e2e', started.rolloutId))?.status === 'completed') break;
        await tick();
      }
    } finally {
      world.ssm.knobs.dropNextEvents = 0;
    }

    expect((await world.runtime.table.getRollout('e2e', started.rolloutId))?.status).toBe('completed');
    const audit = await world.runtime.table.listAudit('e2e', world.clock.now());
    const installs = audit.filter(
      (entry) => entry.action === 'install-succeeded' && entry.rolloutId === started.rolloutId,
    );
    expect(installs.map((entry) => entry.instanceId).sort()).toEqual(
      world.fleet
        .nodes()
        .map((node) => node.instanceId)
        .sort(),
    );
    const after = await records();
    for (const node of world.fleet.nodes())
      expect(after.get(node.instanceId)?.agent?.serial).not.toBe(before.get(node.instanceId)?.agent?.serial);
  });

  it('touches no node while Vault is sealed, and completes once it is unsealed', async () => {
    await ensureIssued();
    const before = await records();
    const commandsBefore = world.ssm.history().length;
    world.vault.seal();

    await world.invoke({ action: 'rotate', cluster: 'e2e', targets: 'clients', reason: 'sealed vault' });
    await world.settle();
    expect(world.ssm.history()).toHaveLength(commandsBefore);

    world.vault.unseal();
    await tick();
    const current = await records();
    for (const node of clients()) {
      // A new serial: the old pair verifies too, so verifying alone would not show the rollout finished.
      expect(current.get(node.instanceId)?.agent?.serial).not.toBe(
        before.get(node.instanceId)?.agent?.serial,
      );
      expect((await verifyNode(world.cluster, node, current.get(node.instanceId))).problems).toEqual([]);
    }
  });

  it('completes through reconcile when SSM events are lost', async () => {
    await ensureIssued();
    world.ssm.knobs.dropNextEvents = 1_000;
    const before = await records();

    await world.invoke({ action: 'rotate', cluster: 'e2e', targets: 'clients', reason: 'lost events' });
    await world.settle();
    for (let round = 0; round < 4; round += 1) await tick();
    world.ssm.knobs.dropNextEvents = 0;

    const after = await records();
    for (const node of clients()) {
      expect(after.get(node.instanceId)?.agent?.serial).not.toBe(before.get(node.instanceId)?.agent?.serial);
      expect(after.get(node.instanceId)?.status).toBe('idle');
    }
  });

  it('finishes a rollout later when SSM throttles in the middle of it', async () => {
    await ensureIssued();
    const before = await records();
    const linesBefore = world.logger.lines.length;

    await world.invoke({ action: 'rotate', cluster: 'e2e', targets: 'servers', reason: 'throttled' });
    world.ssm.limiter.tps = 0.2;
    world.ssm.limiter.burst = 1;
    await world.settle();
    world.ssm.limiter.tps = 0;
    for (let round = 0; round < 6; round += 1) await tick();

    // Only this test's lines: an earlier test's lost or late commands log the same words.
    expect(
      world.logger.lines.slice(linesBefore).some((line) => /not sent|not applied/.test(line.message)),
    ).toBe(true);
    const after = await records();
    for (const node of servers()) {
      expect(after.get(node.instanceId)?.agent?.serial).not.toBe(before.get(node.instanceId)?.agent?.serial);
      expect(after.get(node.instanceId)?.status).toBe('idle');
    }
  });
});
