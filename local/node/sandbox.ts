import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ManagedNode, PingStatus, ScriptResult, ScriptRun } from '../fleet';
import type { AgentBehaviour } from './agent-options';
import type { AclGrant, GossipConfig } from './gossip';
import type { StandinConfig } from './standin-config';
import type { Supervisor, UnitStatus } from './supervisor';

const SHIMS = ['systemctl', 'nomad', 'aws'] as const;
/**
 * Nomad's default HTTP port. Every agent is at 127.0.0.1:4646 as its node's scripts see it: each script
 * runs in a network namespace of its own, where a relay carries that port to the node's stand-in.
 */
export const AGENT_PORT = 4646;
/** The environment systemd gives the SSM agent and the agent passes on (agent/executers/executers.go). */
const AGENT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const RELAY_PROGRAM = new URL('./loopback-relay.mjs', import.meta.url).pathname;
/**
 * Runs inside the script's private mount and network namespaces ($1 sandbox root, $2 script file,
 * $3 relay ready file, then the relay's port mappings): loopback up and the relay listening; the
 * sandbox's opt/ over /opt and its shims over /usr/local/sbin (first on the agent's PATH, empty on
 * Debian); any paths of the read-only fault bound onto themselves read-only; then the script as the
 * agent runs it: `sh -c <file>` from /usr/bin with nothing but the agent's environment.
 */
const AGENT_WRAPPER = [
  'root=$1 script=$2 ready=$3',
  'shift 3',
  'fail() { echo "node sandbox: $1" >&2; exit 125; }',
  'ip link set lo up || fail "cannot bring up loopback (is iproute2 installed?)"',
  'mount --bind "$root/opt" /opt || fail "cannot mount the node\'s /opt"',
  'mount --bind "$root/shims" /usr/local/sbin || fail "cannot mount the shims over /usr/local/sbin"',
  'if [ -f "$root/faults/read-only" ]; then',
  '  while IFS= read -r path; do',
  '    [ -e "$path" ] && mount --bind "$path" "$path" && mount -o remount,bind,ro "$path" || fail "read-only fault on $path"',
  '  done <"$root/faults/read-only"',
  'fi',
  '"$RELAY_NODE" "$RELAY_PROGRAM" "$ready" "$@" </dev/null &',
  'relay=$!',
  'tries=0',
  'until [ -e "$ready" ]; do',
  '  tries=$((tries + 1))',
  '  [ "$tries" -le 1000 ] && kill -0 "$relay" 2>/dev/null || fail "the loopback relay did not start"',
  '  sleep 0.005',
  'done',
  'cd /usr/bin || fail "no /usr/bin"',
  'env -i "PATH=$AGENT_PATH" "AWS_SSM_INSTANCE_ID=$INSTANCE_ID" "AWS_SSM_REGION_NAME=$INSTANCE_REGION" \\',
  '  "SSM_COMMAND_ID=$COMMAND_ID" sh -c "$script"',
  'code=$?',
  'kill "$relay" 2>/dev/null',
  'exit "$code"',
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
  /** Unix sockets through which a script's network namespace reaches this machine's loopback. */
  readonly #relays: Server[] = [];
  #relayDirectory: string | undefined;
  /** Open relayed connections: one a script left open must not keep the fleet's stop waiting. */
  readonly #relayed = new Set<Socket>();

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

  /**
   * Faults the stand-in honours: `ignore-sighup` (a reload that silently changes nothing),
   * `fail-next-reload` (the next reload serves the new leaf, then the agent exits).
   */
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
    // The agent's layout: <orchestration>/<commandId>/<step>/_script.sh, mode 0700.
    const directory = join(this.root, 'var/lib/amazon/ssm', run.commandId, 'awsrunShellScript');
    await mkdir(directory, { recursive: true });
    const script = join(directory, '_script.sh');
    await writeFile(script, run.script, { mode: 0o700 });
    const child = spawn(
      'unshare',
      [
        '--mount',
        '--net',
        '--propagation',
        'private',
        '--',
        'bash',
        '-c',
        AGENT_WRAPPER,
        'ssm-agent',
        this.root,
        script,
        join(directory, '.relay-ready'),
        ...(await this.#relayMappings()),
      ],
      {
        detached: true,
        // No stdin, as under the agent. A socket there (Node's default pipe) makes bash take itself
        // for an sshd session and source ~/.bashrc, which may put the host's own tools before the shims.
        stdio: ['ignore', 'pipe', 'pipe'],
        env: {
          PATH: AGENT_PATH,
          AGENT_PATH,
          RELAY_NODE: process.execPath,
          RELAY_PROGRAM,
          INSTANCE_ID: this.instanceId,
          INSTANCE_REGION: INSTANCE_AWS_REGION,
          COMMAND_ID: run.commandId,
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

  /** Stop relaying into script namespaces; the fleet calls it once every script has ended. */
  async close(): Promise<void> {
    for (const connection of this.#relayed) connection.destroy();
    await Promise.all(
      this.#relays.splice(0).map((relay) => new Promise<void>((resolve) => relay.close(() => resolve()))),
    );
    if (this.#relayDirectory !== undefined) await rm(this.#relayDirectory, { recursive: true, force: true });
    this.#relayDirectory = undefined;
  }

  /**
   * `<port>=<socket>` for each loopback endpoint a script on this node reaches: its agent at
   * 127.0.0.1:4646, and the supervisor and Secrets Manager at the ports the shims were given.
   * The sockets are made on first use and forward to this machine's loopback.
   */
  async #relayMappings(): Promise<string[]> {
    const targets = new Map<number, number>([[AGENT_PORT, this.httpsPort]]);
    const supervisorPort = Number(new URL(this.options.supervisor.url).port);
    targets.set(supervisorPort, supervisorPort);
    const secrets = this.options.cluster.secretsManagerEndpoint;
    if (secrets !== undefined) {
      const port = Number(new URL(secrets).port);
      targets.set(port, port);
    }
    // Under the temporary directory: a Unix socket path must stay under 108 bytes wherever the
    // sandboxes live.
    this.#relayDirectory ??= await mkdtemp(join(tmpdir(), 'nomad-rotator-relay-'));
    const directory = this.#relayDirectory;
    if (this.#relays.length === 0) {
      for (const [listenPort, targetPort] of targets) {
        const relay = createServer((inbound) => {
          const outbound = connect(targetPort, '127.0.0.1');
          this.#relayed.add(inbound);
          inbound.once('close', () => this.#relayed.delete(inbound));
          inbound.pipe(outbound).pipe(inbound);
          inbound.on('error', () => outbound.destroy());
          outbound.on('error', () => inbound.destroy());
        });
        const path = join(directory, `${listenPort}.sock`);
        await new Promise<void>((resolve, reject) => relay.once('error', reject).listen(path, resolve));
        this.#relays.push(relay);
      }
    }
    return [...targets.keys()].map((port) => `${port}=${join(directory, `${port}.sock`)}`);
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
      failNextReloadFile: join(this.root, 'faults/fail-next-reload'),
      rpcServers: cluster.servers.map((server) => ({
        nodeName: server.computerName,
        rpcPort: server.rpcPort,
      })),
      ...(this.gossip === undefined
        ? {}
        : { server: { rpcPort: this.gossip.rpcPort, raftDir: join(this.root, DATA_DIR, 'server/raft') } }),
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
