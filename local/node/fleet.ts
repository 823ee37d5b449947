import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { build, stop as stopEsbuild } from 'esbuild';
import type { Fleet } from '../fleet';
import { type AgentBehaviour, DEFAULT_AGENT_BEHAVIOUR } from './agent-options';
import { type ClusterPlan, computerName, freePorts } from './cluster-plan';
import type { AclGrant } from './gossip';
import { NodeSandbox } from './sandbox';
import { Supervisor } from './supervisor';

export interface NodeFleetOptions {
  baseDir: string;
  servers: number;
  clients: number;
  clusterName: string;
  region?: string;
  datacenter?: string;
  clusterTagKey?: string;
  roleTagKey?: string;
  restartDelayMs?: number;
  /**
   * The agents' Nomad version and timings (local/node/agent-options.ts); unset fields take Nomad's
   * defaults, with verify_https_client on as the seed guide configures it.
   */
  agent?: Partial<AgentBehaviour>;
  /** The Secrets Manager endpoint the nodes' `aws` uses; without it `aws` on a node cannot connect. */
  secretsManagerEndpoint?: string;
  /**
   * Enables ACLs on the servers with these tokens (secret ID → the rules its policies grant): keyring
   * calls then need agent:write, the autopilot endpoints operator:read (operator:write to change the
   * configuration). Without it ACLs are disabled, as on a Nomad cluster by default.
   */
  aclTokens?: Record<string, readonly AclGrant[]>;
  /** false: the servers start with no `encrypt` and no keyring, gossiping in clear (default true). */
  gossipEncryption?: boolean;
}

export interface NodeFleet extends Fleet {
  readonly supervisor: Supervisor;
  /**
   * The gossip key every server's keyring starts with: each server's `encrypt`, written to its
   * serf.keyring on its first start (32 random bytes, standard base64, as `nomad operator gossip
   * keyring generate` makes them). A secret: never log it.
   */
  readonly initialGossipKey: string | undefined;
  nodes(): readonly NodeSandbox[];
  node(instanceId: string): NodeSandbox | undefined;
  /**
   * Launch one more client instance, as an autoscaling group would: no certificates, the unit inactive,
   * and its SSM agent online or (still registering) not.
   */
  addClient(options?: { online?: boolean }): Promise<NodeSandbox>;
  /** Stop every agent and the supervisor: no process or port is left behind. */
  stop(): Promise<void>;
}

/**
 * A cluster's worth of node sandboxes sharing one supervisor. Nodes start as fresh instances do
 * before their first issuance: no certificates, the `nomad` unit inactive. Servers have the cluster's
 * gossip key as `encrypt` (their first start writes it to serf.keyring), and their serf agents start
 * and stop with the unit. `stop()` ends every process the fleet started.
 */
export async function createNodeFleet(options: NodeFleetOptions): Promise<NodeFleet> {
  await mkdir(options.baseDir, { recursive: true });
  const standinProgram = join(options.baseDir, 'nomad-standin.mjs');
  // Bundled once so each agent starts in tens of milliseconds instead of compiling TypeScript.
  await build({
    entryPoints: [new URL('./standin.ts', import.meta.url).pathname],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: standinProgram,
    logLevel: 'silent',
  });
  const supervisor = await Supervisor.start();
  const clusterTagKey = options.clusterTagKey ?? 'nomad-cluster';
  const roleTagKey = options.roleTagKey ?? 'nomad-role';
  const roles = [
    ...Array.from({ length: options.servers }, () => 'server' as const),
    ...Array.from({ length: options.clients }, () => 'client' as const),
  ];
  // One HTTPS port per node; a serf bind port, a serf RPC port and a Nomad RPC port per server.
  const ports = await freePorts(roles.length + options.servers * 3);
  const port = () => ports.pop()!;
  const cluster: ClusterPlan = {
    region: options.region ?? 'global',
    datacenter: options.datacenter ?? 'dc1',
    servers: Array.from({ length: options.servers }, (_, index) => ({
      computerName: computerName('server', index + 1),
      serfBindPort: port(),
      serfRpcPort: port(),
      rpcPort: port(),
    })),
    ...(options.gossipEncryption === false ? {} : { gossipKey: randomBytes(32).toString('base64') }),
    secretsManagerEndpoint: options.secretsManagerEndpoint,
    aclTokens: options.aclTokens,
  };
  const sandbox = (role: 'server' | 'client', index: number, httpsPort: number) =>
    NodeSandbox.create({
      baseDir: options.baseDir,
      role,
      index,
      tags: { [clusterTagKey]: options.clusterName, [roleTagKey]: role },
      supervisor,
      standinProgram,
      restartDelayMs: options.restartDelayMs ?? 2_000,
      httpsPort,
      cluster,
      behaviour: { ...DEFAULT_AGENT_BEHAVIOUR, ...options.agent },
    });
  const nodes = await Promise.all(roles.map((role, index) => sandbox(role, index + 1, port())));
  return {
    supervisor,
    initialGossipKey: cluster.gossipKey,
    nodes: () => nodes,
    node: (instanceId) => nodes.find((node) => node.instanceId === instanceId),
    addClient: async ({ online = true } = {}) => {
      const [httpsPort] = await freePorts(1);
      const node = await sandbox('client', nodes.length + 1, httpsPort!);
      node.setOnline(online);
      nodes.push(node);
      return node;
    },
    stop: async () => {
      await supervisor.stopAll();
      await Promise.all(nodes.map((node) => node.close()));
      // The build left esbuild's service process running; it restarts on the next build if needed.
      await stopEsbuild();
    },
  };
}
