// A small, deterministic model of the Raft cluster Nomad's servers form. It is not Raft (no log, no
// persisted term or configuration index), but it answers the questions the rotation asks the way Raft would:
//
// - Links. Every server probes every configured server over RPC (mutual TLS with its current files)
//   each probe interval. A link is up while probes succeeded in *both* directions within the contact
//   window (RAFT_CONTACT_PROBES intervals), which stands for Raft's heartbeat and election timeouts:
//   a certificate the peer does not trust, or a stopped peer, takes the link down.
// - Leadership. A leader holds only while it has links to a majority of the voters (itself counted),
//   as a Raft leader steps down when it cannot reach a quorum. A follower keeps its leader while the
//   link to it is up and it still claims to lead, and never votes while it has one: a sitting
//   leader is never displaced (Raft's pre-vote and leader stickiness).
// - Election. A voter without a leader stands only if it and the leaderless voters it has links to
//   form a majority and it has the lowest node name among them, after a contact window without a
//   leader (the election timeout). That replaces Raft's randomised timeouts with a rule that gives
//   the same result without split votes. It asks each of them for a
//   vote in a term above every term it has seen; a majority of grants makes it leader.
// - Bootstrap. A server without Raft state (no file in its data dir) has an empty configuration
//   and waits until serf shows all bootstrap_expect servers alive, as Nomad does; only then is
//   there a configuration with every server a voter, which it keeps across restarts.
// - Configuration. The leader owns the voter/non-voter list and the autopilot settings
//   (CleanupDeadServers); followers copy both from the leader. Autopilot on the leader removes
//   voters whose serf member is `failed` or `left` (at most (voters-1)/2) while CleanupDeadServers
//   is on, adds an alive server that is missing as a non-voter, and promotes a non-voter once it has
//   been healthy for server_stabilization_time. "Failed" is serf's own verdict, as in Nomad, not this
//   model's links: a server cut off by TLS alone stays in the configuration, one cut off from gossip
//   is pruned. /v1/status/peers lists the whole configuration, non-voters included, as Nomad's
//   Status.Peers does.
// - Health. Each round the leader updates autopilot's state (./autopilot.ts) from its serf agent
//   and what its probes brought back (a server's term, configuration index and last contact with
//   its leader). A server the leader cannot reach keeps its last stats, as raft-autopilot keeps
//   them, so it turns unhealthy only once serf marks it failed.
// - Forwarding. A follower forwards Status.Leader (health, /v1/status/leader) and the operator calls
//   over RPC to the leader, which its serf agent must show alive, as Nomad looks the leader up among
//   its serf members.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { type AgentBehaviour, RAFT_CONTACT_PROBES } from './agent-options';
import {
  type AutopilotSettings,
  type AutopilotState,
  configurationReply,
  healthReply,
  nextAutopilotState,
  type ServerStats,
} from './autopilot';
import type { RpcRequest } from './rpc';

export interface RaftMember {
  /** The server's node name: its identity in the model. */
  id: string;
  rpcPort: number;
  /** Its serf member name (`<node name>.<region>`), which autopilot looks up. */
  serfName: string;
}

export interface RaftServerEntry {
  id: string;
  address: string;
  voter: boolean;
}

export interface RaftConfiguration {
  index: number;
  servers: RaftServerEntry[];
  /** Absent until the cluster is bootstrapped. */
  autopilot?: AutopilotSettings;
}

/** What a server tells a peer on every probe, in both directions. */
interface RaftView {
  term: number;
  leader: string | null;
  configuration: RaftConfiguration;
}

/** A probe's answer also carries what Status.RaftStats reports, for the leader's autopilot. */
interface ProbeAnswer extends RaftView {
  /** Raft's last_contact: 0 on a leader, and for "never", as Nomad parses it. */
  lastContactMs: number;
}

interface Link {
  /** When a probe this server sent was last answered. */
  answeredAt: number;
  /** When a probe from the peer last arrived. */
  probedAt: number;
  view?: RaftView;
}

export interface RpcError {
  error: string;
}

export type LeaderAnswer = { leader: string } | RpcError;

export interface RaftOptions {
  self: RaftMember;
  /** Every configured server, this one included: bootstrap_expect is their number. */
  members: RaftMember[];
  behaviour: AgentBehaviour;
  /** An RPC to a server with this server's current files. */
  call: (member: RaftMember, request: RpcRequest, timeoutMs: number) => Promise<unknown>;
  /**
   * Stands for the Raft state in `<data_dir>/server/raft`: present once this server has a
   * configuration (bootstrapped, or received from a leader), and holding the latest one.
   */
  raftStateFile: string;
  /** serf member name → status (alive, failed, left…), from this server's own serf agent. */
  serfStatuses: () => Promise<Map<string, string>>;
  log: (message: string) => void;
}

const NO_LEADER = 'No cluster leader';
const HOLD_RETRY_MS = 50;
/** Nomad's autopilot default: dead servers are removed. */
const CLEANUP_DEAD_SERVERS = true;

const rpcAddress = (port: number) => `127.0.0.1:${port}`;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A forwarded call that reached a server without leadership: the caller holds and retries. */
const isNoLeader = (answer: unknown) =>
  typeof answer === 'object' && answer !== null && (answer as Partial<RpcError>).error === NO_LEADER;

export class RaftModel {
  #term = 0;
  #votedTerm = 0;
  #leader: string | null = null;
  #leaderlessSince = Date.now();
  #configuration: RaftConfiguration;
  readonly #links = new Map<string, Link>();
  /** The leader this server last heard from (a probe from it arrived), and when. */
  #leaderContact: { id: string; at: number } | undefined;
  /** The leader's autopilot state, reset with every leadership won, as raft-autopilot's is. */
  #autopilotState: AutopilotState | undefined;
  #lastAutopilotAt = 0;
  #running = false;
  #loop: Promise<void> = Promise.resolve();

  constructor(readonly options: RaftOptions) {
    this.#configuration = existsSync(options.raftStateFile)
      ? (JSON.parse(readFileSync(options.raftStateFile, 'utf8')) as RaftConfiguration)
      : { index: 0, servers: [] };
  }

  /** What bootstrap_expect writes: every expected server a voter, autopilot with its defaults. */
  #bootstrapConfiguration(): RaftConfiguration {
    return {
      index: 1,
      servers: this.options.members.map((member) => ({
        id: member.id,
        address: rpcAddress(member.rpcPort),
        voter: true,
      })),
      autopilot: { cleanupDeadServers: CLEANUP_DEAD_SERVERS, createIndex: 1, modifyIndex: 1 },
    };
  }

  /**
   * The configuration is Raft state on disk: once a server has one, a restart keeps it. Written
   * whole or not at all, as a killed agent must not leave half a state behind.
   */
  #adopt(configuration: RaftConfiguration): void {
    const file = this.options.raftStateFile;
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    writeFileSync(`${file}.tmp`, JSON.stringify(configuration));
    renameSync(`${file}.tmp`, file);
    this.#configuration = configuration;
  }

  /**
   * Nomad's maybeBootstrap: a server without Raft state waits until its serf agent shows
   * bootstrap_expect servers alive, then starts the cluster with all of them as voters.
   */
  async #maybeBootstrap(): Promise<void> {
    let statuses: Map<string, string>;
    try {
      statuses = await this.options.serfStatuses();
    } catch {
      return;
    }
    const alive = this.options.members.filter((member) => statuses.get(member.serfName) === 'alive');
    if (alive.length < this.options.members.length || this.#configuration.index > 0) return;
    this.options.log(`nomad: found expected number of peers (${alive.length}), bootstrapping the cluster`);
    this.#adopt(this.#bootstrapConfiguration());
    this.#leaderlessSince = Date.now();
  }

  get #windowMs(): number {
    return this.options.behaviour.raftProbeIntervalMs * RAFT_CONTACT_PROBES;
  }

  get #self(): string {
    return this.options.self.id;
  }

  start(): void {
    this.#running = true;
    this.#loop = (async () => {
      while (this.#running) {
        await this.#round();
        await sleep(this.options.behaviour.raftProbeIntervalMs);
      }
    })();
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.#loop;
  }

  /** `/v1/status/peers`: every server of this server's Raft configuration, voter or not. */
  peers(): string[] {
    return this.#configuration.servers.map((server) => server.address);
  }

  /** `/v1/operator/raft/configuration`, in Nomad's shape. */
  configurationReply(): unknown {
    return {
      Index: this.#configuration.index,
      Servers: this.#configuration.servers.map((server) => ({
        Address: server.address,
        ID: server.address,
        Leader: server.id === this.#leader,
        Node: this.#member(server.id).serfName,
        RaftProtocol: '3',
        Voter: server.voter,
      })),
    };
  }

  /** The leader this server knows from its own state (`?stale=true`), or "" as Nomad answers then. */
  staleLeader(): string {
    return this.#leader === null ? '' : this.#addressOf(this.#leader);
  }

  /** Status.Leader: the leader's RPC address, from the leader (see forward). */
  leader(forwarded: boolean): Promise<LeaderAnswer> {
    return this.forward({ op: 'leader', forwarded }, () => ({ leader: this.#addressOf(this.#self) }));
  }

  /**
   * A call that only the leader answers, as Nomad forwards it: the leader runs `answerHere`; a
   * follower sends the request on to its leader over RPC; without a leader the call is held up to
   * RPCHoldTimeout for one to appear. A forwarded call is answered from local state only, so a hold
   * is never nested. Whatever the leader answers, an error included, is final; only "no leader" and
   * an unreachable leader are retried. Nomad finds the leader's RPC address among the servers its
   * serf agent knows as alive, so a follower whose gossip is cut off has no leader to forward to
   * (nomad/rpc.go, nomad/status_endpoint.go).
   */
  async forward<Answer>(request: RpcRequest, answerHere: () => Answer): Promise<Answer | RpcError> {
    const forwarded = request.forwarded === true;
    const deadline = Date.now() + this.options.behaviour.rpcHoldTimeoutMs;
    let failure: string | undefined;
    for (;;) {
      const leader = this.#leader;
      if (leader === this.#self) return answerHere();
      if (leader !== null && !forwarded && (await this.#aliveInSerf(leader))) {
        try {
          const answer = (await this.options.call(
            this.#member(leader),
            { ...request, forwarded: true },
            this.options.behaviour.rpcHoldTimeoutMs,
          )) as Answer | RpcError;
          if (!isNoLeader(answer)) return answer;
          failure = NO_LEADER;
        } catch (error) {
          failure = `rpc error: failed to get conn: ${(error as Error).message}`;
        }
      }
      if (forwarded || Date.now() >= deadline) {
        return { error: this.#leader === null ? NO_LEADER : (failure ?? NO_LEADER) };
      }
      await sleep(HOLD_RETRY_MS);
    }
  }

  /** Operator.ServerHealth on the leader: autopilot's latest state. */
  autopilotHealth(): unknown {
    return healthReply(this.#autopilotState, this.options.behaviour.nomadVersion);
  }

  /** Operator.AutopilotGetConfiguration from this server's Raft state. */
  autopilotConfiguration(): { reply: unknown } | RpcError {
    const settings = this.#configuration.autopilot;
    if (settings === undefined) return { error: 'autopilot config not initialized yet' };
    return {
      reply: configurationReply(settings, {
        lastContactThresholdMs: this.#windowMs,
        serverStabilizationTimeMs: this.options.behaviour.serverStabilizationTimeMs,
      }),
    };
  }

  /** Operator.AutopilotSetConfiguration on the leader: a new configuration entry followers copy. */
  setAutopilotConfiguration(cleanupDeadServers: boolean): void {
    const { index, autopilot } = this.#configuration;
    this.#adopt({
      ...this.#configuration,
      index: index + 1,
      autopilot: {
        cleanupDeadServers,
        createIndex: autopilot?.createIndex ?? index + 1,
        modifyIndex: index + 1,
      },
    });
  }

  async #aliveInSerf(id: string): Promise<boolean> {
    try {
      return (await this.options.serfStatuses()).get(this.#member(id).serfName) === 'alive';
    } catch {
      return false;
    }
  }

  /** An RPC from a peer server. */
  handle(request: RpcRequest): unknown {
    const from = String(request.from);
    if (request.op === 'probe') {
      const now = Date.now();
      const link = this.#link(from);
      link.probedAt = now;
      this.#observe(from, request.view as RaftView);
      return this.#probeAnswer(from, now);
    }
    if (request.op === 'vote') return { granted: this.#grantVote(from, Number(request.term)) };
    throw new Error(`unknown operation ${request.op}`);
  }

  #view(): RaftView {
    return { term: this.#term, leader: this.#leader, configuration: this.#configuration };
  }

  /**
   * The probe from the leader stands for its heartbeat: the contact reported is the time since the
   * previous one, and a first contact (a new leader, or a restarted server) reports 0.
   */
  #probeAnswer(from: string, now: number): ProbeAnswer {
    const contact = this.#leaderContact;
    const lastContactMs =
      this.#leader === this.#self || contact === undefined || contact.id !== from ? 0 : now - contact.at;
    if (from === this.#leader) this.#leaderContact = { id: from, at: now };
    return { ...this.#view(), lastContactMs };
  }

  #link(id: string): Link {
    let link = this.#links.get(id);
    if (link === undefined) {
      link = { answeredAt: 0, probedAt: 0 };
      this.#links.set(id, link);
    }
    return link;
  }

  #linked(id: string): boolean {
    if (id === this.#self) return true;
    const link = this.#links.get(id);
    const since = Date.now() - this.#windowMs;
    return link !== undefined && link.answeredAt >= since && link.probedAt >= since;
  }

  #member(id: string): RaftMember {
    const member = this.options.members.find((candidate) => candidate.id === id);
    if (member === undefined) throw new Error(`unknown server ${id}`);
    return member;
  }

  #addressOf(id: string): string {
    return rpcAddress(this.#member(id).rpcPort);
  }

  #voters(): string[] {
    return this.#configuration.servers.filter((server) => server.voter).map((server) => server.id);
  }

  #majority(): number {
    return Math.floor(this.#voters().length / 2) + 1;
  }

  /** A peer's view, from its probe or its answer to ours. */
  #observe(from: string, view: RaftView): void {
    this.#link(from).view = view;
    if (view.term > this.#term && this.#leader === this.#self) this.#stepDown(`saw term ${view.term}`);
    this.#term = Math.max(this.#term, view.term);
    // A leader that restarted within the contact window is reachable but leads no more: without
    // its heartbeats a Raft follower times out and elects anew.
    if (from === this.#leader && view.leader !== from) this.#loseLeader(`leader ${from} no longer leads`);
    if (view.leader !== from || !this.#linked(from) || this.#leader === this.#self) return;
    if (this.#leader !== from) this.options.log(`nomad: following leader ${from} term=${view.term}`);
    this.#leader = from;
    if (view.configuration.index > this.#configuration.index) this.#adopt(view.configuration);
  }

  #grantVote(candidate: string, term: number): boolean {
    const voter = this.#voters().includes(this.#self);
    if (!voter || this.#leader !== null || term <= this.#votedTerm || !this.#linked(candidate)) return false;
    this.#votedTerm = term;
    this.#term = Math.max(this.#term, term);
    return true;
  }

  #stepDown(reason: string): void {
    this.#loseLeader(`cluster leadership lost (${reason})`);
  }

  #loseLeader(message: string): void {
    this.#leader = null;
    this.#leaderlessSince = Date.now();
    this.options.log(`nomad: ${message}`);
  }

  async #round(): Promise<void> {
    const timeoutMs = this.#windowMs / 2;
    // Status.RaftStats by server ID (its RPC address), as autopilot's state keys them.
    const fetched = new Map<string, ServerStats>();
    await Promise.all(
      this.options.members
        .filter((member) => member.id !== this.#self)
        .map(async (member) => {
          try {
            const answer = (await this.options.call(
              member,
              { op: 'probe', from: this.#self, view: this.#view() },
              timeoutMs,
            )) as ProbeAnswer;
            this.#link(member.id).answeredAt = Date.now();
            this.#observe(member.id, answer);
            fetched.set(rpcAddress(member.rpcPort), {
              lastContactMs: answer.lastContactMs,
              lastTerm: answer.term,
              lastIndex: answer.configuration.index,
            });
          } catch {
            // An unanswered probe is what the contact window measures.
          }
        }),
    );
    if (!this.#running) return;
    if (this.#configuration.index === 0) await this.#maybeBootstrap();
    const linkedVoters = this.#voters().filter((id) => this.#linked(id)).length;
    if (this.#leader === this.#self && linkedVoters < this.#majority()) {
      this.#stepDown(`reaches ${linkedVoters} of ${this.#voters().length} voters`);
    } else if (this.#leader !== null && this.#leader !== this.#self && !this.#linked(this.#leader)) {
      this.#loseLeader(`lost contact with leader ${this.#leader}`);
    }
    if (this.#leader === null) await this.#maybeStand();
    if (this.#leader === this.#self) await this.#autopilot(fetched);
  }

  async #maybeStand(): Promise<void> {
    // The election timeout: a full contact window without a leader, so that every peer that is up
    // has linked and the lowest-named of them, not the quickest, stands.
    if (Date.now() - this.#leaderlessSince < this.#windowMs) return;
    if (!this.#voters().includes(this.#self)) return;
    const group = [
      this.#self,
      ...this.#voters().filter(
        (id) => id !== this.#self && this.#linked(id) && this.#links.get(id)?.view?.leader === null,
      ),
    ].sort();
    if (group.length < this.#majority() || group[0] !== this.#self) return;
    const peerTerms = [...this.#links.values()].map((link) => link.view?.term ?? 0);
    const term = Math.max(this.#term, this.#votedTerm, ...peerTerms) + 1;
    this.#term = term;
    this.#votedTerm = term;
    const votes = await Promise.all(
      group
        .filter((id) => id !== this.#self)
        .map(async (id) => {
          try {
            const answer = (await this.options.call(
              this.#member(id),
              { op: 'vote', from: this.#self, term },
              this.#windowMs / 2,
            )) as { granted: boolean };
            return answer.granted;
          } catch {
            return false;
          }
        }),
    );
    const tally = 1 + votes.filter(Boolean).length;
    if (tally < this.#majority() || this.#leader !== null || term !== this.#term) return;
    this.#leader = this.#self;
    this.#autopilotState = undefined;
    this.options.log(`raft: election won: term=${term} tally=${tally}`);
    this.options.log('nomad: cluster leadership acquired');
  }

  /** The health update every round, and the reconciliation every autopilot interval. */
  async #autopilot(fetched: Map<string, ServerStats>): Promise<void> {
    let statuses: Map<string, string>;
    try {
      statuses = await this.options.serfStatuses();
    } catch {
      return;
    }
    if (this.#leader !== this.#self) return;
    const now = Date.now();
    this.#autopilotState = nextAutopilotState({
      now,
      servers: this.#configuration.servers.map((server) => ({
        id: server.address,
        address: server.address,
        name: this.#member(server.id).serfName,
        voter: server.voter,
      })),
      leaderId: this.#addressOf(this.#self),
      serfStatuses: statuses,
      fetched,
      leaderStats: { lastContactMs: 0, lastTerm: this.#term, lastIndex: this.#configuration.index },
      lastContactThresholdMs: this.#windowMs,
      previous: this.#autopilotState,
    });
    if (now - this.#lastAutopilotAt < this.options.behaviour.autopilotIntervalMs) return;
    this.#lastAutopilotAt = now;
    this.#reconcile(statuses, now);
  }

  #reconcile(statuses: Map<string, string>, now: number): void {
    const status = (id: string) => statuses.get(this.#member(id).serfName);
    let servers = this.#configuration.servers;
    if (this.#configuration.autopilot?.cleanupDeadServers ?? CLEANUP_DEAD_SERVERS) {
      servers = this.#withoutDeadVoters(servers, status);
    }
    for (const member of this.options.members) {
      if (servers.some((server) => server.id === member.id) || status(member.id) !== 'alive') continue;
      servers = [...servers, { id: member.id, address: rpcAddress(member.rpcPort), voter: false }];
      this.options.log(`nomad: adding server ${member.id} as a non-voter`);
    }
    servers = servers.map((server) => {
      const health = this.#autopilotState?.servers.find((entry) => entry.id === server.address);
      if (server.voter || health === undefined || !health.healthy) return server;
      if (now - health.stableSince < this.options.behaviour.serverStabilizationTimeMs) return server;
      this.options.log(`autopilot: promoting server ${server.id} to voter`);
      return { ...server, voter: true };
    });
    if (JSON.stringify(servers) !== JSON.stringify(this.#configuration.servers)) {
      this.#adopt({ ...this.#configuration, index: this.#configuration.index + 1, servers });
    }
  }

  /** raft-autopilot's pruneDeadServers: failed or left voters go, at most (voters-1)/2 of them. */
  #withoutDeadVoters(
    servers: RaftServerEntry[],
    status: (id: string) => string | undefined,
  ): RaftServerEntry[] {
    const voters = servers.filter((server) => server.voter);
    let removable = Math.floor((voters.length - 1) / 2);
    let remaining = servers;
    for (const voter of voters) {
      const dead = voter.id !== this.#self && ['failed', 'left'].includes(status(voter.id) ?? '');
      if (!dead) continue;
      if (removable === 0) {
        this.options.log(`autopilot: will not remove dead server ${voter.id}: that would risk quorum`);
        continue;
      }
      removable -= 1;
      remaining = remaining.filter((server) => server.id !== voter.id);
      this.options.log(`autopilot: removing dead server ${voter.id}`);
    }
    return remaining;
  }
}
