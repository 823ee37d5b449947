import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNodeFleet, type NodeFleet } from '../../local/node/fleet';
import type { NodeSandbox } from '../../local/node/sandbox';
import { answerJson, callAgent, nomadShell } from '../helpers/agent-calls';
import { opensslCa } from '../helpers/openssl-ca';
import { eventually, issue } from '../helpers/standin-nodes';

// The gossip side of the Nomad stand-in where it must match real Nomad and serf:
// `encrypt` seeding a missing keyring, ACL agent:write on every keyring call, serf rewriting the
// keyring file in place, and memberlist's WAN timings with suspect servers still counted. Three
// servers with real serf agents and one client, ACLs enabled.

const MANAGEMENT = randomUUID();
const AGENT_WRITE = randomUUID();
const AGENT_READ = randomUUID();
const KEYRING_FILE = 'opt/nomad/data/server/serf.keyring';

let baseDir: string;
let fleet: NodeFleet;
let servers: NodeSandbox[];
let client: NodeSandbox;

const newKey = () => randomBytes(32).toString('base64');

/** A call to a node's agent with the node's CLI certificate; keyring calls carry the management token. */
const api = (
  node: NodeSandbox,
  method: string,
  path: string,
  {
    body,
    headers = { 'X-Nomad-Token': MANAGEMENT },
  }: { body?: unknown; headers?: Record<string, string> } = {},
) => callAgent(node, method, path, { body, headers });

const json = answerJson;

/** A server's serf.keyring text. serf truncates and rewrites it in place: a racing read can see it empty. */
async function keyringText(node: NodeSandbox): Promise<string> {
  const read = () => readFile(join(node.root, KEYRING_FILE), 'utf8');
  return eventually(read, (text) => text !== '', 2_000);
}

const keyringFile = async (node: NodeSandbox) => JSON.parse(await keyringText(node)) as string[];

const memberName = (server: NodeSandbox) => `${server.computerName}.global`;

/** The serf status a server's gossip shows for `member`, as /v1/agent/members reports it. */
async function statusOf(observer: NodeSandbox, member: NodeSandbox): Promise<string | undefined> {
  const members = json(await api(observer, 'GET', '/v1/agent/members')).Members as {
    Name: string;
    Status: string;
  }[];
  return members.find((entry) => entry.Name === memberName(member))?.Status;
}

const shell = (node: NodeSandbox, script: string) => nomadShell(node, script);

beforeAll(async () => {
  baseDir = await mkdtemp(join(tmpdir(), 'nomad-gossip-'));
  fleet = await createNodeFleet({
    baseDir,
    servers: 3,
    clients: 1,
    clusterName: 'gossip',
    restartDelayMs: 200,
    aclTokens: { [MANAGEMENT]: ['management'], [AGENT_WRITE]: ['agent-write'], [AGENT_READ]: ['agent-read'] },
  });
  servers = fleet.nodes().filter((node) => node.role === 'server');
  client = fleet.nodes().find((node) => node.role === 'client')!;
  const ca = await opensslCa();
  await Promise.all(fleet.nodes().map((node) => issue(node, ca)));
  await ca.dispose();
});

afterAll(async () => {
  await fleet?.stop();
  await rm(baseDir, { recursive: true, force: true });
});

describe('the Nomad stand-in’s gossip, as real Nomad and serf behave', () => {
  it('seeds serf.keyring from encrypt on the first start: compact JSON, 0600 in a 0700 directory', async () => {
    const key = fleet.initialGossipKey!;
    const existedBefore = servers.map((server) => existsSync(join(server.root, KEYRING_FILE)));

    const started = await Promise.all(fleet.nodes().map((node) => shell(node, 'systemctl start nomad')));
    const listed = await eventually(
      () => api(servers[0]!, 'GET', '/v1/agent/keyring/list'),
      (answer) => answer.status === 200 && json(answer).NumNodes === 3,
      20_000,
    );

    expect(existedBefore).toEqual([false, false, false]);
    expect(started.map((result) => result.exitCode)).toEqual([0, 0, 0, 0]);
    for (const server of servers) {
      const file = join(server.root, KEYRING_FILE);
      expect(await keyringText(server)).toBe(`["${key}"]`);
      expect((await stat(file)).mode & 0o777).toBe(0o600);
      expect((await stat(dirname(file))).mode & 0o777).toBe(0o700);
      const log = await server.log();
      expect(log).not.toContain('keyring exists');
      expect(log).not.toContain(key);
    }
    expect(json(listed)).toEqual({ Messages: {}, Keys: { [key]: 3 }, NumNodes: 3 });
  });

  it('asks for agent:write on every keyring call, list included, after the client’s 501 and before the op', async () => {
    const before = await keyringFile(servers[0]!);
    const list = (headers: Record<string, string>) =>
      api(servers[0]!, 'GET', '/v1/agent/keyring/list', { headers });

    const anonymous = await list({});
    const agentRead = await list({ 'X-Nomad-Token': AGENT_READ });
    const unknown = await list({ 'X-Nomad-Token': randomUUID() });
    const agentWrite = await list({ 'X-Nomad-Token': AGENT_WRITE });
    const bearer = await list({ Authorization: `Bearer ${MANAGEMENT}` });
    const anonymousInstall = await api(servers[0]!, 'PUT', '/v1/agent/keyring/install', {
      body: { Key: newKey() },
      headers: {},
    });
    const anonymousUnknownOp = await api(servers[0]!, 'PUT', '/v1/agent/keyring/rotate', { headers: {} });
    const onClient = await api(client, 'GET', '/v1/agent/keyring/list', { headers: {} });
    const cliWithout = await shell(servers[1]!, 'nomad operator gossip keyring list');
    const cliWith = await shell(servers[1]!, `NOMAD_TOKEN=${AGENT_WRITE} nomad operator gossip keyring list`);

    const denied = { status: 403, text: 'Permission denied' };
    expect([anonymous, agentRead, unknown]).toEqual([denied, denied, denied]);
    expect([agentWrite.status, bearer.status]).toEqual([200, 200]);
    expect(json(agentWrite).Keys).toEqual(Object.fromEntries(before.map((key) => [key, 3])));
    expect(anonymousInstall).toEqual(denied);
    expect(await keyringFile(servers[0]!)).toEqual(before);
    expect(anonymousUnknownOp).toEqual(denied);
    expect(onClient).toEqual({ status: 501, text: 'Invalid method' });
    expect(cliWithout).toMatchObject({
      exitCode: 1,
      stderr: 'error: Unexpected response code: 403 (Permission denied)\n',
    });
    expect(cliWith.exitCode).toBe(0);
    expect(cliWith.stdout.trim().split('\n').slice(2)).toEqual(before);
  });

  it('lets serf rewrite serf.keyring in place on a change (same inode, indented JSON): not atomically', async () => {
    const old = fleet.initialGossipKey!;
    const next = newKey();
    const inodes = await Promise.all(
      servers.map(async (server) => (await stat(join(server.root, KEYRING_FILE))).ino),
    );

    const installed = await api(servers[0]!, 'PUT', '/v1/agent/keyring/install', { body: { Key: next } });

    expect(installed.status).toBe(200);
    for (const [index, server] of servers.entries()) {
      const file = join(server.root, KEYRING_FILE);
      expect((await stat(file)).ino).toBe(inodes[index]);
      expect((await stat(file)).mode & 0o777).toBe(0o600);
      expect(await keyringText(server)).toBe(JSON.stringify([old, next], null, 2));
    }
  });

  it('still counts a stopped server memberlist suspects: an op waits the 8 s WAN query timeout, then 2/3 nodes reported success', async () => {
    const stopped = servers[2]!;
    const observer = servers[0]!;
    const logBefore = (await observer.log()).length;
    const logSince = async () => (await observer.log()).slice(logBefore);
    const suspectLine = `memberlist: Suspect ${memberName(stopped)} has failed, no acks received`;

    const stop = await shell(stopped, 'systemctl stop nomad');
    const suspected = await eventually(logSince, (log) => log.includes(suspectLine), 20_000);
    const startedAt = Date.now();
    const listed = await api(observer, 'GET', '/v1/agent/keyring/list');
    const waitedMs = Date.now() - startedAt;
    const statusWhileSuspect = await statusOf(observer, stopped);
    const logWhileSuspect = await logSince();
    const restart = await shell(stopped, 'systemctl start nomad');
    const rejoined = await eventually(
      () => api(observer, 'GET', '/v1/agent/keyring/list'),
      (answer) => answer.status === 200 && json(answer).NumNodes === 3,
      20_000,
    );

    expect(stop.exitCode).toBe(0);
    expect(suspected).toContain(suspectLine);
    expect(listed).toEqual({ status: 500, text: '2/3 nodes reported success' });
    // GossipInterval 500 ms × QueryTimeoutMult 16 (up to 9 members); LAN timings would give 3.2 s.
    expect(waitedMs).toBeGreaterThanOrEqual(7_500);
    // Suspicion lasts 6 × the 5 s probe interval; serf has no suspect status and still says alive.
    expect(statusWhileSuspect).toBe('alive');
    expect(logWhileSuspect).not.toContain(`Marking ${memberName(stopped)} as failed`);
    expect(restart.exitCode).toBe(0);
    expect(json(rejoined).NumNodes).toBe(3);
  });

  it('loads the keyring a restarted server persisted over its encrypt, with Nomad’s warning', async () => {
    const old = fleet.initialGossipKey!;
    const [next] = (await keyringFile(servers[0]!)).filter((key) => key !== old);
    await api(servers[0]!, 'PUT', '/v1/agent/keyring/use', { body: { Key: next } });
    await api(servers[0]!, 'PUT', '/v1/agent/keyring/remove', { body: { Key: old } });
    const restarted = servers[1]!;

    const result = await shell(restarted, 'systemctl restart nomad');
    const listed = await eventually(
      () => api(servers[0]!, 'GET', '/v1/agent/keyring/list'),
      (answer) => answer.status === 200 && json(answer).NumNodes === 3,
      20_000,
    );

    expect(result.exitCode).toBe(0);
    expect(await restarted.log()).toContain('WARNING: keyring exists but -encrypt given, using keyring');
    expect(await keyringFile(restarted)).toEqual([next]);
    expect(json(listed)).toEqual({ Messages: {}, Keys: { [next!]: 3 }, NumNodes: 3 });
    for (const server of servers) {
      const log = await server.log();
      expect(log).not.toContain(old);
      expect(log).not.toContain(next);
    }
  });

  it('ignores after a restart the keyring queries it answered before, from serf’s snapshot as Nomad keeps it', async () => {
    const restarted = servers[0]!;
    await api(servers[2]!, 'PUT', '/v1/agent/keyring/install', { body: { Key: newKey() } });
    const logBefore = (await restarted.log()).length;
    const logSince = async () => (await restarted.log()).slice(logBefore);

    const result = await shell(restarted, 'systemctl restart nomad');
    await eventually(logSince, (log) => log.includes('Join completed'), 20_000);
    // The install is still being gossiped (4 retransmits, 500 ms apart): time to reach the new process.
    await new Promise((resolve) => setTimeout(resolve, 2_500));

    expect(result.exitCode).toBe(0);
    expect(existsSync(join(restarted.root, 'opt/nomad/data/server/serf/snapshot'))).toBe(true);
    expect(await logSince()).not.toContain('Received install-key query');
  });

  it('gossips in clear when the server has neither encrypt nor a keyring file', async () => {
    const server = servers[1]!;
    await shell(server, 'systemctl stop nomad');
    const configFile = join(server.root, 'etc/nomad-standin.json');
    const config = JSON.parse(await readFile(configFile, 'utf8')) as { gossip: { encrypt?: string } };
    delete config.gossip.encrypt;
    await writeFile(configFile, JSON.stringify(config));
    await rm(join(server.root, KEYRING_FILE));

    const started = await shell(server, 'systemctl start nomad');
    const listed = await api(server, 'GET', '/v1/agent/keyring/list');

    expect(started.exitCode).toBe(0);
    expect(existsSync(join(server.root, KEYRING_FILE))).toBe(false);
    expect(listed).toEqual({ status: 500, text: '1/1 nodes reported failure' });
  });
});
