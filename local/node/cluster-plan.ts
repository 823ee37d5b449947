import { createServer } from 'node:net';
import type { AclGrant } from './gossip';

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
  /**
   * The key every server's keyring starts with, as `encrypt` puts it there on first start; none
   * for a cluster that gossips in clear.
   */
  gossipKey?: string;
  /** The servers' ACL tokens by secret ID; without it ACLs are disabled. */
  aclTokens?: Record<string, readonly AclGrant[]>;
  /** Where the node's `aws` reaches Secrets Manager. */
  secretsManagerEndpoint?: string;
}

export function computerName(role: 'server' | 'client', index: number): string {
  return `${role}-${index}.nomad.internal`;
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
