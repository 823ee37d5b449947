/**
 * How a Nomad stand-in behaves where real Nomad differs by version or where its timings are too slow
 * for tests. The fleet passes them into every node's stand-in config; the defaults are Nomad's.
 */
export interface AgentBehaviour {
  /**
   * Which reload behaviour to model (command/agent/command.go handleReload): from 1.10.1 (PR #25796) a reload error can end
   * the agent; 1.9.x and 1.10.0 never exit on SIGHUP.
   */
  nomadVersion: string;
  /** `tls.verify_https_client`: whether the HTTPS listener asks for (and requires) a client certificate. */
  verifyHttpsClient: boolean;
  /** RPCHoldTimeout: how long a forwarded RPC waits for a leader before "No cluster leader" (Nomad: 5 s). */
  rpcHoldTimeoutMs: number;
  /**
   * How often servers probe each other over RPC. A link counts as lost after RAFT_CONTACT_PROBES
   * probes without an answer, which stands for Raft's heartbeat/election timeout.
   */
  raftProbeIntervalMs: number;
  /** How often the leader's autopilot reconciles the Raft configuration with serf (Nomad: 10 s). */
  autopilotIntervalMs: number;
  /** autopilot `server_stabilization_time`: a non-voter's healthy time before promotion (Nomad: 10 s). */
  serverStabilizationTimeMs: number;
}

export const DEFAULT_AGENT_BEHAVIOUR: AgentBehaviour = {
  nomadVersion: '1.10.1',
  // The seed guide's agent configuration sets verify_https_client = true (Nomad's default is false).
  verifyHttpsClient: true,
  rpcHoldTimeoutMs: 5_000,
  raftProbeIntervalMs: 250,
  autopilotIntervalMs: 10_000,
  serverStabilizationTimeMs: 10_000,
};

/** A link to a peer is lost once this many probe intervals pass without a successful exchange. */
export const RAFT_CONTACT_PROBES = 4;

/** Whether a reload error ends the agent: Nomad 1.10.1 and later (commit c5c4272). */
export function exitsOnReloadError(version: string): boolean {
  const [major = 0, minor = 0, patch = 0] = version
    .replace(/^v/, '')
    .split(/[.-]/)
    .map((part) => Number.parseInt(part, 10) || 0);
  if (major !== 1) return major > 1;
  if (minor !== 10) return minor > 10;
  return patch >= 1;
}
