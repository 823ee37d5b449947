import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RAFT_CONTACT_PROBES } from '../../local/node/agent-options';
import { createNodeFleet, type NodeFleet } from '../../local/node/fleet';
import type { NodeSandbox } from '../../local/node/sandbox';
import { type AgentAnswer, callAgent } from '../helpers/agent-calls';
import { opensslCa } from '../helpers/openssl-ca';
import { eventually, issue, reloadAndWait, sleep, type TestCa } from '../helpers/standin-nodes';

// /v1/operator/autopilot/health and /configuration on the stand-in, as Nomad answers them from the
// leader's raft-autopilot state: what a staged restart gates on. Three servers and a client with
// real serf and TLS, ACLs on. Raft and autopilot run with small timings; serf keeps Nomad's WAN
// failure detection, which only one test waits for.

const BEHAVIOUR = {
  raftProbeIntervalMs: 150,
  rpcHoldTimeoutMs: 300,
  autopilotIntervalMs: 200,
  serverStabilizationTimeMs: 1_000,
};
const CONTACT_WINDOW_MS = BEHAVIOUR.raftProbeIntervalMs * RAFT_CONTACT_PROBES;
const SERF_FAILURE_DETECTION_MS = 75_000;

/** The rules the world's Nomad token carries: the product's scripts use it. */
const WORLD_TOKEN = randomUUID();
const AGENT_WRITE = randomUUID();
const OPERATOR_WRITE = randomUUID();

interface ServerHealth {
  ID: string;
  Name: string;
  Address: string;
  SerfStatus: string;
  Version: string;
  Leader: boolean;
  LastContact: string;
  LastTerm: number;
  LastIndex: number;
  Healthy: boolean;
  Voter: boolean;
  StableSince: string;
}

interface HealthReply {
  Healthy: boolean;
  FailureTolerance: number;
  Leader: string;
  Voters: string[];
  Servers: ServerHealth[];
}

interface Health {
  status: number;
  reply: HealthReply;
}

let baseDir: string;
let fleet: NodeFleet;
let ca: TestCa;
let otherCa: TestCa;
let servers: NodeSandbox[];
let client: NodeSandbox;

const rpcAddress = (node: NodeSandbox) => `127.0.0.1:${node.gossip!.rpcPort}`;
const memberName = (node: NodeSandbox) => `${node.computerName}.global`;
/** null: the anonymous token. */
const tokenHeader = (token: string | null): Record<string, string> =>
  token === null ? {} : { 'X-Nomad-Token': token };

const healthCall = (node: NodeSandbox, token: string | null = WORLD_TOKEN): Promise<AgentAnswer> =>
  callAgent(node, 'GET', '/v1/operator/autopilot/health', { headers: tokenHeader(token) });

async function health(node: NodeSandbox): Promise<Health> {
  const answer = await healthCall(node);
  return { status: answer.status, reply: JSON.parse(answer.text) as HealthReply };
}

const entryOf = (current: Health, node: NodeSandbox) =>
  current.reply.Servers.find((entry) => entry.Name === memberName(node));

const configuration = async (node: NodeSandbox, query = '') =>
  JSON.parse(
    (
      await callAgent(node, 'GET', `/v1/operator/autopilot/configuration${query}`, {
        headers: tokenHeader(WORLD_TOKEN),
      })
    ).text,
  ) as { CleanupDeadServers: boolean; ModifyIndex: number };

const setCleanup = (node: NodeSandbox, cleanupDeadServers: boolean, token = OPERATOR_WRITE) =>
  callAgent(node, 'PUT', '/v1/operator/autopilot/configuration', {
    body: { CleanupDeadServers: cleanupDeadServers },
    headers: tokenHeader(token),
  });

async function leaderNode(): Promise<NodeSandbox> {
  const current = await eventually(
    () => health(servers[0]!),
    (answer) => answer.reply.Leader !== '',
  );
  return servers.find((server) => rpcAddress(server) === current.reply.Leader)!;
}

const settled = (current: Health) => current.status === 200 && current.reply.FailureTolerance === 1;

/**
 * Settled, and every server's stats fetched since the last configuration change: a server the
 * leader could not reach since then would still show the index before it.
 */
const caughtUp = (current: Health) => {
  const leaderIndex = current.reply.Servers.find((entry) => entry.Leader)?.LastIndex;
  return settled(current) && current.reply.Servers.every((entry) => entry.LastIndex === leaderIndex);
};

const reload = (node: NodeSandbox) => reloadAndWait(fleet, node);

beforeAll(async () => {
  baseDir = await mkdtemp(join(tmpdir(), 'nomad-standin-autopilot-health-'));
  [ca, otherCa] = await Promise.all([opensslCa(), opensslCa()]);
  fleet = await createNodeFleet({
    baseDir,
    servers: 3,
    clients: 1,
    clusterName: 'autopilot-health',
    restartDelayMs: 200,
    agent: BEHAVIOUR,
    aclTokens: {
      [WORLD_TOKEN]: ['agent-write', 'operator-read'],
      [AGENT_WRITE]: ['agent-write'],
      [OPERATOR_WRITE]: ['operator-write'],
    },
  });
  servers = fleet.nodes().filter((node) => node.role === 'server');
  client = fleet.nodes().find((node) => node.role === 'client')!;
  await Promise.all(fleet.nodes().map((node) => issue(node, ca)));
});

afterAll(async () => {
  await fleet?.stop();
  await Promise.all([ca?.dispose(), otherCa?.dispose()]);
  await rm(baseDir, { recursive: true, force: true });
});

describe('autopilot health and configuration on the server stand-ins', () => {
  it('answers 500 "No cluster leader" before there is a leader, whatever the token: the leader judges it', async () => {
    await fleet.supervisor.command(servers[0]!.instanceId, 'start');

    const anonymous = await healthCall(servers[0]!, null);
    const withToken = await healthCall(servers[0]!);

    expect(anonymous).toEqual({ status: 500, text: 'No cluster leader' });
    expect(withToken).toEqual({ status: 500, text: 'No cluster leader' });
  });

  it('a healthy cluster answers 200 with FailureTolerance 1 and three healthy voters: the leader’s view, asked anywhere', async () => {
    for (const node of [...servers.slice(1), client])
      await fleet.supervisor.command(node.instanceId, 'start');
    await eventually(() => health(servers[0]!), settled, 20_000);
    const leader = await leaderNode();
    const follower = servers.find((server) => server !== leader)!;

    const fromLeader = await health(leader);
    const fromFollower = await health(follower);
    const fromClient = await health(client);

    expect(fromLeader.status).toBe(200);
    expect(fromLeader.reply).toMatchObject({
      Healthy: true,
      FailureTolerance: 1,
      Leader: rpcAddress(leader),
    });
    expect(fromLeader.reply.Voters[0]).toBe(rpcAddress(leader));
    expect([...fromLeader.reply.Voters].sort()).toEqual(servers.map(rpcAddress).sort());
    for (const server of servers) {
      const entry = entryOf(fromLeader, server)!;
      expect(entry).toMatchObject({
        ID: rpcAddress(server),
        Address: rpcAddress(server),
        SerfStatus: 'alive',
        Version: '1.10.1',
        Leader: server === leader,
        Healthy: true,
        Voter: true,
        LastTerm: fromLeader.reply.Servers[0]!.LastTerm,
      });
      expect(entry.LastContact).toMatch(server === leader ? /^0s$/ : /^(0s|\d+ms)$/);
      expect(entry.StableSince).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    }
    const stable = (current: Health) =>
      current.reply.Servers.map(({ ID, Name, Healthy, Voter, StableSince }) => ({
        ID,
        Name,
        Healthy,
        Voter,
        StableSince,
      }));
    for (const other of [fromFollower, fromClient]) {
      expect(other.status).toBe(200);
      expect(other.reply).toMatchObject({
        FailureTolerance: 1,
        Leader: rpcAddress(leader),
        Voters: fromLeader.reply.Voters,
      });
      expect(stable(other)).toEqual(stable(fromLeader));
    }
  });

  it('asks for operator:read: no token and an agent:write token are refused; the world’s token reads health and still lists keys', async () => {
    const leader = await leaderNode();
    const follower = servers.find((server) => server !== leader)!;

    const anonymous = await healthCall(follower, null);
    const agentWrite = await healthCall(follower, AGENT_WRITE);
    const world = await healthCall(follower, WORLD_TOKEN);
    const worldKeyring = await callAgent(follower, 'GET', '/v1/agent/keyring/list', {
      headers: tokenHeader(WORLD_TOKEN),
    });
    const worldWrite = await setCleanup(follower, false, WORLD_TOKEN);

    const denied = { status: 403, text: 'Permission denied' };
    expect([anonymous, agentWrite]).toEqual([denied, denied]);
    expect(world.status).toBe(200);
    expect(worldKeyring.status).toBe(200);
    expect(worldWrite).toEqual(denied);
    expect((await configuration(follower)).CleanupDeadServers).toBe(true);
  });

  it('refuses other methods and an undecodable configuration as Nomad does', async () => {
    const post = await callAgent(servers[0]!, 'POST', '/v1/operator/autopilot/health', {
      headers: tokenHeader(WORLD_TOKEN),
    });
    const remove = await callAgent(servers[0]!, 'DELETE', '/v1/operator/autopilot/configuration', {
      headers: tokenHeader(OPERATOR_WRITE),
    });
    const undecodable = await callAgent(servers[0]!, 'PUT', '/v1/operator/autopilot/configuration', {
      body: { CleanupDeadServers: 'no' },
      headers: tokenHeader(OPERATOR_WRITE),
    });

    expect(post).toEqual({ status: 404, text: 'Invalid method' });
    expect(remove).toEqual({ status: 404, text: 'Invalid method' });
    expect(undecodable.status).toBe(400);
    expect(undecodable.text).toMatch(/^Error parsing autopilot config: /);
  });

  it('CleanupDeadServers set through a follower lands in the leader’s Raft state, which every follower copies', async () => {
    const leader = await leaderNode();
    const follower = servers.find((server) => server !== leader)!;
    const before = await configuration(leader);

    const put = await setCleanup(follower, false);
    const copies = await eventually(
      () => Promise.all(servers.map((server) => configuration(server, '?stale'))),
      (all) => all.every((entry) => !entry.CleanupDeadServers),
    );

    expect(before.CleanupDeadServers).toBe(true);
    expect(put).toEqual({ status: 200, text: 'true\n' });
    for (const copy of copies) {
      expect(copy.CleanupDeadServers).toBe(false);
      expect(copy.ModifyIndex).toBeGreaterThan(before.ModifyIndex);
    }
  });

  it('a follower down for a few seconds, less than serf takes to mark it failed, never shows unhealthy: FailureTolerance stays 1, StableSince does not move', async () => {
    const leader = await leaderNode();
    const follower = servers.find((server) => server !== leader)!;
    const before = entryOf(await eventually(() => health(leader), caughtUp), follower)!;
    const samples: Health[] = [];

    await fleet.supervisor.command(follower.instanceId, 'stop');
    const downUntil = Date.now() + CONTACT_WINDOW_MS * 3;
    while (Date.now() < downUntil) {
      samples.push(await health(leader));
      await sleep(100);
    }
    await fleet.supervisor.command(follower.instanceId, 'start');
    await eventually(
      () => healthCall(follower),
      (answer) => answer.status === 200,
    );
    await sleep(CONTACT_WINDOW_MS);
    samples.push(await health(leader));

    for (const sample of samples) {
      expect(sample.status).toBe(200);
      expect(sample.reply.FailureTolerance).toBe(1);
      expect(entryOf(sample, follower)).toMatchObject({ Healthy: true, StableSince: before.StableSince });
    }
  });

  it('a follower the leader cannot reach over TLS fails its own health call, while the leader still counts it healthy', async () => {
    const leader = await leaderNode();
    const follower = servers.find((server) => server !== leader)!;

    await issue(follower, otherCa, { caFile: otherCa.bundle });
    await reload(follower);
    // Until it gives up on its leader the call fails with the TLS error instead.
    const own = await eventually(
      () => healthCall(follower),
      (answer) => answer.text === 'No cluster leader',
    );
    const leaderView = await health(leader);
    await issue(follower, ca);
    await reload(follower);
    await eventually(
      () => healthCall(follower),
      (answer) => answer.status === 200,
    );

    expect(own).toEqual({ status: 500, text: 'No cluster leader' });
    expect(leaderView.status).toBe(200);
    expect(leaderView.reply.FailureTolerance).toBe(1);
    expect(entryOf(leaderView, follower)).toMatchObject({ Healthy: true, SerfStatus: 'alive' });
  });

  describe('a stopped server', () => {
    let leader: NodeSandbox;
    let stopped: NodeSandbox;

    it(
      'with CleanupDeadServers off: healthy until serf marks it failed, then 429 with FailureTolerance 0, and never pruned',
      async () => {
        leader = await leaderNode();
        stopped = servers.find((server) => server !== leader)!;
        await setCleanup(leader, false);
        await eventually(() => health(leader), caughtUp);

        await fleet.supervisor.command(stopped.instanceId, 'stop');
        await sleep(CONTACT_WINDOW_MS * 2);
        const early = await health(leader);
        const failed = await eventually(
          () => health(leader),
          (current) => current.status === 429,
          SERF_FAILURE_DETECTION_MS,
        );
        await sleep(BEHAVIOUR.autopilotIntervalMs * 5);
        const later = await health(leader);

        expect(early.status).toBe(200);
        expect(entryOf(early, stopped)).toMatchObject({ Healthy: true, SerfStatus: 'alive' });
        expect(failed.status).toBe(429);
        expect(failed.reply).toMatchObject({ Healthy: false, FailureTolerance: 0 });
        expect(entryOf(failed, stopped)).toMatchObject({ Healthy: false, SerfStatus: 'failed', Voter: true });
        expect(later.status).toBe(429);
        expect(entryOf(later, stopped)).toMatchObject({ Voter: true, Healthy: false });
        expect(await leader.log()).not.toContain('autopilot: removing dead server');
      },
      SERF_FAILURE_DETECTION_MS + 15_000,
    );

    it('with CleanupDeadServers on again it is pruned; started again it is a non-voter until stable, then FailureTolerance is 1 again', async () => {
      const seenVoter: boolean[] = [];
      const record = async () => {
        const current = await health(leader);
        const entry = entryOf(current, stopped);
        if (entry !== undefined) seenVoter.push(entry.Voter);
        return current;
      };

      await setCleanup(leader, true);
      const pruned = await eventually(
        () => health(leader),
        (current) => current.reply.Servers.length === 2,
      );
      await fleet.supervisor.command(stopped.instanceId, 'start');
      const back = await eventually(record, settled, 20_000);

      expect(pruned.status).toBe(200);
      expect(pruned.reply).toMatchObject({ Healthy: true, FailureTolerance: 0 });
      expect(pruned.reply.Voters).toHaveLength(2);
      expect(entryOf(pruned, stopped)).toBeUndefined();
      expect(seenVoter[0]).toBe(false);
      expect(back.reply.Voters).toHaveLength(3);
      expect(entryOf(back, stopped)).toMatchObject({ Voter: true, Healthy: true, SerfStatus: 'alive' });
    });
  });
});
