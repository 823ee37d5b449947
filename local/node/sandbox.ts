import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import type { ManagedNode, PingStatus, ScriptResult, ScriptRun } from '../fleet';
import type { StandinConfig } from './standin';
import type { Supervisor, UnitState } from './supervisor';

const SHIMS = ['systemctl'] as const;
const SHIM_SOURCE_DIR = new URL('./shims/', import.meta.url);

export interface SandboxOptions {
  baseDir: string;
  role: 'server' | 'client';
  index: number;
  tags: Record<string, string>;
  supervisor: Supervisor;
  standinProgram: string;
  leader: string;
  restartDelayMs: number;
}

/**
 * An EC2 instance with an SSM agent, as far as this project can tell: a directory tree standing for
 * the node's /opt, a `nomad` unit run by the supervisor, and a runScript that executes SSM document
 * text as root in a private mount namespace where the sandbox's opt/ is mounted over /opt. The
 * documents therefore use their real absolute paths; only /opt is redirected, so the local world
 * keeps every node path under /opt/nomad.
 */
export class NodeSandbox implements ManagedNode {
  readonly instanceId: string;
  readonly computerName: string;
  readonly ipAddress = '127.0.0.1';
  readonly root: string;
  #online = true;

  private constructor(
    private readonly options: SandboxOptions,
    readonly httpsPort: number,
  ) {
    this.instanceId = `i-${randomBytes(9).toString('hex').slice(0, 17)}`;
    this.computerName = `${options.role}-${options.index}.nomad.internal`;
    this.root = join(options.baseDir, this.instanceId);
  }

  static async create(options: SandboxOptions): Promise<NodeSandbox> {
    const sandbox = new NodeSandbox(options, await freePort());
    await sandbox.#layOut();
    return sandbox;
  }

  get tags(): Readonly<Record<string, string>> {
    return this.options.tags;
  }

  get role(): 'server' | 'client' {
    return this.options.role;
  }

  pingStatus(): PingStatus {
    return this.#online ? 'Online' : 'ConnectionLost';
  }

  setOnline(online: boolean): void {
    this.#online = online;
  }

  unitState(): { state: UnitState; pid?: number; lastExitCode?: number | null } {
    return this.options.supervisor.state(this.instanceId);
  }

  /** Faults the stand-in honours, e.g. `ignore-sighup` (a reload that silently changes nothing). */
  async injectFault(name: string): Promise<void> {
    await writeFile(join(this.root, 'faults', name), '');
  }

  async clearFault(name: string): Promise<void> {
    await rm(join(this.root, 'faults', name), { force: true });
  }

  async log(): Promise<string> {
    return readFile(join(this.root, 'var/log/nomad.log'), 'utf8').catch(() => '');
  }

  async runScript(run: ScriptRun): Promise<ScriptResult> {
    const directory = join(this.root, 'var/lib/amazon/ssm', run.commandId);
    await mkdir(directory, { recursive: true });
    const script = join(directory, '_script.sh');
    await writeFile(script, run.script, { mode: 0o700 });
    // As the agent: `sh -c <file>` as root; here inside a mount namespace with the sandbox's /opt.
    const child = spawn(
      'unshare',
      [
        '--mount',
        '--propagation',
        'private',
        '--',
        'bash',
        '-c',
        'mount --bind "$1/opt" /opt && exec sh -c "$2"',
        'ssm-agent',
        this.root,
        script,
      ],
      {
        detached: true,
        // No stdin, as under the agent. A socket there (Node's default pipe) makes bash take itself
        // for an sshd session and source ~/.bashrc, which may put the host's own tools before the shims.
        stdio: ['ignore', 'pipe', 'pipe'],
        env: {
          PATH: `${join(this.root, 'shims')}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
          HOME: '/root',
          SSM_COMMAND_ID: run.commandId,
          NOMAD_ADDR: `https://127.0.0.1:${this.httpsPort}`,
        },
      },
    );
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    }, run.timeoutSeconds * 1000);
    const code = await new Promise<number>((resolve) => child.on('close', (exit) => resolve(exit ?? 137)));
    clearTimeout(timer);
    return {
      exitCode: timedOut ? 137 : code,
      stdout: Buffer.concat(stdout).toString('utf8'),
      stderr: Buffer.concat(stderr).toString('utf8'),
      timedOut,
    };
  }

  async #layOut(): Promise<void> {
    for (const directory of ['opt/nomad', 'shims', 'faults', 'var/log', 'var/lib/amazon/ssm', 'etc']) {
      await mkdir(join(this.root, directory), { recursive: true });
    }
    for (const shim of SHIMS) {
      const target = join(this.root, 'shims', shim);
      await writeFile(target, await readFile(new URL(`${shim}.sh`, SHIM_SOURCE_DIR), 'utf8'));
      await chmod(target, 0o755);
    }
    await writeFile(
      join(this.root, 'shims/node.env'),
      `SUPERVISOR_URL=${this.options.supervisor.url}\nNODE_ID=${this.instanceId}\n`,
    );
    const certs = join(this.root, 'opt/nomad/agent-certs');
    const config: StandinConfig = {
      role: this.options.role,
      nodeName: this.computerName,
      port: this.httpsPort,
      caFile: join(certs, 'ca.crt'),
      certFile: join(certs, 'agent.crt'),
      keyFile: join(certs, 'agent.key'),
      logFile: join(this.root, 'var/log/nomad.log'),
      ignoreSighupFile: join(this.root, 'faults/ignore-sighup'),
      leader: this.options.leader,
      peers: [this.options.leader],
    };
    const configFile = join(this.root, 'etc/nomad-standin.json');
    await writeFile(configFile, JSON.stringify(config, null, 2));
    this.options.supervisor.define(this.instanceId, {
      program: this.options.standinProgram,
      configFile,
      restartDelayMs: this.options.restartDelayMs,
    });
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}
