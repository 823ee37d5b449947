import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ScriptResult, ScriptRun } from '../fleet';
import type { Supervisor } from './supervisor';

/**
 * Nomad's default HTTP port. Every agent is at 127.0.0.1:4646 as its node's scripts see it: each script
 * runs in a network namespace of its own, where a relay carries that port to the node's stand-in.
 */
const AGENT_PORT = 4646;
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

export interface ScriptNode {
  /** The sandbox directory standing for the node's filesystem. */
  root: string;
  instanceId: string;
  /** The region the instance's metadata reports. */
  region: string;
  /** Where the node's stand-in serves what scripts reach at 127.0.0.1:4646. */
  httpsPort: number;
  supervisor: Supervisor;
  secretsManagerEndpoint: string | undefined;
}

/**
 * The SSM agent's executor on one node: each script as root in private mount and network
 * namespaces, with the loopback endpoints it may reach relayed in over Unix sockets.
 */
export class ScriptRunner {
  /** Unix sockets through which a script's network namespace reaches this machine's loopback. */
  readonly #relays: Server[] = [];
  #relayDirectory: string | undefined;
  /** Open relayed connections: one a script left open must not keep the fleet's stop waiting. */
  readonly #relayed = new Set<Socket>();

  constructor(private readonly node: ScriptNode) {}

  async run(run: ScriptRun): Promise<ScriptResult> {
    // The agent's layout: <orchestration>/<commandId>/<step>/_script.sh, mode 0700.
    const directory = join(this.node.root, 'var/lib/amazon/ssm', run.commandId, 'awsrunShellScript');
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
        this.node.root,
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
          INSTANCE_ID: this.node.instanceId,
          INSTANCE_REGION: this.node.region,
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
    const targets = new Map<number, number>([[AGENT_PORT, this.node.httpsPort]]);
    const supervisorPort = Number(new URL(this.node.supervisor.url).port);
    targets.set(supervisorPort, supervisorPort);
    const secrets = this.node.secretsManagerEndpoint;
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
}
