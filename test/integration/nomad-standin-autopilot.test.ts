import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNodeFleet, type NodeFleet } from '../../local/node/fleet';
import type { NodeSandbox } from '../../local/node/sandbox';
import { opensslCa } from '../helpers/openssl-ca';
import { api, eventually, issue, type TestCa } from '../helpers/standin-nodes';

// Autopilot's dead-server cleanup on the leader's stand-in (real-systems §4): a voter is removed once
// its serf member is `failed`, and comes back as a non-voter that is promoted after
// server_stabilization_time. "Failed" is serf's own verdict, read from the leader's serf agent, so
// this file waits for serf's failure detection (tens of seconds with Nomad's WAN gossip timings);
// Raft and autopilot run with small timings.

const BEHAVIOUR = {
  raftProbeIntervalMs: 150,
  rpcHoldTimeoutMs: 300,
  autopilotIntervalMs: 200,
  serverStabilizationTimeMs: 1_000,
};
const SERF_FAILURE_DETECTION_MS = 90_000;

interface RaftServer {
  Address: string;
  Node: string;
  Voter: boolean;
  Leader: boolean;
}

let baseDir: string;
let fleet: NodeFleet;
let ca: TestCa;
let servers: readonly NodeSandbox[];

const rpcAddress = (node: NodeSandbox) => `127.0.0.1:${node.gossip!.rpcPort}`;

async function leaderOf(node: NodeSandbox): Promise<string> {
  const answer = await api(node, '/v1/status/leader');
  return answer.status === 200 ? (JSON.parse(answer.text) as string) : answer.text;
}

async function configuration(node: NodeSandbox): Promise<RaftServer[]> {
  const answer = await api(node, '/v1/operator/raft/configuration');
  return (JSON.parse(answer.text) as { Servers: RaftServer[] }).Servers;
}

beforeAll(async () => {
  baseDir = await mkdtemp(join(tmpdir(), 'nomad-standin-autopilot-'));
  ca = await opensslCa();
  fleet = await createNodeFleet({
    baseDir,
    servers: 3,
    clients: 0,
    clusterName: 'autopilot',
    restartDelayMs: 200,
    agent: BEHAVIOUR,
  });
  servers = fleet.nodes();
  await Promise.all(servers.map((server) => issue(server, ca)));
  for (const server of servers) await fleet.supervisor.command(server.instanceId, 'start');
  await eventually(
    () => Promise.all(servers.map(leaderOf)),
    (leaders) => leaders.every((leader) => leader === leaders[0] && leader.startsWith('127.0.0.1:')),
  );
}, 60_000);

afterAll(async () => {
  await fleet?.stop();
  await ca?.dispose();
  await rm(baseDir, { recursive: true, force: true });
});

describe('autopilot dead-server cleanup', () => {
  it('removes a stopped voter once serf marks it failed, and takes it back as a non-voter promoted when stable', async () => {
    const leaderAddress = await leaderOf(servers[0]!);
    const leader = servers.find((server) => rpcAddress(server) === leaderAddress)!;
    const follower = servers.find((server) => server !== leader)!;

    await fleet.supervisor.command(follower.instanceId, 'stop');
    const pruned = await eventually(
      () => configuration(leader),
      (list) => !list.some((entry) => entry.Address === rpcAddress(follower)),
      SERF_FAILURE_DETECTION_MS,
    );
    const peersWhilePruned = JSON.parse((await api(leader, '/v1/status/peers')).text) as string[];
    await fleet.supervisor.command(follower.instanceId, 'start');
    const returned = await eventually(
      () => configuration(leader),
      (list) => list.some((entry) => entry.Address === rpcAddress(follower)),
    );
    const promoted = await eventually(
      () => configuration(leader),
      (list) => list.length === 3 && list.every((entry) => entry.Voter),
    );

    expect(pruned.map((entry) => entry.Address)).not.toContain(rpcAddress(follower));
    expect(peersWhilePruned).toHaveLength(2);
    expect(await leader.log()).toContain(`autopilot: removing dead server ${follower.computerName}`);
    expect(returned.find((entry) => entry.Address === rpcAddress(follower))?.Voter).toBe(false);
    expect(promoted.every((entry) => entry.Voter)).toBe(true);
    expect(await leaderOf(follower)).toBe(leaderAddress);
  }, 120_000);
});
