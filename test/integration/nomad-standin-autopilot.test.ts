import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNodeFleet, type NodeFleet } from '../../local/node/fleet';
import type { NodeSandbox } from '../../local/node/sandbox';
import { opensslCa } from '../helpers/openssl-ca';
import { api, eventually, issue, sleep, type TestCa } from '../helpers/standin-nodes';

// Autopilot's dead-server cleanup on the leader's stand-in (raft-autopilot reconcile.go, nomad/autopilot.go): a voter is removed once
// its serf member is `failed` (at most (voters-1)/2 of them), and comes back as a non-voter that is
// promoted after server_stabilization_time. A server cut off from gossip by a foreign key keeps
// working RPC but, as in Nomad, finds no alive leader to forward to. "Failed" is serf's own verdict, read from the leader's serf agent, so
// this file waits for serf's failure detection (tens of seconds with Nomad's WAN gossip timings);
// Raft and autopilot run with small timings.

const BEHAVIOUR = {
  raftProbeIntervalMs: 150,
  rpcHoldTimeoutMs: 300,
  autopilotIntervalMs: 200,
  serverStabilizationTimeMs: 1_000,
};
const SERF_FAILURE_DETECTION_MS = 90_000;
/** More than the spread of serf's failure detection, so two servers are marked failed in order. */
const FAILURE_ORDER_GAP_MS = 10_000;

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

/** The serf keyring file a server's agent loads when it starts. */
async function writeKeyring(node: NodeSandbox, key: string): Promise<void> {
  await writeFile(join(node.root, 'opt/nomad/data/server/serf.keyring'), JSON.stringify([key]), {
    mode: 0o600,
  });
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
  let leader: NodeSandbox;
  let stopped: NodeSandbox;
  let cutOff: NodeSandbox;

  it('removes at most (voters-1)/2 of the voters serf marks failed: a stopped server goes, one cut off from gossip later stays', async () => {
    const leaderAddress = await leaderOf(servers[0]!);
    leader = servers.find((server) => rpcAddress(server) === leaderAddress)!;
    [stopped, cutOff] = servers.filter((server) => server !== leader) as [NodeSandbox, NodeSandbox];

    await fleet.supervisor.command(stopped.instanceId, 'stop');
    // The stopped server must be failed first: pruning the cut-off one (which still answers RPC)
    // would leave the leader with a dead voter out of two, and no quorum, as in real Raft.
    await sleep(FAILURE_ORDER_GAP_MS);
    await writeKeyring(cutOff, randomBytes(32).toString('base64'));
    await fleet.supervisor.command(cutOff.instanceId, 'restart');
    const log = await eventually(
      () => leader.log(),
      (text) => text.includes(`autopilot: will not remove dead server ${cutOff.computerName}`),
      SERF_FAILURE_DETECTION_MS,
    );
    const remaining = (await configuration(leader)).map((entry) => entry.Node);

    expect(log).toContain(`autopilot: removing dead server ${stopped.computerName}`);
    expect(remaining.sort()).toEqual(
      [`${leader.computerName}.global`, `${cutOff.computerName}.global`].sort(),
    );
    expect(await leaderOf(leader)).toBe(leaderAddress);
  }, 120_000);

  it('the server cut off from gossip answers "No cluster leader" although its RPC still reaches the leader', async () => {
    const leaderAddress = rpcAddress(leader);

    const forwarded = await leaderOf(cutOff);
    const stale = await api(cutOff, '/v1/status/leader?stale=true');
    const health = await api(cutOff, '/v1/agent/health');

    expect(forwarded).toBe('No cluster leader');
    expect(JSON.parse(stale.text)).toBe(leaderAddress);
    expect(JSON.parse(health.text)).toEqual({ server: { ok: false, message: 'No cluster leader' } });
  });

  it('servers that come back are non-voters until stable for server_stabilization_time, then voters', async () => {
    const seen = new Map<string, boolean[]>();
    const record = (list: RaftServer[]) => {
      for (const entry of list) seen.set(entry.Node, [...(seen.get(entry.Node) ?? []), entry.Voter]);
      return list;
    };

    await writeKeyring(cutOff, fleet.initialGossipKey!);
    await fleet.supervisor.command(cutOff.instanceId, 'restart');
    await fleet.supervisor.command(stopped.instanceId, 'start');
    const final = await eventually(
      async () => record(await configuration(leader)),
      (list) => list.length === 3 && list.every((entry) => entry.Voter),
      30_000,
    );
    const returnedAsNonVoter = [...seen.values()].some((voter) => voter.includes(false));

    expect(final.every((entry) => entry.Voter)).toBe(true);
    expect(returnedAsNonVoter).toBe(true);
    expect(await Promise.all(servers.map(leaderOf))).toEqual(servers.map(() => rpcAddress(leader)));
  }, 60_000);
});
