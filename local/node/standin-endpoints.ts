import type { IncomingMessage } from 'node:http';
import { type GossipAgent, keyring, members } from './gossip';
import type { LeaderAnswer, RaftModel } from './raft';
import { type RpcRequest, rpcCall, type TlsFiles } from './rpc';
import type { StandinConfig } from './standin-config';
import type { Reply } from './standin-http';

const NO_LEADER = 'No cluster leader';

/** What the endpoints answer from: a server has Raft and gossip, a client asks a server. */
export interface AgentState {
  config: StandinConfig;
  raft: RaftModel | undefined;
  gossip: GossipAgent | undefined;
  /** The files in force at the call: a reload replaces them. */
  files: () => TlsFiles;
}

/** A server's answer to an RPC from a server or (Status and Operator reads only) a client. */
export async function answerRpc(raft: RaftModel | undefined, request: RpcRequest): Promise<unknown> {
  if (raft === undefined) throw new Error('not a server');
  if (request.op === 'leader') return raft.leader(request.forwarded === true);
  if (request.op === 'peers') return raft.peers();
  if (request.op === 'configuration') return raft.configurationReply();
  return raft.handle(request);
}

/**
 * A client's RPC: its current agent certificate to one server after another, as Nomad's client
 * tries the next server when one cannot be reached. Holding for a leader happens on the server.
 */
async function clientRpc(agent: AgentState, op: string): Promise<{ answer: unknown } | { error: string }> {
  const { config } = agent;
  let failure = NO_LEADER;
  for (const server of config.rpcServers) {
    try {
      const answer = await rpcCall(
        server.rpcPort,
        { op },
        { files: agent.files(), region: config.region, timeoutMs: config.behaviour.rpcHoldTimeoutMs + 2_000 },
      );
      if (op !== 'leader' || 'leader' in (answer as LeaderAnswer)) return { answer };
      failure = (answer as { error: string }).error;
    } catch {
      // Unreachable, or it refused our certificate: the next server, as Nomad's client does.
    }
  }
  return { error: failure };
}

async function leaderReply(agent: AgentState, stale: boolean): Promise<Reply> {
  const { raft } = agent;
  if (raft !== undefined && stale) return { status: 200, body: raft.staleLeader() };
  if (raft !== undefined) {
    const answer = await raft.leader(false);
    return 'leader' in answer ? { status: 200, body: answer.leader } : { status: 500, body: answer.error };
  }
  const answer = await clientRpc(agent, 'leader');
  if ('error' in answer) return { status: 500, body: answer.error };
  return { status: 200, body: (answer.answer as { leader: string }).leader };
}

async function healthReply(agent: AgentState): Promise<Reply> {
  const { raft } = agent;
  if (raft !== undefined) {
    const answer = await raft.leader(false);
    const ok = 'leader' in answer;
    return { status: ok ? 200 : 500, body: { server: { ok, message: ok ? 'ok' : answer.error } } };
  }
  // A client's part checks only that it knows a server: no RPC (agent_endpoint.go).
  const ok = agent.config.rpcServers.length > 0;
  return { status: ok ? 200 : 500, body: { client: { ok, message: ok ? 'ok' : 'no known servers' } } };
}

/** Status.Peers and the Raft configuration: a server's own view; a client asks a server. */
async function raftReadReply(agent: AgentState, op: 'peers' | 'configuration'): Promise<Reply> {
  const { raft } = agent;
  if (raft !== undefined) {
    return { status: 200, body: op === 'peers' ? raft.peers() : raft.configurationReply() };
  }
  const answer = await clientRpc(agent, op);
  return 'error' in answer ? { status: 500, body: answer.error } : { status: 200, body: answer.answer };
}

/** The agent's HTTP API, as far as the rotation calls it. */
export async function route(agent: AgentState, request: IncomingMessage): Promise<Reply> {
  const url = new URL(request.url ?? '/', 'https://agent');
  const path = url.pathname;
  if (path === '/v1/agent/health') return healthReply(agent);
  if (path === '/v1/status/leader') return leaderReply(agent, url.searchParams.has('stale'));
  if (path === '/v1/status/peers') return raftReadReply(agent, 'peers');
  if (path === '/v1/operator/raft/configuration') return raftReadReply(agent, 'configuration');
  if (path === '/v1/agent/members') return members(agent.gossip, agent.config, request);
  if (path.startsWith('/v1/agent/keyring/'))
    return keyring(agent.gossip, agent.config.acl, path.slice('/v1/agent/keyring/'.length), request);
  return { status: 404, body: 'Invalid URL path' };
}
