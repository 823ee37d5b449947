import type { AgentBehaviour } from './agent-options';
import type { AclConfig, GossipConfig, KnownServer } from './gossip';

/** What the sandbox writes for its node's stand-in; the stand-in reads it from the file named in argv. */
export interface StandinConfig {
  role: 'server' | 'client';
  nodeName: string;
  region: string;
  datacenter: string;
  port: number;
  caFile: string;
  certFile: string;
  keyFile: string;
  logFile: string;
  /** A file whose presence makes the agent ignore SIGHUP (a reload that silently does nothing). */
  ignoreSighupFile: string;
  /**
   * A file whose presence makes the next reload fail after the new leaf is live, as a server reload
   * that errors does: the agent exits a moment later and systemd starts it again. Used once.
   */
  failNextReloadFile: string;
  /** Every configured server's Nomad RPC address: bootstrap_expect is their number; clients dial them. */
  rpcServers: RpcServer[];
  /** Servers only: the RPC port and Raft state directory. */
  server?: ServerRole;
  behaviour: AgentBehaviour;
  /** Servers only. */
  gossip?: GossipConfig;
  /**
   * Servers only: the tokens they resolve, for the keyring and operator endpoints (a client's
   * operator calls are judged by the server that answers them). Without it, or disabled, every call
   * is allowed, as in Nomad without ACLs.
   */
  acl?: AclConfig;
  /** Where a client's server RPCs (here: the member list) go. */
  servers: KnownServer[];
}

export interface ServerRole {
  /** Where this server's RPC listens (Nomad's 4647). */
  rpcPort: number;
  /** `<data_dir>/server/raft`, where the modelled Raft keeps its state (its latest configuration). */
  raftDir: string;
}

export interface RpcServer {
  nodeName: string;
  rpcPort: number;
}

/** A message to the supervisor once the agent serves: its helper processes belong to the unit. */
export interface ReadyMessage {
  ready: true;
  processes: number[];
}
