import type { IncomingMessage } from 'node:http';
import { cleanupFromBody } from './autopilot';
import {
  type AclCapability,
  aclAllows,
  type GossipAgent,
  INVALID_METHOD,
  keyring,
  members,
  PERMISSION_DENIED,
  readBody,
  requestToken,
} from './gossip';
import type { RaftModel, RpcError } from './raft';
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

/** The operator RPCs the autopilot endpoints make, and what each asks of the token. */
const OPERATOR_CAPABILITIES: Record<string, AclCapability> = {
  'autopilot-health': 'operator:read',
  'autopilot-get-configuration': 'operator:read',
  'autopilot-set-configuration': 'operator:write',
};

type OperatorAnswer = { reply: unknown } | RpcError;

const isRpcError = (answer: unknown): answer is RpcError =>
  typeof answer === 'object' && answer !== null && !Array.isArray(answer) && 'error' in answer;

/** A server's answer to an RPC from a server or (Status and Operator reads only) a client. */
export async function answerRpc(agent: AgentState, request: RpcRequest): Promise<unknown> {
  const { raft } = agent;
  if (raft === undefined) throw new Error('not a server');
  if (request.op === 'leader') return raft.leader(request.forwarded === true);
  if (request.op === 'peers') return raft.peers();
  if (request.op === 'configuration') return raft.configurationReply();
  if (Object.hasOwn(OPERATOR_CAPABILITIES, request.op)) return answerOperator(agent, raft, request);
  return raft.handle(request);
}

/**
 * Nomad's Operator endpoints: forwarded to the leader, which judges the token only then, so without
 * a leader the answer is "No cluster leader" whatever the token (nomad/operator_endpoint.go). A
 * stale configuration read is answered by the server asked.
 */
function answerOperator(agent: AgentState, raft: RaftModel, request: RpcRequest): Promise<OperatorAnswer> {
  const capability = OPERATOR_CAPABILITIES[request.op]!;
  const answerHere = (): OperatorAnswer => {
    if (!aclAllows(agent.config.acl, String(request.token ?? ''), capability))
      return { error: PERMISSION_DENIED };
    if (request.op === 'autopilot-health') return { reply: raft.autopilotHealth() };
    if (request.op === 'autopilot-get-configuration') return raft.autopilotConfiguration();
    raft.setAutopilotConfiguration(request.cleanupDeadServers === true);
    return { reply: true };
  };
  if (request.op === 'autopilot-get-configuration' && request.stale === true)
    return Promise.resolve(answerHere());
  return raft.forward(request, answerHere);
}

/** Only these are worth another server: the next one may have a leader, or be reachable. */
const retryable = (error: string) => error === NO_LEADER || error.startsWith('rpc error');

/**
 * A client's RPC: its current agent certificate to one server after another, as Nomad's client
 * tries the next server when one cannot be reached or has no leader. Holding for a leader happens
 * on the server.
 */
async function clientRpc(agent: AgentState, request: RpcRequest): Promise<{ answer: unknown } | RpcError> {
  const { config } = agent;
  let failure = NO_LEADER;
  for (const server of config.rpcServers) {
    try {
      const answer = await rpcCall(server.rpcPort, request, {
        files: agent.files(),
        region: config.region,
        timeoutMs: config.behaviour.rpcHoldTimeoutMs + 2_000,
      });
      if (!isRpcError(answer)) return { answer };
      if (!retryable(answer.error)) return answer;
      failure = answer.error;
    } catch {
      // Unreachable, or it refused our certificate: the next server, as Nomad's client does.
    }
  }
  return { error: failure };
}

/** Nomad's HTTP wrapper: an RPC error ending in "Permission denied" is a 403, any other a 500. */
function errorReply(error: string): Reply {
  if (error.endsWith(PERMISSION_DENIED)) return { status: 403, body: PERMISSION_DENIED };
  return { status: 500, body: error };
}

async function leaderReply(agent: AgentState, stale: boolean): Promise<Reply> {
  const { raft } = agent;
  if (raft !== undefined && stale) return { status: 200, body: raft.staleLeader() };
  if (raft !== undefined) {
    const answer = await raft.leader(false);
    return 'leader' in answer ? { status: 200, body: answer.leader } : { status: 500, body: answer.error };
  }
  const answer = await clientRpc(agent, { op: 'leader' });
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
  const answer = await clientRpc(agent, { op });
  return 'error' in answer ? { status: 500, body: answer.error } : { status: 200, body: answer.answer };
}

/** An operator RPC: a server answers (forwarding to its leader); a client asks a server. */
async function operatorCall(agent: AgentState, request: RpcRequest): Promise<OperatorAnswer> {
  const { raft } = agent;
  if (raft !== undefined) return answerOperator(agent, raft, request);
  const answer = await clientRpc(agent, request);
  return 'error' in answer ? answer : (answer.answer as OperatorAnswer);
}

/** `/v1/operator/autopilot/health`: 429 with the same body while anything is unhealthy. */
async function autopilotHealthReply(agent: AgentState, request: IncomingMessage): Promise<Reply> {
  if (request.method !== 'GET') return { status: 404, body: INVALID_METHOD };
  const answer = await operatorCall(agent, { op: 'autopilot-health', token: requestToken(request) });
  if ('error' in answer) return errorReply(answer.error);
  const health = answer.reply as { Healthy: boolean };
  return { status: health.Healthy ? 200 : 429, body: health };
}

/**
 * `/v1/operator/autopilot/configuration`: GET reads it (`?stale` from the server asked), PUT replaces
 * it and answers `true`. The body is decoded before any RPC, so a bad one is a 400 whatever the token.
 */
async function autopilotConfigurationReply(
  agent: AgentState,
  request: IncomingMessage,
  url: URL,
): Promise<Reply> {
  const token = requestToken(request);
  let call: RpcRequest;
  if (request.method === 'GET') {
    call = { op: 'autopilot-get-configuration', token, stale: url.searchParams.has('stale') };
  } else if (request.method === 'PUT') {
    const decoded = cleanupFromBody(await readBody(request));
    if ('error' in decoded) return { status: 400, body: `Error parsing autopilot config: ${decoded.error}` };
    call = { op: 'autopilot-set-configuration', token, cleanupDeadServers: decoded.cleanupDeadServers };
  } else {
    return { status: 404, body: INVALID_METHOD };
  }
  const answer = await operatorCall(agent, call);
  return 'error' in answer ? errorReply(answer.error) : { status: 200, body: answer.reply };
}

/** The agent's HTTP API, as far as the rotation calls it. */
export async function route(agent: AgentState, request: IncomingMessage): Promise<Reply> {
  const url = new URL(request.url ?? '/', 'https://agent');
  const path = url.pathname;
  if (path === '/v1/agent/health') return healthReply(agent);
  if (path === '/v1/status/leader') return leaderReply(agent, url.searchParams.has('stale'));
  if (path === '/v1/status/peers') return raftReadReply(agent, 'peers');
  if (path === '/v1/operator/raft/configuration') return raftReadReply(agent, 'configuration');
  if (path === '/v1/operator/autopilot/health') return autopilotHealthReply(agent, request);
  if (path === '/v1/operator/autopilot/configuration')
    return autopilotConfigurationReply(agent, request, url);
  if (path === '/v1/agent/members') return members(agent.gossip, agent.config, request);
  if (path.startsWith('/v1/agent/keyring/'))
    return keyring(agent.gossip, agent.config.acl, path.slice('/v1/agent/keyring/'.length), request);
  return { status: 404, body: 'Invalid URL path' };
}
