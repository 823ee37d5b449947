import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNodeFleet, type NodeFleet } from '../../local/node/fleet';
import type { NodeSandbox } from '../../local/node/sandbox';
import { rotateOnNode, servedSerial as served } from '../helpers/node-rotation';
import { opensslCa } from '../helpers/openssl-ca';
import { waitFor } from '../helpers/wait-for';

let baseDir: string;
let fleet: NodeFleet;
let ca: Awaited<ReturnType<typeof opensslCa>>;
let server: NodeSandbox;

/** One prepare → sign → install round on a node, through the real documents. */
const rotate = (
  node: NodeSandbox,
  overrides: Record<string, string> = {},
  names = 'DNS:server.global.nomad,DNS:localhost,IP:127.0.0.1',
) =>
  rotateOnNode(node, {
    ca,
    names,
    role: overrides.role === 'client' ? 'client' : 'server',
    install: overrides,
  });

/**
 * Watches the install's work directories (mktemp -d under /tmp, recognised by the batch it decodes
 * there) while a script runs, and names every file in them that holds a private key.
 */
function watchWorkDirectories() {
  const directories = new Set<string>();
  const filesWithPrivateKeys = new Set<string>();
  let running = true;
  const poll = (async () => {
    while (running) {
      for (const entry of await readdir(tmpdir()).catch(() => [])) {
        const directory = join(tmpdir(), entry);
        if (!entry.startsWith('tmp.') || !existsSync(join(directory, 'bundle.pem'))) continue;
        directories.add(directory);
        for (const file of await readdir(directory, { recursive: true }).catch(() => [])) {
          const text = await readFile(join(directory, file), 'utf8').catch(() => '');
          if (text.includes('PRIVATE KEY')) filesWithPrivateKeys.add(join(directory, file));
        }
      }
      // The poll interval of a watcher that runs until stopped, not a wait for a state.
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await poll;
      return { directories: directories.size, filesWithPrivateKeys: [...filesWithPrivateKeys] };
    },
  };
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

  it('rolls back by itself when the reload does not take effect, with no key copied to a work directory', async () => {
    const before = await served(server);
    await server.injectFault('ignore-sighup');
    const watcher = watchWorkDirectories();

    const { result } = await rotate(server);
    await server.clearFault('ignore-sighup');
    const seen = await watcher.stop();

    // The agent SIGKILLs a script that overruns, and its EXIT trap never removes the work directory.
    expect(seen.directories).toBeGreaterThan(0);
    expect(seen.filesWithPrivateKeys).toEqual([]);

    expect(result).toMatchObject({
      ok: false,
      reason: 'new-certificate-not-served',
      touched: true,
      restored: true,
    });
    expect(await served(server)).toBe(before);
    expect(server.unitState().state).toBe('active');
  });

  it('rolls back when the reload serves the new certificate and then ends the agent, which systemd restarts', async () => {
    const before = await served(server);
    await server.injectFault('fail-next-reload');

    const { result } = await rotate(server);

    // The restarted agent serves the new files well; only the process that was signalled can prove them.
    expect(result).toMatchObject({ ok: false, reason: 'new-certificate-not-served', restored: true });
    expect(await served(server)).toBe(before);
    expect(await server.log()).toContain(
      'Fatal error while reloading: server reload failed (fault injected)',
    );
    expect(server.unitState().state).toBe('active');
  });

  it('refuses certificates with the wrong names before touching anything', async () => {
    const before = await served(server);

    const { result } = await rotate(server, {}, 'DNS:client.global.nomad,DNS:localhost,IP:127.0.0.1');

    expect(result).toMatchObject({ ok: false, reason: 'wrong-names', touched: false });
    expect(await served(server)).toBe(before);
  });

  it.each([
    ['base64 of plain PEM, not gzip', Buffer.from('-----BEGIN CERTIFICATE-----\n').toString('base64')],
    ['a gzip that unpacks past 1 MiB', gzipSync(Buffer.alloc(1024 * 1024 + 1, 65)).toString('base64')],
  ])('refuses certificates sent as %s before touching anything', async (_, certificates) => {
    const before = await served(server);

    const { result } = await rotate(server, { certificates });

    expect(result).toMatchObject({
      ok: false,
      reason: 'bad-encoding',
      detail: 'certificates',
      touched: false,
    });
    expect(await served(server)).toBe(before);
  });

  it('exits on a broken CA file during reload, as Nomad >= 1.10.1 does, and keeps failing', async () => {
    const client = fleet.nodes()[1]!;
    // A client's install proves itself through the leader, so the server must be up; earlier tests
    // start it, and with `-t` or a shuffled order this one does.
    if (server.unitState().state !== 'active') await rotate(server);
    await rotate(client, { role: 'client' }, 'DNS:client.global.nomad,DNS:localhost,IP:127.0.0.1');
    expect(client.unitState().state).toBe('active');

    await writeFile(
      join(client.root, 'opt/nomad/agent-certs/ca.crt'),
      '-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n',
    );
    await client.runScript({ script: 'systemctl reload nomad', commandId: 'c1', timeoutSeconds: 10 });

    // The agent exits some time after the signal, and systemd restarts it (RestartSec 200 ms here):
    // "keeps failing" is a restart that failed again, as systemctl reports it.
    let look = 0;
    await waitFor(
      async () => {
        look += 1;
        const { stdout } = await client.runScript({
          script: 'systemctl show -p ActiveState -p NRestarts nomad',
          commandId: `show-${look}`,
          timeoutSeconds: 10,
        });
        return /^ActiveState=failed$/m.test(stdout) && Number(/^NRestarts=(\d+)$/m.exec(stdout)?.[1]) >= 1;
      },
      { timeoutMs: 10_000, what: 'the client unit to fail again after its restart with the broken CA file' },
    );
    expect(await client.log()).toContain('Fatal error while reloading');
  });

  it("runs scripts in the SSM agent's bare environment: no HOME or NOMAD_*, cwd /usr/bin, the agent's PATH", async () => {
    const result = await server.runScript({
      script:
        '#!/bin/bash\nenv | cut -d= -f1 | sort | tr "\\n" " "; echo; pwd; echo "$PATH"; stat -c %a "$0"',
      commandId: 'env-check',
      timeoutSeconds: 10,
    });

    const [variables, directory, path, mode] = result.stdout.trim().split('\n');
    expect(variables?.split(' ').filter(Boolean)).toEqual(
      expect.arrayContaining(['AWS_SSM_INSTANCE_ID', 'AWS_SSM_REGION_NAME', 'PATH', 'SSM_COMMAND_ID']),
    );
    expect(variables).not.toMatch(/\b(HOME|NOMAD_[A-Z_]+|USER)\b/);
    expect(directory).toBe('/usr/bin');
    expect(path).toBe('/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
    expect(mode).toBe('700');
  });

  it("reaches the node's own agent at 127.0.0.1:4646, as on every real node", async () => {
    const result = await server.runScript({
      script:
        'openssl s_client -connect 127.0.0.1:4646 </dev/null 2>/dev/null | openssl x509 -noout -serial | cut -d= -f2',
      commandId: 'agent-port',
      timeoutSeconds: 10,
    });

    expect(result.stdout.trim().toLowerCase()).toBe(await served(server));
  });

  it('keeps script writes inside the sandbox and reports timeouts as 137', async () => {
    const marker = `/opt/nomad/marker-${Date.now()}`;
    await server.runScript({ script: `echo hi > ${marker}`, commandId: 'c2', timeoutSeconds: 10 });

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
