import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateSecretCommand, PutSecretValueCommand } from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SecretsManagerEmulator, startSecretsManagerEmulator } from '../../local/aws/secrets-manager';
import { createNodeFleet, type NodeFleet } from '../../local/node/fleet';
import type { NodeSandbox } from '../../local/node/sandbox';
import { type AgentAnswer, answerJson, callAgent, nomadShell } from '../helpers/agent-calls';
import { opensslCa } from '../helpers/openssl-ca';
import { eventually, issue } from '../helpers/standin-nodes';

// Three servers with real serf agents and one client. serf runs with memberlist's WAN timings, as
// Nomad's does (GossipAgent in local/node/gossip.ts): a keyring query waits 8 s for a silent server.

/** Nomad's sample response for GET /v1/agent/members (website/content/api-docs/agent.mdx). */
const MEMBERS_SAMPLE = JSON.parse(
  readFileSync(new URL('../fixtures/nomad/agent-members.json', import.meta.url), 'utf8'),
) as { Members: Record<string, unknown>[] } & Record<string, unknown>;

let baseDir: string;
let fleet: NodeFleet;
let secrets: SecretsManagerEmulator;
let servers: NodeSandbox[];
let client: NodeSandbox;

const newKey = () => randomBytes(32).toString('base64');

/** An mTLS call to a node's agent with the node's own CLI certificate, as an operator on it would. */
const api = (node: NodeSandbox, method: string, path: string, body?: unknown) =>
  callAgent(node, method, path, { body });

const keyring = async (node: NodeSandbox, op: string, key?: string) =>
  api(
    node,
    op === 'list' ? 'GET' : 'PUT',
    `/v1/agent/keyring/${op}`,
    key === undefined ? undefined : { Key: key },
  );

const json = answerJson;

async function keyringFile(node: NodeSandbox): Promise<string[]> {
  return JSON.parse(
    await readFile(join(node.root, 'opt/nomad/data/server/serf.keyring'), 'utf8'),
  ) as string[];
}

const shell = (node: NodeSandbox, script: string) => nomadShell(node, script, 30);

beforeAll(async () => {
  baseDir = await mkdtemp(join(tmpdir(), 'serf-keyring-'));
  secrets = await startSecretsManagerEmulator();
  fleet = await createNodeFleet({
    baseDir,
    servers: 3,
    clients: 1,
    clusterName: 'gossip',
    restartDelayMs: 200,
    secretsManagerEndpoint: secrets.endpoint,
  });
  servers = fleet.nodes().filter((node) => node.role === 'server');
  client = fleet.nodes().find((node) => node.role === 'client')!;
  const ca = await opensslCa();
  await Promise.all(fleet.nodes().map((node) => issue(node, ca)));
  await ca.dispose();
  const started = await Promise.all(fleet.nodes().map((node) => shell(node, 'systemctl start nomad')));
  expect(started.map((result) => result.exitCode)).toEqual([0, 0, 0, 0]);
  await eventually(
    () => api(servers[0]!, 'GET', '/v1/agent/members'),
    (answer) =>
      answer.status === 200 &&
      (json(answer).Members as { Status: string }[]).filter((m) => m.Status === 'alive').length === 3,
    15_000,
  );
});

afterAll(async () => {
  await fleet?.stop();
  await secrets?.stop();
  await rm(baseDir, { recursive: true, force: true });
});

describe('gossip keyring on real serf agents, through the Nomad stand-in', () => {
  it('shows the servers as one gossip pool, in Nomad’s member shape, from servers and clients alike', async () => {
    const fromServer = json(await api(servers[1]!, 'GET', '/v1/agent/members'));
    const fromClient = json(await api(client, 'GET', '/v1/agent/members'));

    expect(Object.keys(fromServer)).toEqual(Object.keys(MEMBERS_SAMPLE));
    expect(fromServer).toMatchObject({
      ServerName: servers[1]!.computerName,
      ServerRegion: 'global',
      ServerDC: 'dc1',
    });
    const members = fromServer.Members as Record<string, unknown>[];
    expect(members.map((member) => member.Name).sort()).toEqual(
      servers.map((server) => `${server.computerName}.global`).sort(),
    );
    for (const member of members) {
      expect(Object.keys(member)).toEqual(Object.keys(MEMBERS_SAMPLE.Members[0]!));
      expect(member).toMatchObject({
        Addr: '127.0.0.1',
        Status: 'alive',
        Tags: { role: 'nomad', region: 'global' },
      });
    }
    expect((fromClient.Members as unknown[]).length).toBe(3);
  });

  it('lists the initial key on every server whatever the method, and refuses keyring calls on a client with 501', async () => {
    const listed = await keyring(servers[0]!, 'list');
    // Nomad's handler does not look at the method: any of them runs the op.
    const listedByDelete = await api(servers[1]!, 'DELETE', '/v1/agent/keyring/list');
    const reinstalledByPost = await api(servers[2]!, 'POST', '/v1/agent/keyring/install', {
      Key: fleet.initialGossipKey!,
    });
    const onClient = await keyring(client, 'list');

    expect(listed.status).toBe(200);
    expect(json(listed)).toEqual({ Messages: {}, Keys: { [fleet.initialGossipKey!]: 3 }, NumNodes: 3 });
    expect(listedByDelete).toEqual(listed);
    expect(reinstalledByPost.status).toBe(200);
    expect(json(reinstalledByPost)).toEqual({ Messages: {}, Keys: {}, NumNodes: 3 });
    expect(onClient).toEqual({ status: 501, text: 'Invalid method' });
  });

  it('rotates install → use → remove, each step in Keys/NumNodes and in every serf.keyring on disk', async () => {
    const old = fleet.initialGossipKey!;
    const next = newKey();

    const installed = await keyring(servers[0]!, 'install', next);
    const afterInstall = json(await keyring(servers[1]!, 'list'));
    const filesAfterInstall = await Promise.all(servers.map(keyringFile));
    const used = await keyring(servers[0]!, 'use', next);
    const filesAfterUse = await Promise.all(servers.map(keyringFile));
    const removed = await keyring(servers[2]!, 'remove', old);
    const afterRemove = json(await keyring(servers[0]!, 'list'));
    const filesAfterRemove = await Promise.all(servers.map(keyringFile));

    expect(json(installed)).toEqual({ Messages: {}, Keys: {}, NumNodes: 3 });
    expect(afterInstall).toEqual({ Messages: {}, Keys: { [old]: 3, [next]: 3 }, NumNodes: 3 });
    expect(filesAfterInstall).toEqual([
      [old, next],
      [old, next],
      [old, next],
    ]);
    expect(used.status).toBe(200);
    expect(filesAfterUse).toEqual([
      [next, old],
      [next, old],
      [next, old],
    ]);
    expect(removed.status).toBe(200);
    expect(afterRemove).toEqual({ Messages: {}, Keys: { [next]: 3 }, NumNodes: 3 });
    expect(filesAfterRemove).toEqual([[next], [next], [next]]);
  });

  it('answers like Nomad when a key operation fails on every node', async () => {
    const primary = (await keyringFile(servers[0]!))[0]!;

    const removePrimary = await keyring(servers[0]!, 'remove', primary);
    const useUnknown = await keyring(servers[0]!, 'use', newKey());
    const notBase64 = await keyring(servers[0]!, 'install', 'not base64!');
    const wrongSize = await keyring(servers[0]!, 'install', randomBytes(20).toString('base64'));
    const unknownOp = await keyring(servers[0]!, 'rotate', primary);

    expect(removePrimary).toEqual({ status: 500, text: '3/3 nodes reported failure' });
    expect(useUnknown).toEqual({ status: 500, text: '3/3 nodes reported failure' });
    expect(notBase64.status).toBe(500);
    expect(notBase64.text).toMatch(/^illegal base64 data at input byte \d+$/);
    expect(wrongSize).toEqual({ status: 500, text: '3/3 nodes reported failure' });
    expect(unknownOp).toEqual({ status: 404, text: 'resource not found' });
    expect(await keyringFile(servers[0]!)).toEqual([primary]);
  });

  it('waits out serf’s 8 s WAN query timeout for a frozen server, answers 2/3 nodes reported success, and installs on all after it thaws', async () => {
    const frozen = servers[2]!;
    const serfPid = frozen.unitState().processes[1]!;
    const key = newKey();

    process.kill(serfPid, 'SIGSTOP');
    let partial: AgentAnswer;
    const startedAt = Date.now();
    let waitedMs: number;
    try {
      partial = await keyring(servers[0]!, 'install', key);
      waitedMs = Date.now() - startedAt;
    } finally {
      process.kill(serfPid, 'SIGCONT');
    }
    const recovered = await eventually(
      () => keyring(servers[0]!, 'install', key),
      (answer) => answer.status === 200,
      15_000,
    );
    const listed = json(await keyring(servers[1]!, 'list'));

    expect(partial).toEqual({ status: 500, text: '2/3 nodes reported success' });
    // GossipInterval 500 ms × QueryTimeoutMult 16 for up to 9 members; LAN timings would give 3.2 s.
    expect(waitedMs).toBeGreaterThanOrEqual(7_500);
    expect(json(recovered)).toEqual({ Messages: {}, Keys: {}, NumNodes: 3 });
    expect((listed.Keys as Record<string, number>)[key]).toBe(3);
    expect(await keyringFile(frozen)).toContain(key);
  });

  it('brings a restarted server’s serf back with the keyring it persisted', async () => {
    const restarted = servers[1]!;
    const before = await keyringFile(restarted);
    const serfBefore = restarted.unitState().processes[1];

    const result = await shell(restarted, 'systemctl restart nomad');
    const listed = await eventually(
      () => keyring(servers[0]!, 'list'),
      (answer) => answer.status === 200 && json(answer).NumNodes === 3,
      15_000,
    );

    expect(result.exitCode).toBe(0);
    expect(restarted.unitState().processes[1]).not.toBe(serfBefore);
    expect(await keyringFile(restarted)).toEqual(before);
    expect(json(listed)).toEqual({
      Messages: {},
      Keys: Object.fromEntries(before.map((key) => [key, 3])),
      NumNodes: 3,
    });
  });

  it('gives the same answers through the nomad CLI on a node', async () => {
    const node = servers[1]!;
    const current = (await keyringFile(node))[0]!;
    const fromApi = json(await keyring(servers[0]!, 'list')).Keys as Record<string, number>;
    const next = newKey();

    const listed = await shell(node, 'nomad operator gossip keyring list');
    const rotated = await shell(
      node,
      [
        `nomad operator gossip keyring install ${next}`,
        `nomad operator gossip keyring use ${next}`,
        `nomad operator gossip keyring remove ${current}`,
      ].join(' && '),
    );
    const afterRotation = json(await keyring(servers[0]!, 'list'));
    const removePrimary = await shell(node, `nomad operator gossip keyring remove ${next}`);
    const members = await shell(node, 'nomad server members');
    const retired = await shell(node, 'nomad operator keyring -list');

    expect(listed.exitCode).toBe(0);
    expect(listed.stdout.split('\n').slice(0, 2)).toEqual(['Gathering installed encryption keys...', 'Key']);
    expect(listed.stdout.trim().split('\n').slice(2).sort()).toEqual(Object.keys(fromApi).sort());
    expect(rotated).toMatchObject({ exitCode: 0, stderr: '' });
    expect(afterRotation).toEqual({
      Messages: {},
      Keys: Object.fromEntries(
        [next, ...Object.keys(fromApi).filter((key) => key !== current)].map((key) => [key, 3]),
      ),
      NumNodes: 3,
    });
    expect(removePrimary.exitCode).toBe(1);
    expect(removePrimary.stderr).toBe('error: Unexpected response code: 500 (3/3 nodes reported failure)\n');
    expect(members.exitCode, members.stderr).toBe(0);
    const rows = members.stdout.trim().split('\n');
    expect(rows[0]).toMatch(/^Name +Address +Port +Status +Leader +Raft Version +Build +Datacenter +Region$/);
    expect(rows.slice(1).map((row) => row.split(/ +/).slice(0, 5))).toEqual(
      servers.map((server, index) => [
        `${server.computerName}.global`,
        '127.0.0.1',
        String(server.gossip!.serfBindPort),
        'alive',
        String(index === 0),
      ]),
    );
    expect(retired.exitCode).toBe(1);
    expect(retired.stderr).toContain('nomad operator gossip keyring');
  });

  it('reads a secret from Secrets Manager with the aws CLI and the instance role', async () => {
    const name = 'nomad-rotator/gossip/gossip-key';
    const current = newKey();
    const pending = newKey();
    const sm = secrets.client();
    await sm.send(new CreateSecretCommand({ Name: name, SecretString: current }));
    await sm.send(
      new PutSecretValueCommand({ SecretId: name, SecretString: pending, VersionStages: ['AWSPENDING'] }),
    );
    const node = servers[0]!;
    const read = (options: string) =>
      shell(node, `aws secretsmanager get-secret-value --secret-id ${name} ${options}`);

    const currentValue = await read('--query SecretString --output text');
    const pendingValue = await read('--version-stage AWSPENDING --query SecretString --output text');
    const whole = await read('');
    const missing = await shell(node, 'aws secretsmanager get-secret-value --secret-id nope');
    const unsupported = await shell(node, 'aws s3 ls');

    expect(currentValue).toMatchObject({ exitCode: 0, stdout: `${current}\n` });
    expect(pendingValue).toMatchObject({ exitCode: 0, stdout: `${pending}\n` });
    expect(JSON.parse(whole.stdout)).toMatchObject({
      Name: name,
      SecretString: current,
      VersionStages: ['AWSCURRENT'],
      CreatedDate: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00$/),
    });
    expect(missing.exitCode).toBe(254);
    expect(missing.stderr).toContain(
      'An error occurred (ResourceNotFoundException) when calling the GetSecretValue operation',
    );
    expect(unsupported.exitCode).toBe(252);
    expect(unsupported.stderr).toContain("only 'aws secretsmanager get-secret-value'");
  });

  it('leaves no agent, serf process or listening port behind after stop', async () => {
    const pids = fleet.nodes().flatMap((node) => node.unitState().processes);
    const tcpPorts = [
      ...fleet.nodes().map((node) => node.httpsPort),
      ...servers.flatMap((server) => [server.gossip!.serfBindPort, server.gossip!.serfRpcPort]),
      Number(new URL(fleet.supervisor.url).port),
    ];
    const udpPorts = servers.map((server) => server.gossip!.serfBindPort);
    expect(pids).toHaveLength(7);

    await fleet.stop();

    const alive = pids.filter((pid) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    });
    expect(alive).toEqual([]);
    for (const port of tcpPorts) await expect(bindTcp(port)).resolves.toBe(port);
    for (const port of udpPorts) await expect(bindUdp(port)).resolves.toBe(port);
  });
});

function bindTcp(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(port)));
  });
}

function bindUdp(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = createSocket('udp4');
    socket.once('error', reject);
    socket.bind(port, '127.0.0.1', () => socket.close(() => resolve(port)));
  });
}
