import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNodeFleet, type NodeFleet } from '../../local/node/fleet';
import type { NodeSandbox } from '../../local/node/sandbox';
import { servedCertificateSerial } from '../../local/world/verify';
import { DEFAULT_FILES, renderDocument } from '../helpers/documents';
import { opensslCa } from '../helpers/openssl-ca';

let baseDir: string;
let fleet: NodeFleet;
let ca: Awaited<ReturnType<typeof opensslCa>>;
let server: NodeSandbox;
let attempt = 0;

const b64 = (text: string) => Buffer.from(text).toString('base64');

/** One prepare → sign → install round on a node, through the real documents. */
async function rotate(
  node: NodeSandbox,
  overrides: Record<string, string> = {},
  names = 'DNS:server.global.nomad,DNS:localhost,IP:127.0.0.1',
) {
  attempt += 1;
  const attemptId = `test-${String(attempt).padStart(8, '0')}`;
  const prepared = await node.runScript({
    script: renderDocument('prepare', { attemptId, ...DEFAULT_FILES }),
    commandId: `prepare-${attempt}`,
    timeoutSeconds: 60,
  });
  expect(prepared.exitCode, prepared.stdout + prepared.stderr).toBe(0);
  const output = JSON.parse(prepared.stdout) as { agentCsr: string; cliCsr: string };
  const agent = await ca.sign(output.agentCsr, names, 'serverAuth,clientAuth');
  const cli = await ca.sign(output.cliCsr, 'DNS:cli.global.nomad', 'clientAuth');
  const installed = await node.runScript({
    script: renderDocument('install', {
      attemptId,
      role: 'server',
      region: 'global',
      mode: 'reload',
      certificates: b64(`${agent.pem}${cli.pem}`),
      chain: b64(ca.intermediate),
      caBundle: b64(ca.bundle),
      minimumValiditySeconds: '600',
      healthTimeoutSeconds: '5',
      ...DEFAULT_FILES,
      ...overrides,
    }),
    commandId: `install-${attempt}`,
    timeoutSeconds: 60,
  });
  return {
    agent,
    cli,
    installed,
    result: JSON.parse(installed.stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, unknown>,
  };
}

async function served(node: NodeSandbox): Promise<string> {
  const read = (path: string) => readFile(join(node.root, path), 'utf8');
  return (
    await servedCertificateSerial(node.httpsPort, {
      ca: await read('opt/nomad/agent-certs/ca.crt'),
      cert: await read('opt/nomad/cli-certs/cli.crt'),
      key: await read('opt/nomad/cli-certs/cli.key'),
    })
  ).toLowerCase();
}

beforeAll(async () => {
  baseDir = await mkdtemp(join(tmpdir(), 'node-sandbox-'));
  ca = await opensslCa();
  fleet = await createNodeFleet({
    baseDir,
    servers: 1,
    clients: 1,
    clusterName: 'test',
    restartDelayMs: 200,
  });
  server = fleet.nodes()[0]!;
});

afterAll(async () => {
  await fleet.stop();
  await ca.dispose();
  await rm(baseDir, { recursive: true, force: true });
});

describe('node sandbox running the real documents', () => {
  it('starts as a fresh instance: no certificates, nomad inactive', async () => {
    expect(server.unitState().state).toBe('inactive');
    const result = await server.runScript({
      script: 'systemctl is-active nomad',
      commandId: 'c0',
      timeoutSeconds: 10,
    });
    expect(result).toMatchObject({ exitCode: 3, stdout: 'inactive\n' });
  });

  it('issues on first install: key made on the node, agent started, new serial served over mTLS', async () => {
    const { agent, result } = await rotate(server);

    expect(result).toMatchObject({ ok: true, changed: true, action: 'restart' });
    expect(server.unitState().state).toBe('active');
    expect(await served(server)).toBe(agent.serial);
    expect(existsSync(join(server.root, 'opt/nomad/agent-certs/.pending'))).toBe(false);
  });

  it('rotates a running agent with a reload and proves the new serial', async () => {
    const { agent, result } = await rotate(server);

    expect(result).toMatchObject({ ok: true, action: 'reload' });
    expect(await served(server)).toBe(agent.serial);
    expect(await server.log()).toContain(`now serving serial ${agent.serial}`);
  });

  it('rolls back by itself when the reload does not take effect', async () => {
    const before = await served(server);
    await server.injectFault('ignore-sighup');

    const { result } = await rotate(server);
    await server.clearFault('ignore-sighup');

    expect(result).toMatchObject({
      ok: false,
      reason: 'new-certificate-not-served',
      touched: true,
      restored: true,
    });
    expect(await served(server)).toBe(before);
    expect(server.unitState().state).toBe('active');
  });

  it('refuses certificates with the wrong names before touching anything', async () => {
    const before = await served(server);

    const { result } = await rotate(server, {}, 'DNS:client.global.nomad,DNS:localhost,IP:127.0.0.1');

    expect(result).toMatchObject({ ok: false, reason: 'wrong-names', touched: false });
    expect(await served(server)).toBe(before);
  });

  it('exits on a broken CA file during reload, as Nomad >= 1.10.1 does, and keeps failing', async () => {
    const client = fleet.nodes()[1]!;
    await rotate(client, { role: 'client' }, 'DNS:client.global.nomad,DNS:localhost,IP:127.0.0.1');
    expect(client.unitState().state).toBe('active');

    await writeFile(
      join(client.root, 'opt/nomad/agent-certs/ca.crt'),
      '-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n',
    );
    await client.runScript({ script: 'systemctl reload nomad', commandId: 'c1', timeoutSeconds: 10 });
    await new Promise((resolve) => setTimeout(resolve, 500));

    expect(client.unitState().state).toBe('failed');
    expect(await client.log()).toContain('Fatal error while reloading');
  });

  it('keeps script writes inside the sandbox and reports timeouts as 137', async () => {
    const marker = `/opt/nomad/marker-${Date.now()}`;
    const written = await server.runScript({
      script: `echo hi > ${marker}; echo "$NOMAD_ADDR"`,
      commandId: 'c2',
      timeoutSeconds: 10,
    });

    expect(written.stdout.trim()).toBe(`https://127.0.0.1:${server.httpsPort}`);
    expect(existsSync(join(server.root, marker))).toBe(true);
    expect(existsSync(marker)).toBe(false);
    expect(await server.runScript({ script: 'sleep 5', commandId: 'c3', timeoutSeconds: 1 })).toMatchObject({
      exitCode: 137,
      timedOut: true,
    });
  });

  it('leaves no agent process behind after stop', async () => {
    const pids = fleet
      .nodes()
      .map((node) => node.unitState().pid)
      .filter((pid): pid is number => pid !== undefined);

    await fleet.stop();

    const running = execFileSync('ps', ['-eo', 'pid,args']).toString();
    for (const pid of pids) expect(running).not.toMatch(new RegExp(`^\\s*${pid}\\s`, 'm'));
    expect(running).not.toContain(baseDir);
  });
});
