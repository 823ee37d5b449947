// Autopilot's health of the servers as the leader computes it (hashicorp/raft-autopilot v0.1.6,
// state.go nextStateWithInputs and buildServerState, types.go isHealthy) and the shapes Nomad
// serves at /v1/operator/autopilot/health and /configuration (nomad/autopilot.go GetClusterHealth,
// command/agent/operator_endpoint.go, api/operator_autopilot.go). What the model feeds in: each
// server's stats come from the leader's probe answers; the model has no Raft log, so a server's
// last index is its configuration index and no server ever trails by MaxTrailingLogs.

/** A server's Status.RaftStats, as the leader last fetched them. */
export interface ServerStats {
  /** Raft's last_contact: how long before the fetch the server last heard from its leader. */
  lastContactMs: number;
  lastTerm: number;
  lastIndex: number;
}

/** The autopilot settings the leader keeps in the Raft state (Nomad's AutopilotConfig). */
export interface AutopilotSettings {
  cleanupDeadServers: boolean;
  createIndex: number;
  modifyIndex: number;
}

/** Nomad's MaxTrailingLogs default: reported only, as the model has no log to trail. */
const MAX_TRAILING_LOGS = 250;

/** Autopilot's NodeStatus as Nomad reports it back as SerfStatus. */
type NodeStatus = 'alive' | 'failed' | 'left' | 'none';

export interface ServerState {
  id: string;
  address: string;
  /** The serf member name, `<node name>.<region>`. */
  name: string;
  voter: boolean;
  leader: boolean;
  nodeStatus: NodeStatus;
  stats: ServerStats;
  healthy: boolean;
  stableSince: number;
}

export interface AutopilotState {
  servers: ServerState[];
  healthy: boolean;
  failureTolerance: number;
  leader: string;
  voters: string[];
}

export interface RaftServer {
  id: string;
  address: string;
  name: string;
  voter: boolean;
}

export interface StateInputs {
  now: number;
  /** The Raft configuration: voters and non-voters. */
  servers: RaftServer[];
  leaderId: string;
  /** serf member name → status, from the leader's serf agent. */
  serfStatuses: Map<string, string>;
  /** What this update's fetches brought; a server missing here keeps its previous stats. */
  fetched: Map<string, ServerStats>;
  leaderStats: ServerStats;
  lastContactThresholdMs: number;
  previous: AutopilotState | undefined;
}

/**
 * Nomad's autopilotServerFromMetadata: `leaving` counts as alive so that autopilot does not prune
 * a server early; a server serf does not know is taken as left.
 */
function nodeStatus(serfStatus: string | undefined): NodeStatus {
  if (serfStatus === 'alive' || serfStatus === 'leaving') return 'alive';
  if (serfStatus === 'failed' || serfStatus === 'left') return serfStatus;
  return serfStatus === undefined ? 'left' : 'none';
}

function isHealthy(
  server: Pick<ServerState, 'nodeStatus' | 'stats'>,
  leaderStats: ServerStats,
  thresholdMs: number,
): boolean {
  // Before bootstrap nothing is healthy.
  if (leaderStats.lastIndex === 0 || leaderStats.lastTerm === 0) return false;
  if (server.nodeStatus !== 'alive') return false;
  if (server.stats.lastContactMs > thresholdMs || server.stats.lastContactMs < 0) return false;
  return server.stats.lastTerm === leaderStats.lastTerm;
}

const requiredQuorum = (voters: number) => Math.floor(voters / 2) + 1;

/**
 * raft-autopilot's ServerLessThan: the leader first, then voters, healthy before unhealthy; among
 * equals the longer stable first (healthy) or last (unhealthy), then by ID.
 */
function serverOrder(a: ServerState, b: ServerState): number {
  if (a.leader !== b.leader) return a.leader ? -1 : 1;
  if (a.voter !== b.voter) return a.voter ? -1 : 1;
  if (a.healthy !== b.healthy) return a.healthy ? -1 : 1;
  if (a.stableSince !== b.stableSince) {
    return a.stableSince < b.stableSince === a.healthy ? -1 : 1;
  }
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * The next autopilot state. A server whose stats could not be fetched keeps the ones it had, so a
 * server that stops answering stays healthy until serf marks it failed, as in raft-autopilot.
 * StableSince moves only when a server's health changes or it is new to the state.
 */
export function nextAutopilotState(inputs: StateInputs): AutopilotState {
  const zeroStats: ServerStats = { lastContactMs: 0, lastTerm: 0, lastIndex: 0 };
  const servers = inputs.servers.map((server): ServerState => {
    const previous = inputs.previous?.servers.find((entry) => entry.id === server.id);
    const leader = server.id === inputs.leaderId;
    const stats = leader
      ? inputs.leaderStats
      : (inputs.fetched.get(server.id) ?? previous?.stats ?? zeroStats);
    const status = nodeStatus(inputs.serfStatuses.get(server.name));
    const healthy = isHealthy(
      { nodeStatus: status, stats },
      inputs.leaderStats,
      inputs.lastContactThresholdMs,
    );
    return {
      ...server,
      leader,
      nodeStatus: status,
      stats,
      healthy,
      stableSince: previous !== undefined && previous.healthy === healthy ? previous.stableSince : inputs.now,
    };
  });
  servers.sort(serverOrder);
  const voters = servers.filter((server) => server.voter);
  const healthyVoters = voters.filter((server) => server.healthy).length;
  return {
    servers,
    // Any unhealthy server, a non-voter too, makes the cluster unhealthy.
    healthy: servers.every((server) => server.healthy),
    failureTolerance: Math.max(0, healthyVoters - requiredQuorum(voters.length)),
    leader: inputs.leaderId,
    voters: voters.map((server) => server.id),
  };
}

/** Go's time.Duration.String() for whole milliseconds: "0s", "150ms", "1.5s", "1m0s". */
export function goDuration(ms: number): string {
  if (ms === 0) return '0s';
  if (Math.abs(ms) < 1_000) return `${ms}ms`;
  const hours = Math.floor(ms / 3_600_000);
  const minutes = Math.floor(ms / 60_000) % 60;
  const seconds = `${(ms % 60_000) / 1_000}s`;
  if (hours > 0) return `${hours}h${minutes}m${seconds}`;
  return minutes > 0 ? `${minutes}m${seconds}` : seconds;
}

/** Nomad's StableSince: rounded to the second, in UTC, as Go encodes a time.Time. */
function stableSince(ms: number): string {
  return new Date(Math.round(ms / 1_000) * 1_000).toISOString().replace('.000Z', 'Z');
}

/**
 * api.OperatorHealthReply. Before the leader's first autopilot update the state is empty, as
 * raft-autopilot's is: unhealthy, no leader, and Servers null.
 */
export function healthReply(state: AutopilotState | undefined, version: string): unknown {
  if (state === undefined) {
    return { Healthy: false, FailureTolerance: 0, Servers: null, Leader: '', Voters: [] };
  }
  return {
    Healthy: state.healthy,
    FailureTolerance: state.failureTolerance,
    Servers: state.servers.map((server) => ({
      ID: server.id,
      Name: server.name,
      Address: server.address,
      SerfStatus: server.nodeStatus,
      Version: version,
      Leader: server.leader,
      LastContact: goDuration(server.stats.lastContactMs),
      LastTerm: server.stats.lastTerm,
      LastIndex: server.stats.lastIndex,
      Healthy: server.healthy,
      Voter: server.voter,
      StableSince: stableSince(server.stableSince),
    })),
    Leader: state.leader,
    Voters: state.voters,
  };
}

/**
 * api.AutopilotConfiguration. Only CleanupDeadServers is the cluster's own setting; the thresholds
 * are the model's (its contact window and the agent's server_stabilization_time) and the rest are
 * Nomad's defaults, which the model does not act on.
 */
export function configurationReply(
  settings: AutopilotSettings,
  timings: { lastContactThresholdMs: number; serverStabilizationTimeMs: number },
): unknown {
  return {
    CleanupDeadServers: settings.cleanupDeadServers,
    LastContactThreshold: goDuration(timings.lastContactThresholdMs),
    MaxTrailingLogs: MAX_TRAILING_LOGS,
    MinQuorum: 0,
    ServerStabilizationTime: goDuration(timings.serverStabilizationTimeMs),
    EnableRedundancyZones: false,
    DisableUpgradeMigration: false,
    EnableCustomUpgrades: false,
    CreateIndex: settings.createIndex,
    ModifyIndex: settings.modifyIndex,
  };
}

/**
 * Decodes a PUT body as encoding/json would into api.AutopilotConfiguration, keeping the one field
 * the model honours. The whole configuration is replaced, as in Nomad: a body without
 * CleanupDeadServers turns the cleanup off.
 */
export function cleanupFromBody(text: string): { cleanupDeadServers: boolean } | { error: string } {
  if (text === '') return { error: 'Request body is empty' };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    return { error: (error as Error).message };
  }
  if (parsed === null) return { cleanupDeadServers: false };
  if (typeof parsed !== 'object' || Array.isArray(parsed)) {
    return { error: 'json: cannot unmarshal non-object into Go value of type api.AutopilotConfiguration' };
  }
  // encoding/json matches field names case-insensitively.
  const value = Object.entries(parsed).find(([name]) => name.toLowerCase() === 'cleanupdeadservers')?.[1];
  if (value === undefined || value === null) return { cleanupDeadServers: false };
  if (typeof value !== 'boolean') {
    return {
      error: `json: cannot unmarshal ${typeof value} into Go struct field AutopilotConfiguration.CleanupDeadServers of type bool`,
    };
  }
  return { cleanupDeadServers: value };
}
