import { createHash, randomBytes } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DescribeSecretCommand, GetSecretValueCommand } from '@aws-sdk/client-secrets-manager';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { NodeSandbox } from '../../local/node/sandbox';
import { DOCUMENT_NAMES, type World } from '../../local/world';
import type { RolloutRecord } from '../../shared/rollout/model';
import { answerJson, callAgent, nomadShell } from '../helpers/agent-calls';
import { runToEnd as runWorldToEnd, startGossipWorld } from '../helpers/gossip-world';
import { findSecrets } from '../helpers/secret-scan';

// A gossip key rotation end to end on the local world: three servers with real serf agents under
// Nomad's WAN timings, the key staged in Secrets Manager and read by each server with its instance
// role through the real gossip document, every stage judged on every server's report.

let world: World;

const KEYRING_FILE = 'opt/nomad/data/server/serf.keyring';
const ENCRYPT_CONFIG = 'opt/nomad/config/gossip-encrypt.hcl';
/** The stand-in agent's own configuration, read only when it starts. */
const AGENT_CONFIG = 'etc/nomad-standin.json';
const servers = () => world.fleet.nodes().filter((node) => node.role === 'server');
const fingerprint = (key: string) =>
  createHash('sha256').update(Buffer.from(key, 'base64')).digest('hex').slice(0, 16);

async function keyringOf(node: NodeSandbox): Promise<string[]> {
  for (let tries = 0; ; tries += 1) {
    // serf rewrites the file in place: a read can race it and see it empty.
    const text = await readFile(join(node.root, KEYRING_FILE), 'utf8');
    if (text.trim() !== '' || tries > 20) return JSON.parse(text) as string[];
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const secretStages = async () =>
  (await world.clients.secretsManager.send(new DescribeSecretCommand({ SecretId: world.gossipSecretArn })))
    .VersionIdsToStages ?? {};

const currentKey = async () =>
  (await world.clients.secretsManager.send(new GetSecretValueCommand({ SecretId: world.gossipSecretArn })))
    .SecretString!;

const runToEnd = (rolloutId: string) => runWorldToEnd(world, rolloutId);

/** Every server healthy and seeing all three alive, waited for as a rejoining server needs. */
async function aliveEverywhere(): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const views = await Promise.all(
      servers().map(async (server) => {
        const health = await callAgent(server, 'GET', '/v1/agent/health?type=server').catch(() => undefined);
        const members = await callAgent(server, 'GET', '/v1/agent/members').catch(() => undefined);
        const statuses =
          members?.status === 200
            ? (answerJson(members).Members as { Status: string }[]).map((member) => member.Status)
            : [];
        return health?.status === 200 && statuses.join() === 'alive,alive,alive';
      }),
    );
    if (views.every(Boolean)) return;
    if (Date.now() > deadline) throw new Error(`servers not all healthy and alive: ${views.join()}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

const gossipOperation = (script: string) => /^OPERATION='([a-z]+)'$/m.exec(script)?.[1];

/**
 * Stop `server`'s agent (its serf goes with it) before the first command of `operation` runs on any
 * server: every server's script waits for the stop, so the whole step happens without it.
 */
function stopBefore(operation: string, server: NodeSandbox): Promise<void> {
  let stopped: Promise<unknown> | undefined;
  return new Promise((resolve) => {
    world.ssm.knobs.beforeRun = async ({ documentName, script }) => {
      if (documentName !== DOCUMENT_NAMES.gossip || gossipOperation(script) !== operation) return;
      stopped ??= nomadShell(server, 'systemctl stop nomad').then(() => {
        world.ssm.knobs.beforeRun = undefined;
        resolve();
      });
      await stopped;
    };
  });
}

const restartCommands = () =>
  world.ssm.history().filter((command) => command.Parameters.operation?.[0] === 'restart');

const startAgain = (server: NodeSandbox) => nomadShell(server, 'systemctl start nomad');

const rolloutAudit = async (rolloutId: string) =>
  (await world.runtime.table.listAudit(world.cluster.name, world.clock.now())).filter(
    (entry) => entry.rolloutId === rolloutId,
  );

const rotate = async (reason: string) =>
  (
    (await world.invoke({ action: 'rotate-gossip', cluster: world.cluster.name, reason })) as {
      rolloutId: string;
    }
  ).rolloutId;

/** One scheduled run after the backoff of a failed stage. */
async function tickAfterBackoff(): Promise<void> {
  world.clock.advance(30_000);
  await world.tick();
  await world.settle();
}

beforeAll(async () => {
  world = await startGossipWorld('gossip');
}, 240_000);

afterAll(async () => {
  await world?.stop();
});

afterEach(async () => {
  world.ssm.knobs.beforeRun = undefined;
  // A server a failed test left stopped is started again, so one failure does not cascade.
  for (const server of servers()) if (server.unitState().state !== 'active') await startAgain(server);
});

describe('gossip key rotation (real serf, three servers)', () => {
  it('ends with every server on the new key alone, persisted, the secret staged and no key anywhere else', async () => {
    // Arrange
    const initial = world.fleet.initialGossipKey!;
    for (const server of servers()) expect(await keyringOf(server)).toEqual([initial]);

    // Act
    const started = (await world.invoke({
      action: 'rotate-gossip',
      cluster: world.cluster.name,
      reason: 'monthly gossip key rotation',
    })) as { rolloutId: string; servers: string[] };
    const ended = await runToEnd(started.rolloutId);

    // Assert
    expect(ended).toMatchObject({ status: 'completed', plan: 'gossip' });
    const next = await currentKey();
    expect(next).not.toBe(initial);
    for (const server of servers()) {
      expect(await keyringOf(server)).toEqual([next]);
      const config = join(server.root, ENCRYPT_CONFIG);
      expect((await stat(config)).mode & 0o777).toBe(0o600);
      expect(await readFile(config, 'utf8')).toContain(`encrypt = "${next}"`);
    }
    await aliveEverywhere();
    const trail = (await world.runtime.table.listAudit(world.cluster.name, world.clock.now())).filter(
      (entry) => entry.rolloutId === started.rolloutId,
    );
    // One entry per command: each step went to the three servers at once.
    const dispatched = trail
      .filter((entry) => entry.action.endsWith('-dispatched'))
      .map((entry) => `${entry.action}:${String(entry.details?.batch)}`);
    expect(dispatched).toEqual(
      ['inspect', 'install', 'use', 'remove', 'persist'].map((step) => `${step}-dispatched:3`),
    );
    const stages = Object.values(await secretStages());
    expect(stages.filter((labels) => labels.includes('AWSCURRENT'))).toHaveLength(1);
    expect(stages.filter((labels) => labels.includes('AWSPREVIOUS'))).toHaveLength(1);
    const rotated = world.events
      .events()
      .filter((event) => event['detail-type'] === 'GossipKeyRotated')
      .map((event) => event.detail);
    expect(rotated).toEqual([
      expect.objectContaining({ rolloutId: started.rolloutId, fingerprint: fingerprint(next) }),
    ]);
    const produced = {
      ssmParameters: world.ssm.history(),
      events: world.events.events(),
      logs: world.logger.lines,
      rollouts: await world.runtime.table.listRollouts(world.cluster.name),
      attempts: await world.runtime.table.listAttempts(world.cluster.name, started.rolloutId),
      audit: await world.runtime.table.listAudit(world.cluster.name, world.clock.now()),
    };
    expect(findSecrets(produced, [initial, next])).toEqual([]);
  }, 600_000);

  it('waits for a server that was down during install: no use until it holds the key, then finishes', async () => {
    // Arrange
    const down = servers()[1]!;
    const stopped = stopBefore('install', down);

    // Act: the install runs without it; the next scheduled run finds it still down
    const rolloutId = await rotate('rotation with a server down');
    await stopped;
    await world.settle();
    await tickAfterBackoff();
    const whileDown = await rolloutAudit(rolloutId);
    await startAgain(down);
    // Back means rejoined: the rotation's tries are not spent on a server still starting.
    await aliveEverywhere();
    const ended = await runToEnd(rolloutId);

    // Assert
    expect(whileDown.map((entry) => entry.action)).not.toContain('gossip-use-requested');
    expect(whileDown.map((entry) => entry.action)).toContain('install-failed');
    expect(ended).toMatchObject({ status: 'completed' });
    const next = await currentKey();
    for (const server of servers()) expect(await keyringOf(server)).toEqual([next]);
    await aliveEverywhere();
  }, 600_000);

  it('repeats use for a server that missed it, and removes the old key only after', async () => {
    // Arrange
    const before = await currentKey();
    const down = servers()[2]!;
    const stopped = stopBefore('use', down);

    // Act: use reaches the two others; the third comes back still on the old primary
    const rolloutId = await rotate('rotation with a server down during use');
    await stopped;
    await world.settle();
    await startAgain(down);
    await aliveEverywhere();
    const ended = await runToEnd(rolloutId);

    // Assert
    expect(ended).toMatchObject({ status: 'completed' });
    const trail = await rolloutAudit(rolloutId);
    const actions = trail.map((entry) => entry.action);
    const uses = trail
      .filter((entry) => entry.action === 'use-dispatched')
      .reduce((servers, entry) => servers + Number(entry.details?.batch ?? 0), 0);
    expect(uses).toBeGreaterThan(3);
    expect(actions.indexOf('remove-dispatched')).toBeGreaterThan(actions.lastIndexOf('use-dispatched'));
    const next = await currentKey();
    expect(next).not.toBe(before);
    for (const server of servers()) expect(await keyringOf(server)).toEqual([next]);
    await aliveEverywhere();
  }, 600_000);

  it('halts with an alarm when a server down during install never comes back, and takes the new key out', async () => {
    // Arrange
    const before = await currentKey();
    const down = servers()[0]!;
    const stopped = stopBefore('install', down);
    const failures = world.telemetry.total('GossipRotationFailed');

    // Act
    const rolloutId = await rotate('rotation whose server never returns');
    await stopped;
    const ended = await runToEnd(rolloutId);

    // Assert: halted, alarmed, the others back on the old key alone, the secret as it was
    expect(ended).toMatchObject({ status: 'halted' });
    expect(world.telemetry.total('GossipRotationFailed')).toBe(failures + 1);
    const halted = world.events
      .events()
      .filter((event) => event['detail-type'] === 'GossipRotationHalted')
      .map((event) => event.detail);
    expect(halted).toContainEqual(expect.objectContaining({ rolloutId, newKeyDiscarded: true }));
    for (const server of servers().filter((server) => server !== down))
      expect(await keyringOf(server)).toEqual([before]);
    expect(await currentKey()).toBe(before);
    expect(Object.values(await secretStages()).flat()).not.toContain('AWSPENDING');
    await startAgain(down);
    await aliveEverywhere();
    expect(await keyringOf(down)).toEqual([before]);
  }, 600_000);

  it('finds a server its key no longer reaches and repairs it: stopped, keyring rewritten, started, rejoined', async () => {
    // Arrange: a server comes back with a stale keyring, on a key no other server holds
    const current = await currentKey();
    // A follower: a cut-off leader takes the cluster through an election first, another story.
    const raft = answerJson(await callAgent(servers()[0]!, 'GET', '/v1/operator/raft/configuration')) as {
      Servers: { Node: string; Leader: boolean }[];
    };
    const leader = raft.Servers.find((server) => server.Leader)?.Node ?? '';
    const straggler = servers().find((server) => !leader.startsWith(server.computerName))!;
    await nomadShell(straggler, 'systemctl stop nomad');
    await writeFile(
      join(straggler.root, KEYRING_FILE),
      JSON.stringify([randomBytes(32).toString('base64')]),
      {
        mode: 0o600,
      },
    );
    await startAgain(straggler);
    // The others fail it after memberlist's suspicion window; until then their own queries fail too.
    const deadline = Date.now() + 120_000;
    let found: { stragglers: string[] } | undefined;
    while (Date.now() < deadline) {
      found = (await world
        .invoke({ action: 'repair-gossip', cluster: world.cluster.name, reason: 'look', dryRun: true })
        .catch(() => undefined)) as { stragglers: string[] } | undefined;
      if (found?.stragglers.length === 1) break;
      await new Promise((resolve) => setTimeout(resolve, 3_000));
    }

    // Act
    const repair = (await world.invoke({
      action: 'repair-gossip',
      cluster: world.cluster.name,
      reason: 'server restored with an old keyring',
    })) as { rolloutId: string; stragglers: string[] };
    await world.settle();

    // Assert
    expect(found?.stragglers).toEqual([straggler.instanceId]);
    expect(repair.stragglers).toEqual([straggler.instanceId]);
    expect(await world.runtime.table.getRollout(world.cluster.name, repair.rolloutId)).toMatchObject({
      status: 'completed',
      plan: 'gossiprepair',
    });
    expect(await keyringOf(straggler)).toEqual([current]);
    await aliveEverywhere();
    const repaired = world.events
      .events()
      .filter((event) => event['detail-type'] === 'GossipServerRepaired')
      .map((event) => event.detail);
    expect(repaired).toEqual([
      expect.objectContaining({ instanceId: straggler.instanceId, primary: fingerprint(current) }),
    ]);
  }, 600_000);

  it('restarts every server after a rotation that asked for it: followers first, the leader last, each back as a healthy voter', async () => {
    // Arrange: a rotation asking for staged restarts, run to its end
    const rotation = (await world.invoke({
      action: 'rotate-gossip',
      cluster: world.cluster.name,
      reason: 'rotate and prove the keyring boots',
      restart: 'staged',
    })) as { rolloutId: string; restart: string };
    expect(await runToEnd(rotation.rolloutId)).toMatchObject({ status: 'completed' });
    const key = await currentKey();

    // Act: the next tick starts the restarts
    await world.tick();
    const restart = (await world.runtime.table.listRollouts(world.cluster.name)).find(
      (rollout) => rollout.plan === 'gossiprestart' && rollout.settings.after === rotation.rolloutId,
    );
    const ended = await runToEnd(restart!.rolloutId);

    // Assert: every server restarted once, the leader last, all on the new key and alive
    expect(rotation.restart).toBe('staged');
    expect(ended).toMatchObject({ status: 'completed' });
    const restarted = world.events
      .events()
      .filter((event) => event['detail-type'] === 'GossipServerRestarted')
      .map((event) => event.detail as { instanceId: string; wasLeader: boolean });
    expect(restarted.map((event) => event.instanceId).sort()).toEqual(
      servers()
        .map((server) => server.instanceId)
        .sort(),
    );
    expect(restarted.map((event) => event.wasLeader)).toEqual([false, false, true]);
    for (const server of servers()) expect(await keyringOf(server)).toEqual([key]);
    await aliveEverywhere();
    // Once: a later tick starts no second round of restarts for the same rotation.
    await world.tick();
    const rounds = (await world.runtime.table.listRollouts(world.cluster.name)).filter(
      (rollout) => rollout.plan === 'gossiprestart',
    );
    expect(rounds).toHaveLength(1);
  }, 600_000);

  it('halts the staged restarts when a restarted server does not come back: no second restart, an alarm, quorum kept', async () => {
    // Arrange: the first server to restart will not start again (a configuration it cannot parse)
    const rotation = (await world.invoke({
      action: 'rotate-gossip',
      cluster: world.cluster.name,
      reason: 'rotate, then restart onto a broken server',
      restart: 'staged',
    })) as { rolloutId: string };
    expect(await runToEnd(rotation.rolloutId)).toMatchObject({ status: 'completed' });
    const failures = world.telemetry.total('GossipRotationFailed');
    const restartsBefore = restartCommands().length;
    const broken: { server?: NodeSandbox; config?: string } = {};
    world.ssm.knobs.beforeRun = async ({ documentName, instanceId, script }) => {
      if (documentName !== DOCUMENT_NAMES.gossip || gossipOperation(script) !== 'restart') return;
      if (broken.server !== undefined) return;
      broken.server = servers().find((server) => server.instanceId === instanceId)!;
      const file = join(broken.server.root, AGENT_CONFIG);
      broken.config = await readFile(file, 'utf8');
      await writeFile(file, '{ not json');
    };

    try {
      // Act
      await world.tick();
      const restart = (await world.runtime.table.listRollouts(world.cluster.name)).find(
        (rollout) => rollout.plan === 'gossiprestart' && rollout.settings.after === rotation.rolloutId,
      );
      const ended = await runToEnd(restart!.rolloutId);

      // Assert: halted on that server, alarmed, no other server restarted, the other two lead on
      expect(ended).toMatchObject({ status: 'halted' });
      const attempts = await world.runtime.table.listAttempts(world.cluster.name, ended.rolloutId);
      // systemctl's own job failed (the agent exited at once), or the agent never held the gate.
      expect(attempts.find((attempt) => attempt.target === broken.server?.instanceId)?.lastError).toMatch(
        /^restart-failed(:not-stable)?$/,
      );
      expect(world.telemetry.total('GossipRotationFailed')).toBe(failures + 1);
      const restartsSent = restartCommands().slice(restartsBefore);
      expect(restartsSent.map((command) => command.InstanceIds)).toEqual([[broken.server!.instanceId]]);
      const others = servers().filter((server) => server !== broken.server);
      for (const server of others) {
        const health = await callAgent(server, 'GET', '/v1/agent/health?type=server');
        expect(health.status).toBe(200);
      }
    } finally {
      world.ssm.knobs.beforeRun = undefined;
      if (broken.server !== undefined) {
        await writeFile(join(broken.server.root, AGENT_CONFIG), broken.config!);
        await nomadShell(broken.server, 'systemctl reset-failed nomad; systemctl restart nomad');
        await aliveEverywhere();
      }
    }
  }, 600_000);

  it('finishes a rotation whose every result event is lost, on scheduled runs alone, sending no step twice', async () => {
    // Arrange: EventBridge delivers no SSM status event; only the ticks' reconcile sees results
    world.ssm.knobs.dropNextEvents = 1_000;
    let ended: RolloutRecord;
    let rolloutId: string;
    try {
      // Act
      rolloutId = await rotate('rotation with every event lost');
      ended = await runToEnd(rolloutId);
    } finally {
      world.ssm.knobs.dropNextEvents = 0;
    }

    // Assert: completed, each step one command to all three servers
    expect(ended).toMatchObject({ status: 'completed' });
    const tag = rolloutId.slice(-6);
    const sent = world.ssm
      .history()
      .filter((command) => command.Parameters.attemptId?.[0]?.startsWith(`${tag}-`))
      .map((command) => `${command.Parameters.operation?.[0]}:${command.InstanceIds.length}`);
    expect(sent).toEqual(['inspect:3', 'install:3', 'use:3', 'remove:3', 'persist:3']);
    await aliveEverywhere();
  }, 600_000);

  it('refuses a gossip rotation while another rollout runs, and changes nothing', async () => {
    // Arrange: a certificate rotation of every node is under way
    await world.invoke({ action: 'rotate', cluster: world.cluster.name, targets: 'all', reason: 'renewal' });
    const stagesBefore = await secretStages();
    const gossipRollouts = async () =>
      (await world.runtime.table.listRollouts(world.cluster.name)).filter(
        (rollout) => rollout.plan === 'gossip',
      );
    const rolloutsBefore = (await gossipRollouts()).length;

    // Act
    const refused = world.invoke({ action: 'rotate-gossip', cluster: world.cluster.name, reason: 'now' });

    // Assert
    await expect(refused).rejects.toMatchObject({ name: 'ConflictError' });
    expect(await secretStages()).toEqual(stagesBefore);
    expect(await gossipRollouts()).toHaveLength(rolloutsBefore);
    await world.settle();
  }, 600_000);
});
