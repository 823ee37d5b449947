import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import type { ManagedNode, PingStatus, ScriptResult, ScriptRun } from '../fleet';
import type { AgentBehaviour } from './agent-options';
import type { AclGrant } from './gossip';
import type { GossipConfig, StandinConfig } from './standin';
import type { Supervisor, UnitStatus } from './supervisor';

const SHIMS = ['systemctl', 'nomad', 'aws'] as const;
/**
 * Runs inside the script's private mount namespace: the sandbox's opt/ over /opt, then any paths of
 * the read-only fault bound onto themselves read-only, then the script as the agent runs it.
 */
const READ_ONLY_MOUNTS = [
  'mount --bind "$1/opt" /opt || exit 1',
  'if [ -f "$1/faults/read-only" ]; then',
  '  while IFS= read -r path; do',
  '    [ -e "$path" ] && mount --bind "$path" "$path" && mount -o remount,bind,ro "$path" || exit 1',
  '  done <"$1/faults/read-only"',
  'fi',
  'exec sh -c "$2"',
].join('\n');
const SHIM_SOURCE_DIR = new URL('./shims/', import.meta.url);
/** Nomad's default `data_dir` as the packaged config sets it; the keyring lives under it. */
const DATA_DIR = 'opt/nomad/data';
/** The region the instance's AWS CLI signs for, as its instance metadata would report it. */
const INSTANCE_AWS_REGION = 'us-east-1';

/** A server's addresses, known to every node of the cluster. */
export interface ServerPlan {
  computerName: string;
  serfBindPort: number;
  serfRpcPort: number;
  /** Nomad's RPC port (4647): the stand-in's mutual-TLS RPC and modelled Raft listen here. */
  rpcPort: number;
}

export interface ClusterPlan {
  region: string;
  datacenter: string;
  servers: ServerPlan[];
  /** The key every server's keyring starts with, as `encrypt` puts it there on first start. */
  gossipKey: string;
  /** The servers' ACL tokens by secret ID; without it ACLs are disabled. */
  aclTokens?: Record<string, AclGrant>;
  /** Where the node's `aws` reaches Secrets Manager. */
  secretsManagerEndpoint?: string;
}

export interface SandboxOptions {
  baseDir: string;
  role: 'server' | 'client';
  index: number;
  tags: Record<string, string>;
  supervisor: Supervisor;
  standinProgram: string;
  restartDelayMs: number;
  httpsPort: number;
  cluster: ClusterPlan;
  /** Nomad version and timings the node's agent follows. */
  behaviour: AgentBehaviour;
}

export function computerName(role: 'server' | 'client', index: number): string {
  return `${role}-${index}.nomad.internal`;
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

  readonly httpsPort: number;
  /** A server's gossip addresses; undefined on clients, which do not gossip. */
  readonly gossip: ServerPlan | undefined;

  private constructor(private readonly options: SandboxOptions) {
    this.instanceId = `i-${randomBytes(9).toString('hex').slice(0, 17)}`;
    this.computerName = computerName(options.role, options.index);
    this.root = join(options.baseDir, this.instanceId);
    this.httpsPort = options.httpsPort;
    this.gossip = options.cluster.servers.find((server) => server.computerName === this.computerName);
  }

  static async create(options: SandboxOptions): Promise<NodeSandbox> {
    const sandbox = new NodeSandbox(options);
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

  unitState(): UnitStatus {
    return this.options.supervisor.state(this.instanceId);
  }

  /** Faults the stand-in honours, e.g. `ignore-sighup` (a reload that silently changes nothing). */
  async injectFault(name: string): Promise<void> {
    await writeFile(join(this.root, 'faults', name), '');
  }

  /**
   * Make these node paths (files or directories under /opt) read-only for the scripts that run from
   * now on, as a full or failing disk would: writes and renames onto them fail. `clearFault('read-only')`
   * ends it.
   */
  async makeReadOnly(paths: readonly string[]): Promise<void> {
    for (const path of paths) {
      if (!/^\/opt(\/[A-Za-z0-9._-]+)+$/.test(path) || path.split('/').includes('..'))
        throw new Error(`read-only fault: ${path} is not a path under /opt`);
    }
    await writeFile(join(this.root, 'faults', 'read-only'), `${paths.join('\n')}\n`);
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
        READ_ONLY_MOUNTS,
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

  /**
   * What the shims read: the supervisor's endpoint, and the instance's view of AWS (region, the
   * instance role's credentials, the Secrets Manager endpoint). Sourced by bash, so every value is
   * plain text of known characters.
   */
  #nodeEnv(): string {
    const { cluster } = this.options;
    const lines = [
      `SUPERVISOR_URL=${this.options.supervisor.url}`,
      `NODE_ID=${this.instanceId}`,
      `INSTANCE_REGION=${INSTANCE_AWS_REGION}`,
      `INSTANCE_ACCESS_KEY_ID=ASIA${randomBytes(8).toString('hex').toUpperCase()}`,
      `INSTANCE_SECRET_ACCESS_KEY=${randomBytes(30).toString('base64')}`,
      `INSTANCE_SESSION_TOKEN=${randomBytes(60).toString('base64')}`,
      ...(cluster.secretsManagerEndpoint
        ? [`SECRETS_MANAGER_ENDPOINT=${cluster.secretsManagerEndpoint}`]
        : []),
    ];
    return `${lines.join('\n')}\n`;
  }

  /**
   * A server's serf setup. The key goes into `encrypt`, as the agent config of a new server has it;
   * no keyring file is laid out, the first start writes it as Nomad does.
   */
  async #layOutGossip(self: ServerPlan): Promise<GossipConfig> {
    const { cluster } = this.options;
    return {
      memberName: `${this.computerName}.${cluster.region}`,
      bindPort: self.serfBindPort,
      rpcPort: self.serfRpcPort,
      keyringFile: join(this.root, DATA_DIR, 'server/serf.keyring'),
      snapshotFile: join(this.root, DATA_DIR, 'server/serf/snapshot'),
      encrypt: cluster.gossipKey,
      acl: { enabled: cluster.aclTokens !== undefined, tokens: cluster.aclTokens ?? {} },
      join: cluster.servers
        .filter((other) => other !== self)
        .map((other) => `127.0.0.1:${other.serfBindPort}`),
      // The tags a Nomad server advertises (api-docs agent.mdx, `nomad server members`).
      tags: {
        role: 'nomad',
        region: cluster.region,
        dc: cluster.datacenter,
        vsn: '1',
        mvn: '1',
        build: 'local-standin',
        port: String(self.rpcPort),
        rpc_addr: '127.0.0.1',
        raft_vsn: '3',
        expect: String(cluster.servers.length),
      },
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
    await writeFile(join(this.root, 'shims/node.env'), this.#nodeEnv(), { mode: 0o600 });
    const { cluster } = this.options;
    const certs = join(this.root, 'opt/nomad/agent-certs');
    const config: StandinConfig = {
      role: this.options.role,
      nodeName: this.computerName,
      region: cluster.region,
      datacenter: cluster.datacenter,
      port: this.httpsPort,
      caFile: join(certs, 'ca.crt'),
      certFile: join(certs, 'agent.crt'),
      keyFile: join(certs, 'agent.key'),
      logFile: join(this.root, 'var/log/nomad.log'),
      ignoreSighupFile: join(this.root, 'faults/ignore-sighup'),
      rpcServers: cluster.servers.map((server) => ({
        nodeName: server.computerName,
        rpcPort: server.rpcPort,
      })),
      ...(this.gossip === undefined ? {} : { rpcPort: this.gossip.rpcPort }),
      behaviour: this.options.behaviour,
      ...(this.gossip === undefined ? {} : { gossip: await this.#layOutGossip(this.gossip) }),
      servers: cluster.servers.map((server) => ({
        nodeName: server.computerName,
        serfRpcPort: server.serfRpcPort,
      })),
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

/** Ports free right now; held together while they are picked, so no two of them are the same. */
export async function freePorts(count: number): Promise<number[]> {
  const servers = Array.from({ length: count }, () => createServer());
  try {
    return await Promise.all(
      servers.map(
        (server) =>
          new Promise<number>((resolve, reject) => {
            server.on('error', reject);
            server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port));
          }),
      ),
    );
  } finally {
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  }
}
