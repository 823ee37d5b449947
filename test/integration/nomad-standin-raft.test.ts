import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RAFT_CONTACT_PROBES } from '../../local/node/agent-options';
import { createNodeFleet, type NodeFleet } from '../../local/node/fleet';
import type { NodeSandbox } from '../../local/node/sandbox';
import { opensslCa } from '../helpers/openssl-ca';
import { api, eventually, issue, reloadAndWait, sleep, type TestCa } from '../helpers/standin-nodes';

// Three servers and a client whose stand-ins run the modelled Raft over mutual-TLS RPC. The timings
// are Nomad's scaled down: probes every 150 ms (a link is lost after 600 ms) and a 300 ms RPC hold.
// Autopilot, which waits for serf's failure detection, has its own file.

const BEHAVIOUR = { raftProbeIntervalMs: 150, rpcHoldTimeoutMs: 300 };
const CONTACT_WINDOW_MS = BEHAVIOUR.raftProbeIntervalMs * RAFT_CONTACT_PROBES;

let baseDir: string;
let fleet: NodeFleet;
let ca: TestCa;
let otherCa: TestCa;
let servers: NodeSandbox[];
let client: NodeSandbox;

const command = (node: NodeSandbox, action: string) => fleet.supervisor.command(node.instanceId, action);
const rpcAddress = (node: NodeSandbox) => `127.0.0.1:${node.gossip!.rpcPort}`;
const serverAt = (address: string) => servers.find((server) => rpcAddress(server) === address)!;

/** The leader's address as the node answers /v1/status/leader, or the error text. */
async function leaderOf(node: NodeSandbox): Promise<string> {
  const answer = await api(node, '/v1/status/leader');
  return answer.status === 200 ? (JSON.parse(answer.text) as string) : answer.text;
}

const isAddress = (value: string) => /^127\.0\.0\.1:\d+$/.test(value);

/** Every term this server won an election in, from its log. */
async function termsWon(node: NodeSandbox): Promise<number[]> {
  return [...(await node.log()).matchAll(/election won: term=(\d+)/g)].map((match) => Number(match[1]));
}

async function highestTerm(): Promise<number> {
  return Math.max(0, ...(await Promise.all(servers.map(termsWon))).flat());
}

const reload = (node: NodeSandbox) => reloadAndWait(fleet, node);

beforeAll(async () => {
  baseDir = await mkdtemp(join(tmpdir(), 'nomad-standin-raft-'));
  [ca, otherCa] = await Promise.all([opensslCa(), opensslCa()]);
  fleet = await createNodeFleet({
    baseDir,
    servers: 3,
    clients: 1,
    clusterName: 'raft',
    restartDelayMs: 200,
    agent: BEHAVIOUR,
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

describe('modelled Raft among the server stand-ins', () => {
  it('a lone server of three has no leader: leader and health answer "No cluster leader" after the hold', async () => {
    await command(servers[0]!, 'start');

    const began = Date.now();
    const leader = await api(servers[0]!, '/v1/status/leader');
    const heldMs = Date.now() - began;
    const health = await api(servers[0]!, '/v1/agent/health');
    const peers = await api(servers[0]!, '/v1/status/peers');

    expect(leader).toMatchObject({ status: 500, text: 'No cluster leader' });
    expect(heldMs).toBeGreaterThanOrEqual(BEHAVIOUR.rpcHoldTimeoutMs);
    expect(health.status).toBe(500);
    expect(JSON.parse(health.text)).toEqual({ server: { ok: false, message: 'No cluster leader' } });
    expect(JSON.parse(peers.text)).toEqual([]);
  });

  it('two of three fresh servers do not bootstrap: Nomad waits for bootstrap_expect servers', async () => {
    await command(servers[1]!, 'start');
    await eventually(
      () => api(servers[0]!, '/v1/agent/members'),
      (answer) => (JSON.parse(answer.text) as { Members: unknown[] }).Members.length === 2,
    );
    await sleep(CONTACT_WINDOW_MS * 2);

    const leaders = await Promise.all(servers.slice(0, 2).map(leaderOf));
    const peers = await api(servers[1]!, '/v1/status/peers');

    expect(leaders).toEqual(['No cluster leader', 'No cluster leader']);
    expect(JSON.parse(peers.text)).toEqual([]);
  });

  it('the third server completes bootstrap: one leader for all, server health 200, every server a peer', async () => {
    await command(servers[2]!, 'start');

    const leader = await eventually(() => leaderOf(servers[0]!), isAddress);
    const leaders = await eventually(
      () => Promise.all(servers.map(leaderOf)),
      (all) => all.every((value) => value === leader),
    );
    const health = await Promise.all(servers.map((server) => api(server, '/v1/agent/health')));
    const peers = await api(servers[2]!, '/v1/status/peers');

    expect(leaders).toEqual([leader, leader, leader]);
    for (const answer of health) {
      expect(answer.status).toBe(200);
      expect(JSON.parse(answer.text)).toEqual({ server: { ok: true, message: 'ok' } });
    }
    expect(JSON.parse(peers.text)).toEqual(servers.map(rpcAddress));
  });

  it('a restarted follower keeps its Raft state and follows the sitting leader instead of taking over', async () => {
    const leader = await leaderOf(servers[0]!);
    const follower = servers.find((server) => rpcAddress(server) !== leader)!;
    const termBefore = await highestTerm();

    await command(follower, 'restart');
    await eventually(() => leaderOf(follower), isAddress);
    await sleep(CONTACT_WINDOW_MS * 2);

    expect(await Promise.all(servers.map(leaderOf))).toEqual([leader, leader, leader]);
    expect(await highestTerm()).toBe(termBefore);
  });

  it('a leader restarted within the contact window leads no more: the servers elect again in a higher term', async () => {
    const leader = serverAt(await leaderOf(servers[0]!));
    const termBefore = await highestTerm();

    await command(leader, 'restart');
    const leaders = await eventually(
      () => Promise.all(servers.map(leaderOf)),
      (all) => all.every((value) => isAddress(value) && value === all[0]),
    );

    expect(leaders.every(isAddress)).toBe(true);
    expect(new Set(leaders).size).toBe(1);
    expect(await highestTerm()).toBeGreaterThan(termBefore);
  });

  it('a client is healthy as soon as it knows servers, and asks the leader over its own RPC', async () => {
    await command(client, 'start');

    const health = await api(client, '/v1/agent/health');
    const leader = await leaderOf(client);
    const peers = await api(client, '/v1/status/peers');

    expect(health.status).toBe(200);
    expect(JSON.parse(health.text)).toEqual({ client: { ok: true, message: 'ok' } });
    expect(leader).toBe(await leaderOf(servers[0]!));
    expect(JSON.parse(peers.text)).toEqual(servers.map(rpcAddress));
  });

  it('a client whose certificate the servers do not trust stays healthy but finds no leader', async () => {
    // The client trusts both CAs, so its own HTTPS works; the servers trust only theirs.
    await issue(client, otherCa, { caFile: `${ca.bundle}${otherCa.bundle}` });
    await reload(client);

    const health = await api(client, '/v1/agent/health');
    const leader = await api(client, '/v1/status/leader');

    expect(health.status).toBe(200);
    expect(leader).toMatchObject({ status: 500, text: 'No cluster leader' });
  });

  it('a client certificate named for another region is refused on RPC', async () => {
    await issue(client, ca, { names: 'DNS:client.europe.nomad,DNS:localhost,IP:127.0.0.1' });
    await reload(client);

    const leader = await api(client, '/v1/status/leader');
    await issue(client, ca);
    await reload(client);

    expect(leader).toMatchObject({ status: 500, text: 'No cluster leader' });
    expect(isAddress(await leaderOf(client))).toBe(true);
  });

  it('a leader whose certificate its peers do not trust loses leadership; the others elect a new one with a higher term', async () => {
    const oldLeader = serverAt(await leaderOf(servers[0]!));
    const others = servers.filter((server) => server !== oldLeader);
    const termBefore = await highestTerm();

    await issue(oldLeader, otherCa, { caFile: otherCa.bundle });
    await reload(oldLeader);
    const newLeader = await eventually(
      () => leaderOf(others[0]!),
      (value) => isAddress(value) && value !== rpcAddress(oldLeader),
    );
    const cutOff = await eventually(
      () => leaderOf(oldLeader),
      (value) => value === 'No cluster leader',
    );
    const cutOffHealth = await api(oldLeader, '/v1/agent/health');

    expect(cutOff).toBe('No cluster leader');
    expect(JSON.parse(cutOffHealth.text)).toEqual({ server: { ok: false, message: 'No cluster leader' } });
    expect(await oldLeader.log()).toContain('cluster leadership lost');
    expect(await leaderOf(others[1]!)).toBe(newLeader);
    expect(await highestTerm()).toBeGreaterThan(termBefore);
    // Its serf member is still alive, so autopilot leaves it in the configuration.
    expect(JSON.parse((await api(others[0]!, '/v1/status/peers')).text)).toContain(rpcAddress(oldLeader));
  });

  it('the distrusted server, trusted again, follows the new leader without disturbing it', async () => {
    const answers = await Promise.all(servers.map(leaderOf));
    const leader = answers.find(isAddress);
    const distrusted = servers[answers.indexOf('No cluster leader')]!;
    const termBefore = await highestTerm();

    await issue(distrusted, ca);
    await reload(distrusted);
    const rejoined = await eventually(
      () => Promise.all(servers.map(leaderOf)),
      (all) => all.every(isAddress),
    );

    expect(rejoined).toEqual([leader, leader, leader]);
    expect(await highestTerm()).toBe(termBefore);
  });

  it('a follower whose certificate the leader stops trusting fails health at once: health is an RPC to the leader', async () => {
    const leader = await leaderOf(servers[0]!);
    const follower = servers.find((server) => rpcAddress(server) !== leader)!;

    await issue(follower, otherCa, { caFile: otherCa.bundle });
    await reload(follower);
    // Well inside the contact window: the follower has not yet noticed that its leader is gone.
    const health = await api(follower, '/v1/agent/health');
    await issue(follower, ca);
    await reload(follower);
    const rejoined = await eventually(() => leaderOf(follower), isAddress);

    expect(health.status).toBe(500);
    expect(JSON.parse(health.text)).toMatchObject({ server: { ok: false } });
    expect(rejoined).toBe(leader);
  });

  it('when the leader stops, the remaining majority elects a new leader with a higher term', async () => {
    const oldLeader = serverAt(await leaderOf(servers[0]!));
    const others = servers.filter((server) => server !== oldLeader);
    const termBefore = await highestTerm();

    await command(oldLeader, 'stop');
    const newLeader = await eventually(
      () => leaderOf(others[0]!),
      (value) => isAddress(value) && value !== rpcAddress(oldLeader),
    );

    expect(others.map(rpcAddress)).toContain(newLeader);
    expect(await leaderOf(others[1]!)).toBe(newLeader);
    expect(await highestTerm()).toBeGreaterThan(termBefore);
  });

  it('with two of three servers stopped the last one has no quorum and no leader', async () => {
    const running = servers.filter((server) => server.unitState().state === 'active');
    const [stopping, last] = running as [NodeSandbox, NodeSandbox];

    await command(stopping, 'stop');
    const leader = await eventually(
      () => leaderOf(last),
      (value) => value === 'No cluster leader',
    );

    expect(running).toHaveLength(2);
    expect(leader).toBe('No cluster leader');
    expect((await api(last, '/v1/agent/health')).status).toBe(500);
  });
});
