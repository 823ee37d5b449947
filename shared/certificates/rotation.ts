import { SsmCertificateCommands } from '../aws/certificate-commands';
import { SsmGossipCommands } from '../aws/gossip-commands';
import type { CommandGateway } from '../aws/ports';
import type { Clock } from '../clock';
import type { ClusterConfig } from '../config';
import { ConflictError, ValidationError } from '../errors';
import type { GossipKeyCustody } from '../gossip/custody';
import { ENABLE_SOFT_PARTITION, GOSSIP_ENABLE_PLAN, GossipEnablePlan } from '../gossip/enable';
import { serverView } from '../gossip/outputs';
import { GOSSIP_PLAN, type GossipClusterConfig, GossipPlan } from '../gossip/plan';
import { GOSSIP_REPAIR_PLAN, GossipRepairPlan } from '../gossip/repair';
import { followersFirst, GOSSIP_RESTART_PLAN, GossipRestartPlan } from '../gossip/restart';
import { type GossipStatusReport, gossipStatus, settledServers, stragglersIn } from '../gossip/status';
import { gossipsInClear } from '../gossip/verdicts';
import type { Logger } from '../logger';
import { recordAudit } from '../rollout/audit';
import { RolloutEngine } from '../rollout/engine';
import type { RolloutRecord, RolloutStatus } from '../rollout/model';
import type { CommandResult } from '../rollout/plan';
import type { RoutingKey } from '../rollout/routing';
import type { NodeRecord } from '../state/records';
import type { NodeChanges, NodeField, StateStore } from '../state/store';
import type { CertificateCommands } from './commands';
import { serverSetRefusal } from './identity';
import { CERTIFICATE_PLAN, CertificatePlan, certificateSettings, signedCarry } from './plan';
import { type InFlight, type Plan, type PlanRequest, planRotation, type Wave } from './planner';
import type {
  CertificateAuthority,
  EventPublisher,
  InventoryNode,
  NodeInventory,
  RotationTelemetry,
} from './ports';
import { expiringSoonHours, hoursUntil } from './renewal';

/** How long a status request waits for the servers' answers (a keyring query may wait 8 s for a silent server). */
const GOSSIP_STATUS_WAIT_MS = 60_000;

/** A claim whose command was never sent (a crash between the two writes) is released after this long. */
const ORPHANED_CLAIM_MS = 120_000;

export interface RotationDependencies {
  cluster: ClusterConfig;
  table: StateStore;
  inventory: NodeInventory;
  commands: CommandGateway;
  authority: CertificateAuthority;
  events: EventPublisher;
  telemetry: RotationTelemetry;
  logger: Logger;
  clock: Clock;
  /** The cluster's gossip key secret; with the cluster's `gossip` section, gossip rotations run too. */
  gossipKeys?: GossipKeyCustody;
}

/** Whether a gossip rotation ends with staged restarts of every server (gossip.restartAfterRotation). */
export type GossipRestartMode = 'none' | 'staged';

/** A gossip rotation as a manual request or the schedule started it. */
export interface StartedGossipRotation {
  rolloutId: string;
  servers: string[];
  restart: GossipRestartMode;
}

export interface RolloutRequest extends PlanRequest {
  reason: string;
  actor: string;
}

/** A rollout as a manual request started it. */
export interface StartedRollout {
  rolloutId: string;
  mode: 'reload' | 'restart';
  revokePrevious: boolean;
  waves: Wave[];
}

export interface TickReport {
  cluster: string;
  leaseHeld: boolean;
  inventory: number;
  reconciled: number;
  rolloutId?: string;
  rolloutStatus?: RolloutStatus;
  stoppedEarly: boolean;
}

/**
 * Certificate rotation for one cluster: the rollout engine running the certificate plan, plus what
 * only certificates need around it (inventory sync, the renewal schedule, instance lifecycle, the
 * fleet's expiry metrics).
 */
export class CertificateRotation {
  readonly #deps: RotationDependencies;
  readonly #engine: RolloutEngine;

  constructor(dependencies: RotationDependencies, commands?: CertificateCommands) {
    this.#deps = dependencies;
    const { cluster, table, telemetry, logger, clock } = dependencies;
    const plan = new CertificatePlan({
      cluster,
      nodes: table,
      audit: table,
      commands: commands ?? new SsmCertificateCommands(dependencies.commands, cluster),
      authority: dependencies.authority,
      inventory: dependencies.inventory,
      events: dependencies.events,
      telemetry,
      logger,
      clock,
    });
    this.#engine = new RolloutEngine({
      cluster: cluster.name,
      store: table,
      plans: [plan, ...gossipPlans(dependencies)],
      results: dependencies.commands,
      telemetry: { rolloutHalted: (name) => telemetry.rolloutStuck(name) },
      logger,
      clock,
      limits: {
        commandTimeoutMs: cluster.rollout.commandTimeoutSeconds * 1000,
        orphanedClaimMs: ORPHANED_CLAIM_MS,
      },
    });
  }

  get #cluster(): ClusterConfig {
    return this.#deps.cluster;
  }

  /**
   * One scheduled run: sync inventory, reconcile in-flight commands, continue or start a rollout,
   * publish fleet expiry. Stops before `deadline` and leaves the rest to the next run.
   */
  async tick(options: { deadline: number; owner: string; actor: string }): Promise<TickReport> {
    const { clock, logger } = this.#deps;
    const cluster = this.#cluster.name;
    const idle: TickReport = { cluster, leaseHeld: false, inventory: 0, reconciled: 0, stoppedEarly: false };
    const report = await this.#engine.withLease(options.owner, options.deadline, async () => {
      const held: TickReport = { ...idle, leaseHeld: true };
      held.inventory = await this.syncInventory({ admitServers: true });
      held.reconciled = await this.#engine.reconcile(options.deadline);
      if (clock.now() >= options.deadline) return { ...held, stoppedEarly: true };
      let rollout: RolloutRecord | undefined = await this.#engine.activeRollout();
      if (rollout === undefined) {
        const started = await this.#startFromPlan(
          { kind: 'rotate', targets: 'all', force: false, reason: 'scheduled renewal', actor: options.actor },
          true,
        );
        rollout = started?.rollout;
      }
      rollout ??= await this.#startRestartAfterRotation(options.actor, options.deadline);
      rollout ??= await this.#startScheduledGossipRotation(options.actor);
      if (rollout !== undefined) {
        const advanced = await this.#engine.advance(rollout.rolloutId, options.deadline);
        held.rolloutId = advanced?.rolloutId;
        held.rolloutStatus = advanced?.status;
      }
      held.stoppedEarly = clock.now() >= options.deadline;
      await this.publishFleetExpiry();
      return held;
    });
    if (report === undefined) logger.info('another run holds the cluster lease; nothing to do', { cluster });
    return report ?? idle;
  }

  /**
   * Record the cluster's running nodes as EC2 identifies them; refresh role, IP and ping status. A
   * server never seen as one needs room in the server set, else it is refused (event and alarm); a
   * retired node that is running again is taken back. Known nodes inventory no longer lists count as
   * offline, so only an explicit request still tries them (and IAM refuses the command).
   * `admitServers` only under the cluster lease: two runs counting the server set at once could
   * each admit one more; elsewhere a server not admitted yet waits for the next tick.
   */
  async syncInventory(options: { admitServers: boolean } = { admitServers: false }): Promise<number> {
    const { table, inventory } = this.#deps;
    const seen = await inventory.list(this.#cluster);
    const known = new Map((await table.listNodes(this.#cluster.name)).map((node) => [node.instanceId, node]));
    for (const node of seen) {
      if (needsServerSeat(node, known.get(node.instanceId)) && !options.admitServers) continue;
      const stored = await this.#recordSeen(node, known);
      if (stored !== undefined) known.set(node.instanceId, stored);
    }
    const live = new Set(seen.map((node) => node.instanceId));
    for (const record of known.values()) {
      if (live.has(record.instanceId) || record.status === 'retired' || record.ping === 'ConnectionLost')
        continue;
      await this.#update(record, { ping: 'ConnectionLost' });
    }
    return seen.length;
  }

  async #recordSeen(node: InventoryNode, known: Map<string, NodeRecord>): Promise<NodeRecord | undefined> {
    const { table, clock } = this.#deps;
    const cluster = this.#cluster.name;
    const ping = node.online ? 'Online' : 'ConnectionLost';
    const record = known.get(node.instanceId);
    if (record?.status === 'retired') return this.#reinstate(record, node, ping);
    const refusal = needsServerSeat(node, record)
      ? serverSetRefusal(this.#cluster, node.instanceId, [...known.values()])
      : undefined;
    if (record === undefined) {
      const added = await table.addNode(
        {
          cluster,
          instanceId: node.instanceId,
          role: node.role,
          ip: node.ip,
          ping,
          ...(refusal === undefined ? {} : { status: 'refused' as const, lastError: refusal }),
        },
        clock.now(),
      );
      if (added !== undefined && refusal !== undefined) await this.#refused(added, refusal);
      return added;
    }
    const roleChanged = record.role !== node.role;
    const status = refusal !== undefined ? 'refused' : record.status === 'refused' ? 'idle' : record.status;
    if (!roleChanged && status === record.status && record.ip === node.ip && record.ping === ping)
      return record;
    // A node that changed role needs a set issued for its new role, so its facts for the old one go.
    const remove: NodeField[] = [
      ...(roleChanged ? (['agent', 'cli'] as const) : []),
      ...(record.status === 'refused' && refusal === undefined ? (['lastError'] as const) : []),
    ];
    const updated = await this.#update(
      record,
      {
        ip: node.ip,
        role: node.role,
        ping,
        status,
        ...(refusal === undefined ? {} : { lastError: refusal }),
      },
      remove,
    );
    if (updated !== undefined && refusal !== undefined && record.status !== 'refused')
      await this.#refused(updated, refusal);
    return updated;
  }

  /** A node retired on a termination that EC2 now reports running again: back in, with a fresh set. */
  async #reinstate(record: NodeRecord, node: InventoryNode, ping: 'Online' | 'ConnectionLost') {
    const { table, events, clock } = this.#deps;
    const refusal =
      node.role === 'server'
        ? serverSetRefusal(this.#cluster, node.instanceId, await table.listNodes(this.#cluster.name))
        : undefined;
    const updated = await this.#update(
      record,
      {
        status: refusal === undefined ? 'idle' : 'refused',
        role: node.role,
        ip: node.ip,
        ping,
        failures: 0,
        lastAction: 'reinstated',
        lastActionAt: clock.now(),
        ...(refusal === undefined ? {} : { lastError: refusal }),
      },
      // Its serials were revoked when it was retired: it must get new ones.
      ['agent', 'cli', 'nextAttemptAt', ...(refusal === undefined ? (['lastError'] as const) : [])],
    );
    if (updated === undefined) return undefined;
    await recordAudit(table, clock, {
      cluster: this.#cluster.name,
      action: 'node-reinstated',
      actor: 'inventory',
      instanceId: node.instanceId,
      role: node.role,
    });
    await events.publish('NodeReinstated', {
      cluster: this.#cluster.name,
      instanceId: node.instanceId,
      role: node.role,
    });
    if (refusal !== undefined) await this.#refused(updated, refusal);
    return updated;
  }

  async #refused(node: NodeRecord, reason: string): Promise<void> {
    const { table, events, telemetry, logger, clock } = this.#deps;
    const cluster = this.#cluster.name;
    logger.warn('node refused a certificate', {
      cluster,
      instanceId: node.instanceId,
      role: node.role,
      reason,
    });
    telemetry.nodeRefused(cluster, node.role);
    await recordAudit(table, clock, {
      cluster,
      action: 'node-refused',
      actor: 'inventory',
      instanceId: node.instanceId,
      role: node.role,
      reason,
    });
    await events.publish('NodeRefused', { cluster, instanceId: node.instanceId, role: node.role, reason });
  }

  /** A conditional node update; undefined when another actor changed the node first. */
  async #update(record: NodeRecord, changes: NodeChanges, remove: readonly NodeField[] = []) {
    const { table, clock } = this.#deps;
    return table
      .updateNode(
        this.#cluster.name,
        record.instanceId,
        { version: record.version },
        changes,
        clock.now(),
        remove,
      )
      .catch((error: unknown) => {
        if (error instanceof ConflictError) return undefined;
        throw error;
      });
  }

  async plan(request: PlanRequest): Promise<Plan> {
    const nodes = await this.#deps.table.listNodes(this.#cluster.name);
    const inFlight = new Map<string, InFlight>(
      [...(await this.#engine.unfinishedAttempts())].map(([target, attempt]) => [
        target,
        { rolloutId: attempt.rolloutId, step: attempt.step, state: attempt.state },
      ]),
    );
    return planRotation(this.#cluster, nodes, request, this.#deps.clock.now(), inFlight);
  }

  /**
   * Start a manual rotation or an emergency reissue. An emergency supersedes whatever rollout is
   * running; a manual rotation refuses to run beside one (ConflictError). Dispatches the first waves
   * until `deadline` (the invocation's own); ticks and events carry on.
   */
  async start(request: RolloutRequest, deadline: number): Promise<StartedRollout | undefined> {
    if (request.kind === 'emergency') {
      await this.#engine.supersedeActive(`superseded by emergency reissue: ${request.reason}`, request.actor);
    }
    const started = await this.#startFromPlan(request, false);
    if (started === undefined) return undefined;
    await this.#engine.advance(started.rollout.rolloutId, deadline);
    const settings = certificateSettings(started.rollout);
    return { rolloutId: started.rollout.rolloutId, ...settings, waves: started.plan.waves };
  }

  async #startFromPlan(request: RolloutRequest, quietWhenEmpty: boolean) {
    const plan = await this.plan(request);
    if (plan.waves.length === 0) {
      if (!quietWhenEmpty) this.#deps.logger.info('nothing to rotate', { cluster: plan.cluster });
      return undefined;
    }
    const rollout = await this.#engine.start({
      plan: CERTIFICATE_PLAN,
      kind: plan.kind,
      settings: { mode: plan.mode, revokePrevious: plan.revokePrevious },
      reason: request.reason,
      actor: request.actor,
      waves: plan.waves.map((wave) => ({ group: wave.role, targets: wave.instanceIds })),
    });
    return { rollout, plan };
  }

  /**
   * Start a gossip key rotation over the cluster's servers as inventory knows them. Refused
   * (ConflictError) while another rollout runs: the single active rollout is what keeps a gossip
   * step from ever overlapping a certificate rollout's server reloads. With `restart: "staged"`
   * a tick after it completes restarts every server.
   */
  async startGossipRotation(
    request: { reason: string; actor: string; restart: GossipRestartMode },
    deadline: number,
  ): Promise<StartedGossipRotation> {
    const servers = await this.gossipServers();
    const rollout = await this.#startGossipRotation(servers, request.reason, request.actor, request.restart);
    await this.#engine.advance(rollout.rolloutId, deadline);
    return { rolloutId: rollout.rolloutId, servers, restart: request.restart };
  }

  /** The cluster's default for rotations that do not say (gossip.restartAfterRotation). */
  gossipRestartMode(): GossipRestartMode {
    return this.#cluster.gossip?.restartAfterRotation === true ? 'staged' : 'none';
  }

  /** One wave of every server; ConflictError while another rollout runs. */
  #startGossipRotation(
    servers: string[],
    reason: string,
    actor: string,
    restart: GossipRestartMode,
  ): Promise<RolloutRecord> {
    return this.#engine.start({
      plan: GOSSIP_PLAN,
      kind: 'rotate',
      settings: { restart },
      reason,
      actor,
      waves: [{ group: 'server', targets: servers }],
    });
  }

  /**
   * The staged restarts a completed rotation asked for, once: the latest gossip rotation, when it
   * completed with restart "staged" and no restart rollout follows it yet. Servers in the order the gossip
   * status gives (followers first, the leader last); a cluster not settled now waits for a later
   * tick (logged), as does one another rollout holds.
   */
  async #startRestartAfterRotation(actor: string, deadline: number): Promise<RolloutRecord | undefined> {
    if (this.#cluster.gossip === undefined || this.#deps.gossipKeys === undefined) return undefined;
    const rollouts = await this.#deps.table.listRollouts(this.#cluster.name);
    // Only the latest rotation: one that halted or was superseded after it has the last word.
    const rotation = rollouts
      .filter((rollout) => rollout.plan === GOSSIP_PLAN)
      .sort((a, b) => b.createdAt - a.createdAt)[0];
    if (rotation?.status !== 'completed' || rotation.settings.restart !== 'staged') return undefined;
    const followed = rollouts.some(
      (rollout) => rollout.plan === GOSSIP_RESTART_PLAN && rollout.settings.after === rotation.rolloutId,
    );
    if (followed) return undefined;
    try {
      const order = followersFirst(settledServers(await this.gossipStatus(deadline)));
      return await this.#engine.start({
        plan: GOSSIP_RESTART_PLAN,
        kind: 'restart',
        settings: { servers: order.length, after: rotation.rolloutId },
        reason: `staged restart after gossip rotation ${rotation.rolloutId}`,
        actor,
        waves: order.map((instanceId) => ({ group: 'server', targets: [instanceId] })),
      });
    } catch (error) {
      if (!(error instanceof ConflictError)) throw error;
      this.#deps.logger.warn('staged restart after the gossip rotation waits', {
        cluster: this.#cluster.name,
        rolloutId: rotation.rolloutId,
        reason: error.message,
      });
      return undefined;
    }
  }

  /** What every server's gossip keyring holds now, by fingerprint, with the secret's stages. */
  async gossipStatus(deadline: number): Promise<GossipStatusReport> {
    const servers = await this.gossipServers();
    const gossipCluster = this.#cluster as GossipClusterConfig;
    return gossipStatus(
      {
        custody: this.#deps.gossipKeys!,
        commands: new SsmGossipCommands(this.#deps.commands, gossipCluster),
        results: this.#deps.commands,
        clock: this.#deps.clock,
        sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
      },
      { cluster: this.#cluster.name, secretId: gossipCluster.gossip.secretId, servers },
      Math.min(deadline, this.#deps.clock.now() + GOSSIP_STATUS_WAIT_MS),
    );
  }

  /**
   * The monthly (gossip.rotateEvery) rotation: due when no gossip rotation started within the
   * interval, a superseded one not counting. Certificates go first: this runs only on a tick that
   * started no certificate rollout.
   */
  async #startScheduledGossipRotation(actor: string): Promise<RolloutRecord | undefined> {
    const every = this.#cluster.gossip?.rotateEvery;
    if (every === undefined || every === 'off' || this.#deps.gossipKeys === undefined) return undefined;
    const now = this.#deps.clock.now();
    const recent = (await this.#deps.table.listRollouts(this.#cluster.name)).some(
      (rollout) =>
        rollout.plan === GOSSIP_PLAN &&
        rollout.status !== 'superseded' &&
        rollout.createdAt > now - every * 1000,
    );
    if (recent) return undefined;
    const servers = await this.gossipServers().catch(() => []);
    if (servers.length === 0) return undefined;
    try {
      return await this.#startGossipRotation(
        servers,
        'scheduled gossip key rotation',
        actor,
        this.gossipRestartMode(),
      );
    } catch (error) {
      if (error instanceof ConflictError) return undefined;
      throw error;
    }
  }

  /**
   * Repair the servers the current key no longer reaches, as gossip-status finds them, one at a
   * time. Needs a current key the rotator wrote (a hand-set key is not in the secret); refused
   * (ConflictError) while another rollout runs. Nothing to repair: no rollout.
   */
  async startGossipRepair(
    request: { reason: string; actor: string; dryRun: boolean },
    deadline: number,
  ): Promise<{ rolloutId: string | null; stragglers: string[]; status: GossipStatusReport }> {
    const status = await this.gossipStatus(deadline);
    const current = status.secret.current;
    if (current === undefined)
      throw new ValidationError('invalid gossip request', [
        `cluster: the gossip secret of ${this.#cluster.name} holds no key the rotator wrote; rotate-gossip first`,
      ]);
    const stragglers = stragglersIn(status, current);
    // Right after a server is cut off the others count it suspect and their own queries fail too:
    // only a minority that the rest agree on is a straggler, never a majority to restart.
    if (stragglers.length * 2 >= status.servers.length)
      throw new ConflictError(
        `${stragglers.length} of ${status.servers.length} servers look cut off: not a straggler to repair; wait for the cluster's view to settle (a suspect server is failed after about 30 s) and look at gossip-status`,
        { context: { cluster: this.#cluster.name } },
      );
    if (stragglers.length === 0 || request.dryRun) return { rolloutId: null, stragglers, status };
    const rollout = await this.#engine.start({
      plan: GOSSIP_REPAIR_PLAN,
      kind: 'repair',
      settings: { servers: status.servers.length },
      reason: request.reason,
      actor: request.actor,
      waves: stragglers.map((instanceId) => ({ group: 'server', targets: [instanceId] })),
    });
    await this.#engine.advance(rollout.rolloutId, deadline);
    return { rolloutId: rollout.rolloutId, stragglers, status };
  }

  /**
   * Enable gossip encryption on a cluster whose servers all gossip in clear: one server at a time,
   * followers first and the leader last (plan gossipenable). Refused (ValidationError) when the
   * cluster encrypts already; ConflictError when some servers do and some do not, when the cluster
   * could not lose a server now, or while another rollout runs. A dry run names the order.
   */
  async startGossipEnable(
    request: { reason: string; actor: string; dryRun: boolean },
    deadline: number,
  ): Promise<{ rolloutId: string | null; servers: string[]; softPartition: string }> {
    const status = await this.gossipStatus(deadline);
    const settled = settledServers(status);
    const answered = status.servers.flatMap((server) => (server.answered ? [server] : []));
    const encrypted = answered.filter((server) => !gossipsInClear(serverView(server.instanceId, server)));
    if (encrypted.length === answered.length)
      throw new ValidationError('invalid gossip request', [
        `cluster: ${this.#cluster.name} encrypts its gossip already; rotate-gossip changes the key`,
      ]);
    if (encrypted.length > 0)
      throw new ConflictError(
        `${encrypted.map((server) => server.instanceId).join(', ')} gossip(s) encrypted while the others are in clear: finish by hand (gossip-status shows which); enable-gossip starts only from a cluster all in clear`,
        { context: { cluster: this.#cluster.name } },
      );
    const cleanup = answered[0]?.autopilot?.cleanupDeadServers;
    if (cleanup === null || cleanup === undefined)
      throw new ConflictError(
        "autopilot's configuration could not be read (the ACL token needs operator:read and operator:write)",
        { context: { cluster: this.#cluster.name } },
      );
    const order = followersFirst(settled);
    if (request.dryRun) return { rolloutId: null, servers: order, softPartition: ENABLE_SOFT_PARTITION };
    const rollout = await this.#engine.start({
      plan: GOSSIP_ENABLE_PLAN,
      kind: 'enable',
      settings: { servers: order.length, cleanupDeadServers: cleanup },
      reason: request.reason,
      actor: request.actor,
      waves: order.map((instanceId) => ({ group: 'server', targets: [instanceId] })),
    });
    await this.#engine.advance(rollout.rolloutId, deadline);
    return { rolloutId: rollout.rolloutId, servers: order, softPartition: ENABLE_SOFT_PARTITION };
  }

  /** The servers a gossip rotation covers; ValidationError when the cluster has no gossip section or no server. */
  async gossipServers(): Promise<string[]> {
    if (this.#cluster.gossip === undefined || this.#deps.gossipKeys === undefined)
      throw new ValidationError('invalid gossip request', [
        `cluster: ${this.#cluster.name} has no gossip section in its configuration`,
      ]);
    await this.syncInventory();
    const servers = (await this.#deps.table.listNodes(this.#cluster.name))
      .filter((node) => node.role === 'server' && node.status !== 'retired' && node.status !== 'refused')
      .map((node) => node.instanceId);
    if (servers.length === 0)
      throw new ValidationError('invalid gossip request', [`cluster: ${this.#cluster.name} has no servers`]);
    return servers;
  }

  /** An SSM command finished (event path), already routed to this cluster by its key: its results by target. */
  onCommand(
    key: RoutingKey,
    results: ReadonlyMap<string, CommandResult>,
    deadline: number,
  ): Promise<boolean> {
    return this.#engine.onCommandResults(key, results, deadline);
  }

  /** Events are best effort: apply what finished, fail what timed out. */
  reconcile(deadline: number): Promise<number> {
    return this.#engine.reconcile(deadline);
  }

  advance(rolloutId: string, deadline: number): Promise<RolloutRecord | undefined> {
    return this.#engine.advance(rolloutId, deadline);
  }

  /**
   * An instance of this cluster reached `running` and its SSM agent is online. A node with no
   * certificate (or a due one) joins the active rollout as one more wave, so servers still never
   * reload two at a time, or gets a rollout of its own.
   */
  async onInstanceRunning(instanceId: string, actor: string, deadline: number): Promise<string | undefined> {
    await this.syncInventory();
    const plan = await this.plan({ kind: 'rotate', targets: [instanceId], force: false });
    const wave = plan.waves[0];
    if (wave === undefined) return undefined;
    const rolloutId = await this.#engine.join({
      plan: CERTIFICATE_PLAN,
      kind: 'rotate',
      settings: { mode: plan.mode, revokePrevious: plan.revokePrevious },
      reason: 'instance running',
      actor,
      waves: [{ group: wave.role, targets: wave.instanceIds }],
    });
    if (rolloutId !== undefined) await this.#engine.advance(rolloutId, deadline);
    return rolloutId;
  }

  /** Problems with a manual target list, checked against live inventory and the table without writing. */
  async targetIssues(instanceIds: readonly string[]): Promise<string[]> {
    const live = new Set((await this.#deps.inventory.list(this.#cluster)).map((node) => node.instanceId));
    const known = new Map(
      (await this.#deps.table.listNodes(this.#cluster.name)).map((node) => [node.instanceId, node]),
    );
    return instanceIds.flatMap((id) => {
      const node = known.get(id);
      if (node?.status === 'retired') return [`targets: ${id} is terminated`];
      if (node === undefined && !live.has(id))
        return [`targets: ${id} is not a node of cluster ${this.#cluster.name}`];
      return [];
    });
  }

  /** A terminated instance: revoke its serials in Vault, leave its rollout, and mark it retired. */
  async retire(instanceId: string, actor: string): Promise<boolean> {
    const { table, authority, events, clock } = this.#deps;
    const node = await table.getNode(this.#cluster.name, instanceId);
    if (node === undefined || node.status === 'retired') return false;
    const abandoned = await this.#engine.abandonTarget(instanceId, actor);
    const carried = abandoned === undefined ? undefined : signedCarry(abandoned)?.signed;
    const serials = [node.agent?.serial, node.cli?.serial, carried?.agent.serial, carried?.cli.serial].filter(
      (serial): serial is string => serial !== undefined,
    );
    for (const serial of serials) await authority.revoke(serial);
    try {
      await table.updateNode(
        this.#cluster.name,
        instanceId,
        { version: node.version },
        { status: 'retired', lastAction: 'retired', lastActionAt: clock.now() },
        clock.now(),
      );
    } catch (error) {
      if (error instanceof ConflictError) return false;
      throw error;
    }
    await recordAudit(table, clock, {
      cluster: this.#cluster.name,
      action: 'node-retired',
      actor,
      instanceId,
      role: node.role,
      details: { revoked: serials.length },
    });
    await events.publish('NodeRetired', {
      cluster: this.#cluster.name,
      instanceId,
      role: node.role,
      revokedSerials: serials,
    });
    return true;
  }

  /** Fleet expiry metrics; a node with no certificate yet counts as just expired. */
  async publishFleetExpiry(): Promise<void> {
    const { table, clock, telemetry } = this.#deps;
    const now = clock.now();
    const nodes = (await table.listNodes(this.#cluster.name)).filter((node) => node.status !== 'retired');
    const hoursLeft = nodes.map((node) => hoursUntil(node.agent ? node.agent.notAfter : now - 1, now));
    const minHours = hoursLeft.length > 0 ? Math.min(...hoursLeft) : undefined;
    const soonHours = expiringSoonHours(this.#cluster.certificates);
    telemetry.fleetExpiry(
      this.#cluster.name,
      minHours,
      hoursLeft.filter((hours) => hours < soonHours).length,
    );
  }
}

/** The gossip rotation, repair, restart and enable plans, for a cluster with a gossip section. */
function gossipPlans(
  dependencies: RotationDependencies,
): (GossipPlan | GossipRepairPlan | GossipRestartPlan | GossipEnablePlan)[] {
  const { cluster, gossipKeys } = dependencies;
  if (cluster.gossip === undefined || gossipKeys === undefined) return [];
  const gossipCluster = cluster as GossipClusterConfig;
  const commands = new SsmGossipCommands(dependencies.commands, gossipCluster);
  const shared = { cluster: gossipCluster, custody: gossipKeys, commands, events: dependencies.events };
  return [
    new GossipPlan({
      ...shared,
      nodes: dependencies.table,
      waves: dependencies.table,
      audit: dependencies.table,
      telemetry: dependencies.telemetry,
      logger: dependencies.logger,
      clock: dependencies.clock,
    }),
    new GossipRepairPlan({ ...shared, telemetry: dependencies.telemetry }),
    new GossipRestartPlan({ ...shared, nodes: dependencies.table, telemetry: dependencies.telemetry }),
    new GossipEnablePlan({
      ...shared,
      nodes: dependencies.table,
      telemetry: dependencies.telemetry,
      logger: dependencies.logger,
    }),
  ];
}

/** A server whose record holds no seat in the server set: unknown, of another role, refused or retired. */
function needsServerSeat(node: InventoryNode, record: NodeRecord | undefined): boolean {
  return (
    node.role === 'server' &&
    (record === undefined ||
      record.role !== 'server' ||
      record.status === 'refused' ||
      record.status === 'retired')
  );
}
