import './quiet-sdk-warning';
import { randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { renderFleetTable } from '../cli/fleet-table';
import type { GossipStatusReport } from '../shared/gossip/status';
import type { NodeRecord } from '../shared/state/records';
import { describeFailure } from './failure';
import type { NodeSandbox } from './node/sandbox';
import { missingPrerequisites, prerequisitesReport } from './prerequisites';
import { startWorld, type World } from './world';
import { verifyNode } from './world/verify';

const HOUR = 3_600_000;
const DEMO_DIR = resolve('.demo');

const say = (text: string) => process.stdout.write(`${text}\n`);
const step = (title: string) => say(`\n=== ${title}`);

async function records(world: World): Promise<Map<string, NodeRecord>> {
  const nodes = await world.runtime.table.listNodes(world.cluster.name);
  return new Map(nodes.map((node) => [node.instanceId, node]));
}

async function runTick(world: World): Promise<void> {
  await world.tick();
  await world.settle();
}

async function showFleet(world: World): Promise<void> {
  say(renderFleetTable([...(await records(world)).values()], world.clock.now()));
}

/** A root shell on a node, as an operator's SSM session would give. */
async function onNode(node: NodeSandbox, script: string) {
  return node.runScript({ script, commandId: `demo-${Date.now()}`, timeoutSeconds: 60 });
}

/** Scheduled runs until the rollout ends (a failed stage waits out its backoff in between). */
async function gossipRotationEnd(world: World, rolloutId: string) {
  for (let round = 0; ; round += 1) {
    await world.settle();
    const rollout = await world.runtime.table.getRollout(world.cluster.name, rolloutId);
    if (rollout === undefined || rollout.status !== 'running' || round >= 20)
      return rollout ?? { status: 'missing', haltReason: undefined };
    world.clock.advance(30_000);
    await runTick(world);
  }
}

/** Each server's gossip keyring as gossip-status reports it: fingerprints, never a key. */
async function showGossip(world: World): Promise<GossipStatusReport> {
  const status = (await world.invoke({
    action: 'gossip-status',
    cluster: world.cluster.name,
  })) as GossipStatusReport;
  say(`secret: current ${status.secret.current ?? '-'}, previous ${status.secret.previous ?? '(not ours)'}`);
  for (const server of status.servers) {
    if (!server.answered) {
      say(`  ${server.instanceId}  no answer: ${server.reason}`);
      continue;
    }
    const keys = server.list.ok
      ? Object.entries(server.list.counts)
          .map(([fingerprint, count]) => `${fingerprint}×${count}`)
          .join(' ')
      : `list failed: ${server.list.error}`;
    say(
      `  ${server.instanceId}  primary ${server.keyringFile?.[0] ?? '-'}  keys ${keys}  members ${server.members.alive}/${server.members.total} alive  health ${server.healthy ? 200 : 500}${server.leaderHere ? '  leader' : ''}`,
    );
  }
  return status;
}

/**
 * The main job on the local world: 3 servers + 3 clients, first issuance, a scheduled renewal, a node
 * whose reload fails and rolls back, an offline node that recovers, an emergency reissue, a
 * gossip key rotation and a straggler repaired. Exits 0 only if every node ends with a valid,
 * matching, served certificate and every server gossips on the new key alone.
 */
async function main(): Promise<number> {
  await rm(DEMO_DIR, { recursive: true, force: true });
  step('starting the local world: Vault, DynamoDB, SSM, Secrets Manager, EventBridge, 3 servers + 3 clients');
  const world = await startWorld({
    baseDir: `${DEMO_DIR}/nodes`,
    echo: (line) => say(`  log: ${line}`),
    // A repaired server has a minute to come back as a voter and hold the gate for 10 s.
    cluster: { rollout: { serverHealthTimeoutSeconds: 60 } },
  });
  try {
    const [server1] = world.fleet.nodes().filter((node) => node.tags['nomad-role'] === 'server');
    const clients = world.fleet.nodes().filter((node) => node.tags['nomad-role'] === 'client');
    const [client1, client2] = clients;

    step('1. first issuance (scheduled tick): keys generated on each node, servers one at a time');
    await runTick(world);
    await showFleet(world);

    step('2. scheduled renewal: the scheduler is shown the world 17h later, past every renewal point');
    const before = await records(world);
    world.clock.advance(17 * HOUR);
    await runTick(world);
    // Vault and the nodes live in real time; the rotator's clock goes back to it after this step.
    world.clock.reset();
    const renewed = [...(await records(world)).values()].filter(
      (node) => node.agent?.serial !== before.get(node.instanceId)?.agent?.serial,
    );
    say(`renewed ${renewed.length} of ${before.size} nodes`);
    await showFleet(world);

    step(`3. a reload that does not take effect on ${client1!.instanceId}: the node rolls back by itself`);
    // The fault file must be on the node before the rotation's install runs, or the reload works.
    await world.fleet.node(client1!.instanceId)!.injectFault('ignore-sighup');
    await world.invoke({
      action: 'rotate',
      cluster: world.cluster.name,
      targets: [client1!.instanceId],
      reason: 'demo: failing reload',
    });
    await world.settle();
    const failed = (await records(world)).get(client1!.instanceId)!;
    say(
      `status ${failed.status}, reason ${failed.lastError}; the agent still serves ${failed.agent?.serial}`,
    );
    await world.fleet.node(client1!.instanceId)!.clearFault('ignore-sighup');
    world.clock.advance(2 * 60_000);
    await runTick(world);
    say(`after the backoff: ${(await records(world)).get(client1!.instanceId)!.lastAction}`);

    step(`4. ${client2!.instanceId} has lost its SSM agent when the clients are rotated; it recovers later`);
    world.fleet.node(client2!.instanceId)!.setOnline(false);
    await world.invoke({
      action: 'rotate',
      cluster: world.cluster.name,
      targets: 'clients',
      reason: 'demo: rotate clients',
    });
    await world.settle();
    const offline = (await records(world)).get(client2!.instanceId)!;
    say(
      `while offline: status ${offline.status}, reason ${offline.lastError}, next attempt ${new Date(offline.nextAttemptAt ?? 0).toISOString()}`,
    );
    world.fleet.node(client2!.instanceId)!.setOnline(true);
    world.clock.advance(2 * 60_000);
    await runTick(world);
    say(`after it came back: ${(await records(world)).get(client2!.instanceId)!.lastAction}`);

    step(
      `5. emergency reissue of every node (restart, revoke replaced serials), e.g. after a key exposure on ${server1!.instanceId}`,
    );
    await world.invoke({
      action: 'reissue',
      cluster: world.cluster.name,
      targets: 'all',
      reason: 'demo: suspected key exposure',
    });
    await world.settle();
    await showFleet(world);

    step('6. gossip key rotation on the 3 servers: install, use, remove, persist; no restart');
    say('before: the key every server was started with, set by hand in its `encrypt`');
    await showGossip(world);
    const rotation = (await world.invoke({
      action: 'rotate-gossip',
      cluster: world.cluster.name,
      reason: 'demo: monthly gossip key rotation',
    })) as { rolloutId: string };
    const gossip = await gossipRotationEnd(world, rotation.rolloutId);
    say(
      `rollout ${rotation.rolloutId}: ${gossip.status}${gossip.haltReason ? ` (${gossip.haltReason})` : ''}`,
    );
    say('after:');
    const rotated = await showGossip(world);

    const straggler = rotated.servers.find((server) => server.answered && !server.leaderHere)!;
    step(
      `7. ${straggler.instanceId} comes back from a restore with a stale keyring: found and repaired (stop, keyring rewritten, start, gate)`,
    );
    const restored = world.fleet.node(straggler.instanceId)!;
    await onNode(restored, 'systemctl stop nomad');
    // A key no other server holds, as an old backup of the data dir would bring back.
    await writeFile(
      join(restored.root, 'opt/nomad/data/server/serf.keyring'),
      JSON.stringify([randomBytes(32).toString('base64')]),
      { mode: 0o600 },
    );
    await onNode(restored, 'systemctl start nomad');
    say(
      'until serf fails it (about 30 s) the others count it suspect: repair-gossip refuses, as not settled',
    );
    let found: { stragglers: string[] } | undefined;
    for (let look = 0; look < 40 && found?.stragglers.length !== 1; look += 1) {
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      found = (await world
        .invoke({ action: 'repair-gossip', cluster: world.cluster.name, reason: 'demo: look', dryRun: true })
        .catch(() => undefined)) as { stragglers: string[] } | undefined;
    }
    say(`gossip-status finds: ${found?.stragglers.join(', ') ?? 'nothing'}`);
    const repair = (await world.invoke({
      action: 'repair-gossip',
      cluster: world.cluster.name,
      reason: 'demo: server restored with an old keyring',
    })) as { rolloutId: string | null };
    const repaired = repair.rolloutId === null ? undefined : await gossipRotationEnd(world, repair.rolloutId);
    say(
      `repair ${repair.rolloutId ?? '-'}: ${repaired?.status ?? 'not started'}${repaired?.haltReason ? ` (${repaired.haltReason})` : ''}`,
    );
    const status = await showGossip(world);

    step('final verification from outside every node');
    const final = await records(world);
    let healthy = 0;
    for (const node of world.fleet.nodes()) {
      const verdict = await verifyNode(world.cluster, node, final.get(node.instanceId));
      const ok = verdict.problems.length === 0;
      healthy += ok ? 1 : 0;
      say(
        `${ok ? 'OK  ' : 'FAIL'} ${node.instanceId} serves ${verdict.servedSerial ?? '-'}${ok ? '' : `: ${verdict.problems.join('; ')}`}`,
      );
    }
    say(`\nnode files: ${DEMO_DIR}/nodes/<instance-id>/opt/nomad/`);
    say(`${healthy}/${world.fleet.nodes().length} nodes end with a valid, matching, served certificate`);
    const onNewKey = status.servers.filter(
      (server) =>
        server.answered &&
        server.healthy &&
        server.keyringFile?.join() === status.secret.current &&
        server.members.alive === status.servers.length,
    ).length;
    say(
      `${onNewKey}/${status.servers.length} servers gossip on the new key alone, healthy, every server alive`,
    );
    return healthy === world.fleet.nodes().length && onNewKey === status.servers.length ? 0 : 1;
  } finally {
    await world.stop();
  }
}

const missing = prerequisitesReport(missingPrerequisites());
if (missing !== undefined) {
  process.stderr.write(`${missing}\n`);
  process.exitCode = 2;
} else {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`demo failed: ${describeFailure(error)}\n`);
      process.exitCode = 1;
    },
  );
}
