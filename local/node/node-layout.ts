import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AgentBehaviour } from './agent-options';
import type { ClusterPlan, ServerPlan } from './cluster-plan';
import type { GossipConfig } from './gossip';
import type { StandinConfig } from './standin-config';
import type { Supervisor } from './supervisor';

const SHIMS = ['systemctl', 'nomad', 'aws'] as const;
const SHIM_SOURCE_DIR = new URL('./shims/', import.meta.url);
/** Nomad's default `data_dir` as the packaged config sets it; the keyring lives under it. */
const DATA_DIR = 'opt/nomad/data';

export interface NodeLayout {
  /** The sandbox directory standing for the node's filesystem. */
  root: string;
  instanceId: string;
  computerName: string;
  role: 'server' | 'client';
  httpsPort: number;
  /** The region the instance's metadata reports. */
  region: string;
  /** This node's entry in the cluster's servers; undefined on clients. */
  server: ServerPlan | undefined;
  cluster: ClusterPlan;
  behaviour: AgentBehaviour;
  supervisor: Supervisor;
  standinProgram: string;
  restartDelayMs: number;
}

/**
 * A fresh instance's tree: the shims and what they read, the stand-in's configuration, and the
 * `nomad` unit defined (inactive) with the supervisor.
 */
export async function layOutNode(node: NodeLayout): Promise<void> {
  for (const directory of ['opt/nomad', 'shims', 'faults', 'var/log', 'var/lib/amazon/ssm', 'etc']) {
    await mkdir(join(node.root, directory), { recursive: true });
  }
  for (const shim of SHIMS) {
    const target = join(node.root, 'shims', shim);
    await writeFile(target, await readFile(new URL(`${shim}.sh`, SHIM_SOURCE_DIR), 'utf8'));
    await chmod(target, 0o755);
  }
  await writeFile(join(node.root, 'shims/node.env'), nodeEnv(node), { mode: 0o600 });
  const { cluster } = node;
  const certs = join(node.root, 'opt/nomad/agent-certs');
  const config: StandinConfig = {
    role: node.role,
    nodeName: node.computerName,
    region: cluster.region,
    datacenter: cluster.datacenter,
    port: node.httpsPort,
    caFile: join(certs, 'ca.crt'),
    certFile: join(certs, 'agent.crt'),
    keyFile: join(certs, 'agent.key'),
    logFile: join(node.root, 'var/log/nomad.log'),
    ignoreSighupFile: join(node.root, 'faults/ignore-sighup'),
    failNextReloadFile: join(node.root, 'faults/fail-next-reload'),
    rpcServers: cluster.servers.map((server) => ({
      nodeName: server.computerName,
      rpcPort: server.rpcPort,
    })),
    ...(node.server === undefined
      ? {}
      : { server: { rpcPort: node.server.rpcPort, raftDir: join(node.root, DATA_DIR, 'server/raft') } }),
    behaviour: node.behaviour,
    ...(node.server === undefined
      ? {}
      : {
          gossip: await gossipConfig(node, node.server),
          acl: { enabled: cluster.aclTokens !== undefined, tokens: cluster.aclTokens ?? {} },
        }),
    servers: cluster.servers.map((server) => ({
      nodeName: server.computerName,
      serfRpcPort: server.serfRpcPort,
    })),
  };
  const configFile = join(node.root, 'etc/nomad-standin.json');
  await writeFile(configFile, JSON.stringify(config, null, 2));
  node.supervisor.define(node.instanceId, {
    program: node.standinProgram,
    configFile,
    restartDelayMs: node.restartDelayMs,
  });
}

/**
 * What the shims read: the supervisor's endpoint, and the instance's view of AWS (region, the
 * instance role's credentials, the Secrets Manager endpoint). Sourced by bash, so every value is
 * plain text of known characters.
 */
function nodeEnv(node: NodeLayout): string {
  const { cluster } = node;
  const lines = [
    `SUPERVISOR_URL=${node.supervisor.url}`,
    `NODE_ID=${node.instanceId}`,
    `INSTANCE_REGION=${node.region}`,
    `INSTANCE_ACCESS_KEY_ID=ASIA${randomBytes(8).toString('hex').toUpperCase()}`,
    `INSTANCE_SECRET_ACCESS_KEY=${randomBytes(30).toString('base64')}`,
    `INSTANCE_SESSION_TOKEN=${randomBytes(60).toString('base64')}`,
    ...(cluster.secretsManagerEndpoint ? [`SECRETS_MANAGER_ENDPOINT=${cluster.secretsManagerEndpoint}`] : []),
  ];
  return `${lines.join('\n')}\n`;
}

/**
 * A server's serf setup. The key goes into `encrypt`, as the agent config of a new server has it;
 * no keyring file is laid out, the first start writes it as Nomad does.
 */
async function gossipConfig(node: NodeLayout, self: ServerPlan): Promise<GossipConfig> {
  const { cluster } = node;
  return {
    memberName: `${node.computerName}.${cluster.region}`,
    bindPort: self.serfBindPort,
    rpcPort: self.serfRpcPort,
    keyringFile: join(node.root, DATA_DIR, 'server/serf.keyring'),
    snapshotFile: join(node.root, DATA_DIR, 'server/serf/snapshot'),
    ...(cluster.gossipKey === undefined ? {} : { encrypt: cluster.gossipKey }),
    configDir: join(node.root, 'opt/nomad/config'),
    join: cluster.servers.filter((other) => other !== self).map((other) => `127.0.0.1:${other.serfBindPort}`),
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
