import { randomBytes } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ManagedNode, PingStatus, ScriptResult, ScriptRun } from '../fleet';
import type { AgentBehaviour } from './agent-options';
import { type ClusterPlan, computerName, type ServerPlan } from './cluster-plan';
import { layOutNode } from './node-layout';
import { ScriptRunner } from './script-runner';
import type { Supervisor, UnitStatus } from './supervisor';

/** The region the instance's AWS CLI signs for, as its instance metadata would report it. */
const INSTANCE_AWS_REGION = 'us-east-1';

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
  readonly #scripts: ScriptRunner;

  private constructor(private readonly options: SandboxOptions) {
    this.instanceId = `i-${randomBytes(9).toString('hex').slice(0, 17)}`;
    this.computerName = computerName(options.role, options.index);
    this.root = join(options.baseDir, this.instanceId);
    this.httpsPort = options.httpsPort;
    this.gossip = options.cluster.servers.find((server) => server.computerName === this.computerName);
    this.#scripts = new ScriptRunner({
      root: this.root,
      instanceId: this.instanceId,
      region: INSTANCE_AWS_REGION,
      httpsPort: this.httpsPort,
      supervisor: options.supervisor,
      secretsManagerEndpoint: options.cluster.secretsManagerEndpoint,
    });
  }

  static async create(options: SandboxOptions): Promise<NodeSandbox> {
    const sandbox = new NodeSandbox(options);
    await layOutNode({
      root: sandbox.root,
      instanceId: sandbox.instanceId,
      computerName: sandbox.computerName,
      role: options.role,
      httpsPort: sandbox.httpsPort,
      region: INSTANCE_AWS_REGION,
      server: sandbox.gossip,
      cluster: options.cluster,
      behaviour: options.behaviour,
      supervisor: options.supervisor,
      standinProgram: options.standinProgram,
      restartDelayMs: options.restartDelayMs,
    });
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
    return this.#scripts.run(run);
  }

  /** Stop relaying into script namespaces; the fleet calls it once every script has ended. */
  async close(): Promise<void> {
    await this.#scripts.close();
  }
}
