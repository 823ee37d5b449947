import { describe, expect, it } from 'vitest';
import { DOCUMENT_SIZE_BUDGET_BYTES, documentSizeBytes } from '../../shared/documents';
import { parseRoutingKey } from '../../shared/rollout/routing';
import type { NodeRecord } from '../../shared/state/records';
import {
  deliverCommand,
  type FakeClusterHarness,
  fakeCluster,
  type SentCommand,
} from '../helpers/fake-cluster';

const servers = ['i-00000000000000001', 'i-00000000000000002', 'i-00000000000000003'];
const clients = ['i-0000000000000000a', 'i-0000000000000000b', 'i-0000000000000000c'];
const fleet = [
  ...servers.map((instanceId) => ({ instanceId, role: 'server' as const })),
  ...clients.map((instanceId) => ({ instanceId, role: 'client' as const })),
];
const FAR = Number.MAX_SAFE_INTEGER;

let harness: FakeClusterHarness;

const finishedCommands = new WeakMap<FakeClusterHarness, Set<string>>();

/** Nodes finish every command sent so far; each command's event is delivered once (or dropped). */
async function settle(h: FakeClusterHarness, options: { dropEvents?: boolean } = {}): Promise<void> {
  const finished = finishedCommands.get(h) ?? new Set<string>();
  finishedCommands.set(h, finished);
  for (let round = 0; round < 100; round += 1) {
    const open = h.fleet.commands.filter((command) => !finished.has(command.commandId));
    if (open.length === 0) return;
    for (const command of open) {
      finished.add(command.commandId);
      await h.fleet.complete(command);
      if (!options.dropEvents) await deliverCommand(h, command.commandId);
    }
    if (options.dropEvents) await h.rotation().reconcile(FAR);
  }
  throw new Error('the rollout did not settle');
}

const tick = (h: FakeClusterHarness, owner = 'tick-1', deadline = FAR) =>
  h.rotation().tick({ deadline, owner, actor: 'schedule' });

const nodes = async (h: FakeClusterHarness) =>
  new Map((await h.table.listNodes('prod')).map((node) => [node.instanceId, node] as [string, NodeRecord]));

const installs = (h: FakeClusterHarness) => h.fleet.commands.filter((command) => command.kind === 'install');

describe('certificate rotation engine', () => {
  it('issues every node once: servers one per install, clients batched per wave', async () => {
    harness = await fakeCluster(fleet);

    await tick(harness);
    await settle(harness);

    const records = await nodes(harness);
    expect([...records.values()].every((node) => node.status === 'idle' && node.agent && node.cli)).toBe(
      true,
    );
    expect(installs(harness).map((command) => command.instanceIds)).toEqual([
      [servers[0]],
      [servers[1]],
      [servers[2]],
      [clients[0], clients[1]],
      [clients[2]],
    ]);
    expect(harness.authority.signed).toHaveLength(12);
    expect(harness.telemetry.total('PushSucceeded')).toBe(6);
    expect(harness.events.events.filter((event) => event.type === 'CertificateRotated')).toHaveLength(6);
    expect(await harness.table.getActiveRollout('prod')).toBeUndefined();
  });

  it("tells each install the agent's address, its verify_https_client and a timeout that fits a rollback", async () => {
    harness = await fakeCluster(fleet, {
      nomad: { address: 'https://nomad.internal:4646', verifyHttpsClient: false, settleSeconds: 4 },
      rollout: { clientWaveSize: 2, maxAttempts: 2, serverHealthTimeoutSeconds: 90 },
    });

    await tick(harness);
    await settle(harness);

    for (const command of installs(harness)) {
      expect(command.parameters).toMatchObject({
        nomadAddress: 'https://nomad.internal:4646',
        verifyHttpsClient: 'false',
        settleSeconds: '4',
        healthTimeoutSeconds: '90',
      });
      expect(Number(command.parameters.executionTimeout)).toBeGreaterThanOrEqual(2 * (90 + 4));
    }
  });

  it('splits a wave into installs that fit 64 KB with the chain and CA bundle counted', async () => {
    const many = Array.from({ length: 12 }, (_, index) => ({
      instanceId: `i-${String(index + 100).padStart(17, '0')}`,
      role: 'client' as const,
    }));
    harness = await fakeCluster(many, { rollout: { clientWaveSize: 12, maxAttempts: 2 } });
    const bulky = `-----BEGIN CERTIFICATE-----\n${'A'.repeat(6_000)}\n-----END CERTIFICATE-----`;
    harness.authority.extraChainPems = [bulky, bulky];

    await tick(harness);
    await settle(harness);

    const sent = installs(harness);
    expect(sent.length).toBeGreaterThan(1);
    expect(sent.flatMap((command) => command.instanceIds).sort()).toEqual(
      many.map((node) => node.instanceId),
    );
    for (const command of sent) {
      const parameters = Object.fromEntries(
        Object.entries(command.parameters).map(([name, value]) => [name, [value]]),
      );
      expect(documentSizeBytes('install', parameters)).toBeLessThanOrEqual(DOCUMENT_SIZE_BUDGET_BYTES);
    }
  });

  it('never has two server installs in flight (audit trail)', async () => {
    harness = await fakeCluster(fleet);

    await tick(harness);
    await settle(harness);

    const audit = await harness.table.listAudit('prod', harness.clock.now());
    const serverEntries = audit.filter((e) => e.group === 'server');
    // Without these counts an audit with no server entry (or a dispatch that is never recorded)
    // would pass the in-flight check below vacuously.
    const dispatched = serverEntries.filter((e) => e.action === 'install-dispatched');
    expect(dispatched.map((e) => e.instanceId).sort()).toEqual([...servers].sort());
    expect(serverEntries.filter((e) => e.action === 'install-succeeded')).toHaveLength(servers.length);
    let inFlight = 0;
    let maxInFlight = 0;
    for (const entry of serverEntries) {
      if (entry.action === 'install-dispatched') inFlight += 1;
      if (entry.action === 'install-succeeded' || entry.action === 'install-failed') inFlight -= 1;
      maxInFlight = Math.max(maxInFlight, inFlight);
    }
    expect(maxInFlight).toBe(1);
    expect(inFlight).toBe(0);
  });

  it('ignores duplicate and late events', async () => {
    harness = await fakeCluster(fleet.slice(0, 1));
    await tick(harness);
    await settle(harness);
    const before = await nodes(harness);

    for (const command of harness.fleet.commands) await deliverCommand(harness, command.commandId);

    const after = await nodes(harness);
    expect(after.get(servers[0]!)?.version).toBe(before.get(servers[0]!)?.version);
    expect(harness.authority.signed).toHaveLength(2);
  });

  it('completes through reconcile when every event is lost', async () => {
    harness = await fakeCluster(fleet);

    await tick(harness);
    await settle(harness, { dropEvents: true });

    expect([...(await nodes(harness)).values()].every((node) => node.status === 'idle' && node.agent)).toBe(
      true,
    );
  });

  it('lets only one of two concurrent ticks plan and dispatch', async () => {
    harness = await fakeCluster(fleet);

    const reports = await Promise.all([tick(harness, 'run-a'), tick(harness, 'run-b')]);
    await settle(harness);

    expect(reports.filter((report) => report.leaseHeld)).toHaveLength(1);
    const prepared = harness.fleet.commands.filter((c) => c.kind === 'prepare').flatMap((c) => c.instanceIds);
    expect(prepared.sort()).toEqual([...servers, ...clients].sort());
    expect(harness.authority.signed).toHaveLength(12);
  });

  it('resumes a run cut off mid-fleet without doing anything twice', async () => {
    harness = await fakeCluster(fleet);
    await tick(harness, 'run-1', harness.clock.now() - 1);
    expect(harness.fleet.commands).toHaveLength(0);

    await tick(harness, 'run-2');
    await settle(harness);

    const prepared = harness.fleet.commands.filter((c) => c.kind === 'prepare').flatMap((c) => c.instanceIds);
    expect(prepared).toHaveLength(6);
    expect(new Set(prepared).size).toBe(6);
  });

  it('touches no node while the CA is sealed, and proceeds once it is unsealed', async () => {
    harness = await fakeCluster(fleet);
    harness.authority.sealed = true;

    await tick(harness);
    expect(harness.fleet.commands).toHaveLength(0);

    harness.authority.sealed = false;
    await tick(harness);
    await settle(harness);
    expect(harness.telemetry.total('PushSucceeded')).toBe(6);
  });

  it('gives nodes back when SSM throttles, and completes on a later tick', async () => {
    harness = await fakeCluster(fleet.slice(0, 2));
    harness.fleet.throttleNextSends = 1;

    await tick(harness);
    expect((await nodes(harness)).get(servers[0]!)?.status).toBe('idle');

    await tick(harness);
    await settle(harness);
    expect([...(await nodes(harness)).values()].every((node) => node.agent !== undefined)).toBe(true);
  });

  it('audits an install as dispatched only once SSM took the command, not when it throttled it', async () => {
    harness = await fakeCluster(fleet.slice(0, 1));
    await tick(harness);
    const dispatched = async () =>
      (await harness.table.listAudit('prod', harness.clock.now())).filter(
        (entry) => entry.action === 'install-dispatched',
      );

    harness.fleet.throttleNextSends = 1;
    await settle(harness);
    const whileThrottled = await dispatched();
    await tick(harness);
    await settle(harness);

    expect(whileThrottled).toEqual([]);
    expect(await dispatched()).toHaveLength(1);
    expect((await nodes(harness)).get(servers[0]!)?.agent).toBeDefined();
  });

  it('backs off after a failed install, retries, and halts the rollout when attempts run out', async () => {
    harness = await fakeCluster(fleet.slice(0, 2));
    harness.fleet.behaviour.set(servers[0]!, 'fail-install');

    await tick(harness);
    await settle(harness);
    let node = (await nodes(harness)).get(servers[0]!)!;
    expect(node).toMatchObject({ status: 'failed', failures: 1, lastError: 'new-certificate-not-served' });
    expect(node.nextAttemptAt).toBe(harness.clock.now() + 60_000);
    expect(harness.events.events.map((event) => event.type)).toContain('CertificatePushFailed');

    harness.clock.advance(61_000);
    await tick(harness);
    await settle(harness);
    node = (await nodes(harness)).get(servers[0]!)!;
    expect(node.failures).toBe(2);

    const rollouts = await harness.table.listRollouts('prod');
    expect(rollouts[0]).toMatchObject({ status: 'halted' });
    expect(harness.telemetry.total('RolloutStuck')).toBe(1);
    expect((await nodes(harness)).get(servers[1]!)?.agent).toBeUndefined();
  });

  it('leaves a node that is offline at planning time for a later tick', async () => {
    harness = await fakeCluster(fleet.slice(3, 4));
    harness.fleet.behaviour.set(clients[0]!, 'offline');

    await tick(harness);
    expect(harness.fleet.commands).toHaveLength(0);
    const plan = await harness.rotation().plan({ kind: 'rotate', targets: 'all', force: false });
    expect(plan.entries[0]?.reason).toBe('SSM agent is not online; retried once it is');

    harness.fleet.behaviour.delete(clients[0]!);
    await tick(harness);
    await settle(harness);
    expect((await nodes(harness)).get(clients[0]!)).toMatchObject({ status: 'idle', failures: 0 });
  });

  it('backs off a node that went offline mid-rollout and rotates it once it is back', async () => {
    harness = await fakeCluster([fleet[0]!, fleet[3]!]);
    await tick(harness);
    harness.fleet.behaviour.set(clients[0]!, 'offline');

    await settle(harness);
    expect((await nodes(harness)).get(clients[0]!)).toMatchObject({
      status: 'failed',
      lastError: 'Undeliverable',
    });
    expect((await nodes(harness)).get(servers[0]!)?.status).toBe('idle');

    harness.fleet.behaviour.delete(clients[0]!);
    harness.clock.advance(61_000);
    await tick(harness);
    await settle(harness);
    expect((await nodes(harness)).get(clients[0]!)).toMatchObject({ status: 'idle', failures: 0 });
    expect((await harness.table.listRollouts('prod'))[0]?.status).toBe('completed');
  });

  it('reissues in an emergency with restart and revokes the replaced serials', async () => {
    harness = await fakeCluster(fleet.slice(0, 2));
    await tick(harness);
    await settle(harness);
    const before = await nodes(harness);

    await harness.rotation().start(
      {
        kind: 'emergency',
        targets: 'all',
        force: true,
        reason: 'key exposure',
        actor: 'oncall',
        revokePrevious: true,
        restart: true,
      },
      FAR,
    );
    await settle(harness);

    expect(
      installs(harness)
        .slice(-2)
        .map((command: SentCommand) => command.parameters.mode),
    ).toEqual(['restart', 'restart']);
    const replaced = [...before.values()].flatMap((node) => [node.agent!.serial, node.cli!.serial]);
    expect(harness.authority.revoked.sort()).toEqual(replaced.sort());
    expect(harness.events.events.map((event) => event.type)).toEqual(
      expect.arrayContaining(['EmergencyReissueStarted', 'EmergencyReissueFinished']),
    );
  });

  it('plans without writing anything', async () => {
    harness = await fakeCluster(fleet);
    await harness.rotation().syncInventory({ admitServers: true });
    const before = await nodes(harness);

    const plan = await harness.rotation().plan({ kind: 'rotate', targets: 'all', force: false });

    expect(plan.waves.flatMap((wave) => wave.instanceIds)).toHaveLength(6);
    expect(await nodes(harness)).toEqual(before);
    expect(harness.fleet.commands).toHaveLength(0);
  });

  it('retires a terminated node and revokes its serials', async () => {
    harness = await fakeCluster(fleet.slice(3, 4));
    await tick(harness);
    await settle(harness);
    const node = (await nodes(harness)).get(clients[0]!)!;

    await harness.rotation().retire(clients[0]!, 'ec2');

    expect((await nodes(harness)).get(clients[0]!)?.status).toBe('retired');
    expect(harness.authority.revoked).toEqual([node.agent!.serial, node.cli!.serial]);
    expect(parseRoutingKey('nomad-rotator:prod:certs:install:abc123-0011aabb')).toEqual({
      cluster: 'prod',
      plan: 'certs',
      step: 'install',
      token: 'abc123-0011aabb',
    });
  });

  it('starts the scheduled gossip rotation on a tick that starts no certificate rollout, once per interval', async () => {
    // Arrange: every node issued, the cluster rotating its gossip key every 30 days
    harness = await fakeCluster(fleet, { gossip: { secretId: 'gossip-key', rotateEvery: '30d' } });
    await tick(harness);
    await settle(harness);

    // Act: the first tick with nothing to renew starts it; within the interval nothing more starts
    await tick(harness);
    const started = await harness.table.getActiveRollout('prod');
    await harness.table.updateRollout(started!, { status: 'completed' }, harness.clock.now());
    harness.clock.advance(3_600_000);
    await tick(harness);
    const withinInterval = await harness.table.getActiveRollout('prod');
    harness.clock.advance(31 * 86_400_000);
    await tick(harness);
    await settle(harness);
    await tick(harness);

    // Assert
    expect(started).toMatchObject({ plan: 'gossip', reason: 'scheduled gossip key rotation' });
    expect(withinInterval).toBeUndefined();
    const gossip = harness.fleet.commands.filter((command) => command.kind === 'gossip');
    expect(gossip.map((command) => [command.parameters.operation, command.instanceIds])).toEqual([
      ['inspect', servers],
      ['inspect', servers],
    ]);
  });

  it('never starts a gossip rotation on its own when the cluster says off', async () => {
    harness = await fakeCluster(fleet, { gossip: { secretId: 'gossip-key', rotateEvery: 'off' } });
    await tick(harness);
    await settle(harness);

    await tick(harness);

    expect(harness.fleet.commands.filter((command) => command.kind === 'gossip')).toEqual([]);
    expect(await harness.table.getActiveRollout('prod')).toBeUndefined();
  });
});
