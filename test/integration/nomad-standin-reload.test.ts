import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNodeFleet, type NodeFleet } from '../../local/node/fleet';
import type { NodeSandbox } from '../../local/node/sandbox';
import { opensslCa } from '../helpers/openssl-ca';
import {
  api,
  eventually,
  type Issued,
  issue,
  leaf,
  servedSerial,
  sleep,
  type TestCa,
} from '../helpers/standin-nodes';

// SIGHUP on the stand-in in Nomad's order and with each version's handling of bad files
// (command/agent/agent.go Reload, command.go handleReload). Two single-server fleets with a client each: one with the default behaviour
// (Nomad >= 1.10.1, verify_https_client on), one as Nomad 1.10.0 with verify_https_client off.
// restartDelayMs is long so an agent that exits stays down for the test to see.

const BROKEN_BLOCK = '-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n';
const BEHAVIOUR = { raftProbeIntervalMs: 150, rpcHoldTimeoutMs: 300 };

let baseDir: string;
let ca: TestCa;
let otherCa: TestCa;
let current: NodeFleet;
let old: NodeFleet;

const nodesOf = (fleet: NodeFleet) => ({
  server: fleet.nodes().find((node) => node.role === 'server')!,
  client: fleet.nodes().find((node) => node.role === 'client')!,
});
const certsDir = (node: NodeSandbox) => join(node.root, 'opt/nomad/agent-certs');

/** Writes a new agent pair (and optionally ca.crt) onto the node without touching its CLI files. */
async function writeAgentFiles(node: NodeSandbox, agent: Issued, caFile?: string): Promise<void> {
  await writeFile(join(certsDir(node), 'agent.crt'), `${agent.cert}${ca.intermediate}`);
  await writeFile(join(certsDir(node), 'agent.key'), agent.key);
  if (caFile !== undefined) await writeFile(join(certsDir(node), 'ca.crt'), caFile);
}

const agentLeaf = (node: NodeSandbox, issuer = ca) =>
  leaf(issuer, `DNS:${node.role}.global.nomad,DNS:localhost,IP:127.0.0.1`, 'serverAuth,clientAuth');

async function reload(fleet: NodeFleet, node: NodeSandbox): Promise<void> {
  await fleet.supervisor.command(node.instanceId, 'reload');
}

const logged = (node: NodeSandbox, text: string) =>
  eventually(
    () => node.log(),
    (log) => log.includes(text),
  );

/** Status.Leader over a server's RPC port, presenting `identity`, as another server would. */
function askRpc(port: number, identity: { cert: string; key: string }, trust: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(
      { host: '127.0.0.1', port, servername: 'server.global.nomad', ca: trust, ...identity },
      () => socket.write('{"op":"leader","forwarded":true}\n'),
    );
    let answer = '';
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString('utf8');
    });
    socket.on('end', () => resolve(answer.trim()));
    socket.on('close', () => resolve(answer.trim()));
    socket.on('error', reject);
  });
}

async function startFresh(fleet: NodeFleet, node: NodeSandbox): Promise<void> {
  await issue(node, ca);
  await fleet.supervisor.command(node.instanceId, 'reset-failed');
  const started = await fleet.supervisor.command(node.instanceId, 'start');
  expect(started.exitCode).toBe(0);
}

beforeAll(async () => {
  baseDir = await mkdtemp(join(tmpdir(), 'nomad-standin-reload-'));
  [ca, otherCa] = await Promise.all([opensslCa(), opensslCa()]);
  const fleetOf = (name: string, agent: Record<string, unknown>) =>
    createNodeFleet({
      baseDir: join(baseDir, name),
      servers: 1,
      clients: 1,
      clusterName: name,
      restartDelayMs: 60_000,
      agent: { ...BEHAVIOUR, ...agent },
    });
  [current, old] = await Promise.all([
    fleetOf('current', {}),
    fleetOf('old', { nomadVersion: '1.10.0', verifyHttpsClient: false }),
  ]);
  for (const fleet of [current, old]) {
    for (const node of fleet.nodes()) await startFresh(fleet, node);
  }
});

afterAll(async () => {
  await current?.stop();
  await old?.stop();
  await Promise.all([ca?.dispose(), otherCa?.dispose()]);
  await rm(baseDir, { recursive: true, force: true });
});

describe('stand-in TLS reload in Nomad’s order', () => {
  it('serves the new leaf at once, closes RPC connections, then rebuilds HTTPS; an open keep-alive keeps the old certificate', async () => {
    const { server } = nodesOf(current);
    const keepAlive = new Agent({ keepAlive: true, maxSockets: 1 });
    const viaKeepAlive = () =>
      new Promise<{ serial: string; reused: boolean }>((resolve, reject) => {
        const call = request(
          {
            host: '127.0.0.1',
            port: server.httpsPort,
            path: '/v1/agent/health',
            agent: keepAlive,
            rejectUnauthorized: false,
            cert: readCli(server).cert,
            key: readCli(server).key,
          },
          (response) => {
            const socket = response.socket as unknown as { getPeerCertificate(): { serialNumber: string } };
            response.resume();
            response.on('end', () =>
              resolve({
                serial: socket.getPeerCertificate().serialNumber.toLowerCase(),
                reused: call.reusedSocket,
              }),
            );
          },
        );
        call.on('error', reject);
        call.end();
      });
    const before = await viaKeepAlive();
    const rpcIdentity = await agentLeaf(server);
    const rpcConnection = connect({
      host: '127.0.0.1',
      port: server.gossip!.rpcPort,
      servername: 'server.global.nomad',
      ca: ca.bundle,
      cert: rpcIdentity.cert,
      key: rpcIdentity.key,
    });
    await new Promise((resolve) => rpcConnection.once('secureConnect', resolve));
    const rpcClosed = new Promise<void>((resolve) => rpcConnection.once('close', () => resolve()));
    rpcConnection.on('error', () => {});
    const next = await agentLeaf(server);

    await writeAgentFiles(server, next);
    await reload(current, server);
    const log = await logged(server, 'reloading HTTP server');
    const rpcClosedByReload = await Promise.race([
      rpcClosed.then(() => true),
      sleep(2_000).then(() => false),
    ]);
    const afterOnKeepAlive = await viaKeepAlive();
    const onNewConnection = await servedSerial(server.httpsPort);
    const onRpc = await servedSerial(server.gossip!.rpcPort);
    keepAlive.destroy();

    expect(rpcClosedByReload).toBe(true);
    expect(afterOnKeepAlive).toEqual({ serial: before.serial, reused: true });
    expect(onNewConnection).toBe(next.serial);
    expect(onRpc).toBe(next.serial);
    const order = [
      `now serving serial ${next.serial}`,
      'reloading server connections',
      'reloading HTTP server',
    ];
    const positions = order.map((line) => log.indexOf(line));
    expect(positions.every((position) => position >= 0)).toBe(true);
    expect([...positions].sort((a, b) => a - b)).toEqual(positions);
    expect((await api(server, '/v1/agent/health')).status).toBe(200);
  });

  it('accepts a CA bundle in which only some blocks are broken', async () => {
    const { server } = nodesOf(current);
    const next = await agentLeaf(server);

    await writeAgentFiles(server, next, `${BROKEN_BLOCK}${ca.bundle}`);
    await reload(current, server);
    await logged(server, `now serving serial ${next.serial}`);
    const health = await eventually(
      // The caller trusts the good blocks only: Node's client, unlike Nomad, refuses a broken one.
      () => api(server, '/v1/agent/health', { ca: ca.bundle }),
      (answer) => answer.status === 200,
    );

    expect(health.servedSerial).toBe(next.serial);
    expect(server.unitState().state).toBe('active');
  });

  it('keeps the old pair when the new certificate does not match its key', async () => {
    const { server } = nodesOf(current);
    const served = await servedSerial(server.httpsPort);
    const [certificate, otherKey] = await Promise.all([agentLeaf(server), agentLeaf(server)]);

    await writeAgentFiles(server, { ...certificate, key: otherKey.key });
    await reload(current, server);
    await logged(server, 'failed to reload the config: loading key pair');

    expect(await servedSerial(server.httpsPort)).toBe(served);
    expect(server.unitState().state).toBe('active');
  });

  it('on >= 1.10.1 an unreadable file only logs on a server but ends a client with exit 1', async () => {
    const { server, client } = nodesOf(current);

    await rm(join(certsDir(server), 'agent.key'));
    await rm(join(certsDir(client), 'agent.key'));
    await reload(current, server);
    await reload(current, client);
    await logged(server, 'failed to reload the config');
    await eventually(
      async () => client.unitState().state,
      (state) => state === 'failed',
    );

    expect(server.unitState().state).toBe('active');
    expect(client.unitState()).toMatchObject({ state: 'failed', lastExitCode: 1 });
    expect(await client.log()).toContain('Fatal error while reloading');
  });

  it('on >= 1.10.1 a CA without a parsable certificate serves the new leaf, then exits 1', async () => {
    const { server } = nodesOf(current);
    await startFresh(current, server);
    const next = await agentLeaf(server);

    await writeAgentFiles(server, next, BROKEN_BLOCK);
    await reload(current, server);
    await eventually(
      async () => server.unitState().state,
      (state) => state === 'failed',
    );
    const log = await server.log();

    expect(server.unitState().lastExitCode).toBe(1);
    expect(log.indexOf(`now serving serial ${next.serial}`)).toBeGreaterThan(-1);
    expect(log.indexOf('Fatal error while reloading: Failed to parse any CA certificates')).toBeGreaterThan(
      log.indexOf(`now serving serial ${next.serial}`),
    );
  });

  it('on >= 1.10.1 an Ed25519 key fails like a bad CA: the agent exits 1', async () => {
    const { client } = nodesOf(current);
    await startFresh(current, client);
    const ed25519 = await leaf(
      ca,
      'DNS:client.global.nomad,DNS:localhost,IP:127.0.0.1',
      'serverAuth,clientAuth',
      true,
    );

    await writeAgentFiles(client, ed25519);
    await reload(current, client);
    await eventually(
      async () => client.unitState().state,
      (state) => state === 'failed',
    );

    expect(client.unitState().lastExitCode).toBe(1);
    expect(await client.log()).toContain('Fatal error while reloading: unsupported private key type ed25519');
  });

  it('asks for a client certificate on HTTPS only with verify_https_client', async () => {
    const strict = nodesOf(current).client;
    const relaxed = nodesOf(old).server;
    await startFresh(current, strict);

    const withoutCertificate = await api(relaxed, '/v1/agent/health', { clientCertificate: false });
    const refused = await api(strict, '/v1/agent/health', { clientCertificate: false }).then(
      () => 'answered',
      (error: Error) => error.message,
    );

    expect(withoutCertificate.status).toBe(200);
    expect(refused).not.toBe('answered');
  });

  it('on 1.10.0 a bad CA never ends the agent: it serves the new leaf and keeps the old CA pools', async () => {
    const { server } = nodesOf(old);
    const next = await agentLeaf(server, otherCa);
    const oldCaPeer = await agentLeaf(server);

    await writeAgentFiles(server, next, BROKEN_BLOCK);
    await reload(old, server);
    await logged(server, 'failed to reload the config: Failed to parse any CA certificates');
    const served = await servedSerial(server.httpsPort);
    // A server certificate of the old CA is still trusted on RPC; the new leaf is verified with otherCa.
    const rpcAnswer = await askRpc(server.gossip!.rpcPort, oldCaPeer, otherCa.bundle);

    expect(server.unitState().state).toBe('active');
    expect(served).toBe(next.serial);
    expect(JSON.parse(rpcAnswer)).toEqual({ leader: `127.0.0.1:${server.gossip!.rpcPort}` });
  });

  it('on 1.10.0 an unreadable file does not end a client either', async () => {
    const { client } = nodesOf(old);

    await rm(join(certsDir(client), 'agent.key'));
    await reload(old, client);
    await logged(client, 'failed to reload the config');

    expect(client.unitState().state).toBe('active');
  });
});

function readCli(node: NodeSandbox): { cert: string; key: string } {
  const read = (file: string) => readFileSync(join(node.root, 'opt/nomad/cli-certs', file), 'utf8');
  return { cert: read('cli.crt'), key: read('cli.key') };
}
