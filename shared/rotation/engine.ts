import { randomBytes } from 'node:crypto';
import { validateCsr } from '../certs/csr';
import { certificateNames, type NodeRole } from '../certs/names';
import { expiringSoonHours, hoursUntil } from '../certs/renewal';
import type { Clock } from '../clock';
import type { ClusterConfig } from '../config';
import {
  DOCUMENT_SIZE_BUDGET_BYTES,
  type DocumentParameters,
  documentSizeBytes,
  installExecutionTimeoutSeconds,
  validateDocumentParameters,
} from '../documents';
import { ConflictError, describeError, RotatorError } from '../errors';
import type { NodeRecord, RolloutRecord, SignedSet, Wave } from '../state/records';
import type { NodeChanges, NodeExpectation, NodeField, StateStore } from '../state/store';
import {
  failureReason,
  installOutputSchema,
  lastJsonLine,
  normalizeSerial,
  prepareOutputSchema,
} from './outputs';
import { type Plan, type PlanRequest, planRotation } from './planner';
import type {
  CertificateAuthority,
  CommandGateway,
  EventPublisher,
  InvocationOutcome,
  Logger,
  NodeInventory,
  RotationTelemetry,
} from './ports';

const SSM_MAX_TARGETS = 50;
const LEASE_KIND = 'certs';
/** A dispatch that claimed nodes but crashed before sending is undone after this long. */
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
}

export interface RolloutRequest extends PlanRequest {
  reason: string;
  actor: string;
}

export interface TickReport {
  cluster: string;
  leaseHeld: boolean;
  inventory: number;
  reconciled: number;
  rolloutId?: string;
  rolloutStatus?: RolloutRecord['status'];
  stoppedEarly: boolean;
}

/** Parsed from an SSM command's Comment: which cluster, stage and attempt an invocation belongs to. */
export interface CommandTag {
  cluster: string;
  stage: 'prepare' | 'install';
  attemptId: string;
}

export function commandComment(tag: CommandTag): string {
  return `nomad-rotator:${tag.cluster}:${tag.stage}:${tag.attemptId}`;
}

export function parseCommandComment(comment: string | undefined): CommandTag | undefined {
  const match = /^nomad-rotator:([a-z0-9-]+):(prepare|install):([a-z0-9-]+)$/.exec(comment ?? '');
  if (match === null) return undefined;
  return { cluster: match[1]!, stage: match[2] as CommandTag['stage'], attemptId: match[3]! };
}

/**
 * Certificate rotation for one cluster. Every step is a conditional write on the
 * node or rollout item, so the event path, the reconcile path and concurrent ticks can all call the
 * same transitions: whoever loses a race gets a ConflictError and stops.
 */
export class CertificateRotation {
  readonly #deps: RotationDependencies;

  constructor(dependencies: RotationDependencies) {
    this.#deps = dependencies;
  }

  get #cluster(): ClusterConfig {
    return this.#deps.cluster;
  }

  // ---- scheduled tick ------------------------------------------------------------------------

  /**
   * One scheduled run: sync inventory, reconcile in-flight commands, continue or start a rollout,
   * publish fleet expiry. Stops before `deadline` and leaves the rest to the next run.
   */
  async tick(options: { deadline: number; owner: string; actor: string }): Promise<TickReport> {
    const { table, clock } = this.#deps;
    const cluster = this.#cluster.name;
    const report: TickReport = {
      cluster,
      leaseHeld: false,
      inventory: 0,
      reconciled: 0,
      stoppedEarly: false,
    };
    const leaseMs = Math.max(options.deadline - clock.now(), 60_000);
    if (!(await table.acquireLease(cluster, LEASE_KIND, options.owner, clock.now(), leaseMs))) {
      this.#deps.logger.info('another run holds the cluster lease; nothing to do', { cluster });
      return report;
    }
    report.leaseHeld = true;
    try {
      report.inventory = await this.syncInventory();
      report.reconciled = await this.reconcile(options.deadline);
      if (clock.now() >= options.deadline) {
        report.stoppedEarly = true;
        return report;
      }
      let rollout = await table.getActiveRollout(cluster);
      if (rollout === undefined) {
        rollout = await this.#startFromPlan(
          {
            kind: 'rotate',
            targets: 'all',
            force: false,
            reason: 'scheduled renewal',
            actor: options.actor,
            revokePrevious: false,
            restart: false,
          },
          true,
        );
      }
      if (rollout !== undefined) {
        const advanced = await this.advance(rollout.rolloutId, options.deadline);
        report.rolloutId = advanced?.rolloutId;
        report.rolloutStatus = advanced?.status;
      }
      report.stoppedEarly = clock.now() >= options.deadline;
      await this.publishFleetExpiry();
      return report;
    } finally {
      await table.releaseLease(cluster, LEASE_KIND, options.owner);
    }
  }

  /** Record nodes SSM knows with the cluster's tags; refresh role, IP and ping status. */
  async syncInventory(): Promise<number> {
    const { table, inventory, clock } = this.#deps;
    const cluster = this.#cluster.name;
    const seen = await inventory.list(this.#cluster);
    const known = new Map((await table.listNodes(cluster)).map((node) => [node.instanceId, node]));
    for (const node of seen) {
      const ping = node.online ? 'Online' : 'ConnectionLost';
      const record = known.get(node.instanceId);
      if (record === undefined) {
        await table.addNode(
          { cluster, instanceId: node.instanceId, role: node.role, ip: node.ip, ping },
          clock.now(),
        );
      } else if (
        record.status !== 'retired' &&
        (record.ip !== node.ip || record.role !== node.role || record.ping !== ping)
      ) {
        await this.#tryUpdate(record, { version: record.version }, { ip: node.ip, role: node.role, ping });
      }
    }
    return seen.length;
  }

  // ---- manual requests -----------------------------------------------------------------------

  async plan(request: PlanRequest): Promise<Plan> {
    const nodes = await this.#deps.table.listNodes(this.#cluster.name);
    return planRotation(this.#cluster, nodes, request, this.#deps.clock.now());
  }

  /**
   * Start a manual rotation or an emergency reissue. An emergency supersedes whatever rollout is
   * running; a manual rotation refuses to run beside one (ConflictError). Dispatches the first waves
   * until `deadline` (the invocation's own); ticks and events carry on.
   */
  async start(request: RolloutRequest, deadline: number): Promise<RolloutRecord | undefined> {
    if (request.kind === 'emergency') await this.#supersedeActive(request);
    const rollout = await this.#startFromPlan(request, false);
    if (rollout !== undefined) await this.advance(rollout.rolloutId, deadline);
    return rollout;
  }

  async #startFromPlan(request: RolloutRequest, quietWhenEmpty: boolean): Promise<RolloutRecord | undefined> {
    const { table, clock, events } = this.#deps;
    const plan = await this.plan(request);
    if (plan.waves.length === 0) {
      if (!quietWhenEmpty) this.#deps.logger.info('nothing to rotate', { cluster: plan.cluster });
      return undefined;
    }
    const now = clock.now();
    const rollout: RolloutRecord = {
      cluster: plan.cluster,
      rolloutId: `${new Date(now)
        .toISOString()
        .replace(/[-:.TZ]/g, '')
        .slice(0, 14)}-${randomBytes(3).toString('hex')}`,
      kind: request.kind,
      mode: plan.mode,
      revokePrevious: plan.revokePrevious,
      reason: request.reason,
      requestedBy: request.actor,
      waves: plan.waves,
      currentWave: 0,
      status: 'running',
      createdAt: now,
      updatedAt: now,
      version: 1,
    };
    await table.startRollout(rollout);
    await this.#audit('rollout-started', request.actor, {
      rolloutId: rollout.rolloutId,
      reason: request.reason,
      details: {
        kind: rollout.kind,
        mode: rollout.mode,
        waves: rollout.waves.length,
        nodes: plan.waves.flatMap((w) => w.instanceIds).length,
      },
    });
    await events.publish(rollout.kind === 'emergency' ? 'EmergencyReissueStarted' : 'RolloutStarted', {
      cluster: rollout.cluster,
      rolloutId: rollout.rolloutId,
      reason: rollout.reason,
      nodes: plan.waves.flatMap((wave) => wave.instanceIds),
    });
    return rollout;
  }

  async #supersedeActive(request: RolloutRequest): Promise<void> {
    const { table, clock } = this.#deps;
    const active = await table.getActiveRollout(this.#cluster.name);
    if (active === undefined) return;
    await table.updateRollout(
      active,
      { status: 'superseded', haltReason: `superseded by emergency reissue: ${request.reason}` },
      clock.now(),
    );
    // In-flight attempts of the superseded rollout are abandoned: their late results no longer match.
    for (const node of await table.listNodes(this.#cluster.name)) {
      if (
        node.rolloutId === active.rolloutId &&
        ['preparing', 'signed', 'installing'].includes(node.status)
      ) {
        await this.#tryUpdate(node, { version: node.version }, { status: 'idle', lastAction: 'superseded' }, [
          'attemptId',
          'commandId',
          'signed',
        ]);
      }
    }
    await this.#audit('rollout-superseded', request.actor, {
      rolloutId: active.rolloutId,
      reason: request.reason,
    });
  }

  // ---- rollout progress ----------------------------------------------------------------------

  /**
   * Move a rollout as far as it can go now: dispatch prepares for the current wave, install what is
   * signed, and open the next wave when every node of this one is done. Safe to call from any number
   * of invocations at once.
   */
  async advance(rolloutId: string, deadline: number): Promise<RolloutRecord | undefined> {
    const { table, clock } = this.#deps;
    for (;;) {
      const rollout = await table.getRollout(this.#cluster.name, rolloutId);
      if (rollout === undefined || rollout.status !== 'running') return rollout;
      const wave = rollout.waves[rollout.currentWave];
      if (wave === undefined) return this.#finishRollout(rollout, 'completed');
      const nodes = await table.getNodes(this.#cluster.name, wave.instanceIds);
      const state = this.#classify(rollout, nodes, clock.now());
      if (state.ready.length > 0 && clock.now() < deadline)
        await this.#dispatchPrepare(rollout, wave, state.ready);
      if (state.preparing === 0 && state.signed.length > 0 && clock.now() < deadline) {
        await this.#dispatchInstall(rollout, wave, state.signed);
      }
      if (!state.settled) return rollout;
      try {
        if (state.exhausted.length > 0) {
          return await this.#finishRollout(
            rollout,
            'halted',
            `${state.exhausted.join(', ')} failed ${this.#cluster.rollout.maxAttempts} attempt(s) in wave ${rollout.currentWave + 1}`,
          );
        }
        await table.updateRollout(rollout, { currentWave: rollout.currentWave + 1 }, clock.now());
      } catch (error) {
        if (!(error instanceof ConflictError)) throw error;
      }
    }
  }

  #classify(rollout: RolloutRecord, nodes: NodeRecord[], now: number) {
    const maxAttempts = this.#cluster.rollout.maxAttempts;
    const ready: NodeRecord[] = [];
    const signed: NodeRecord[] = [];
    const exhausted: string[] = [];
    let preparing = 0;
    let pending = 0;
    for (const node of nodes) {
      const ours = node.rolloutId === rollout.rolloutId;
      if (node.status === 'retired' || node.completedRolloutId === rollout.rolloutId) continue;
      if (ours && node.status === 'failed' && (node.rolloutAttempts ?? 0) >= maxAttempts) {
        exhausted.push(node.instanceId);
        continue;
      }
      pending += 1;
      if (ours && node.status === 'preparing') preparing += 1;
      else if (ours && node.status === 'signed') signed.push(node);
      else if (
        node.status === 'idle' ||
        (node.status === 'failed' && (!ours || (node.nextAttemptAt ?? 0) <= now))
      ) {
        ready.push(node);
      }
    }
    return { ready, signed, exhausted, preparing, settled: pending === 0 };
  }

  async #finishRollout(rollout: RolloutRecord, status: 'completed' | 'halted', haltReason?: string) {
    const { table, clock, events, telemetry } = this.#deps;
    let finished: RolloutRecord;
    try {
      finished = await table.updateRollout(
        rollout,
        { status, ...(haltReason ? { haltReason } : {}) },
        clock.now(),
      );
    } catch (error) {
      if (error instanceof ConflictError) return table.getRollout(rollout.cluster, rollout.rolloutId);
      throw error;
    }
    await this.#audit(`rollout-${status}`, 'rotator', { rolloutId: rollout.rolloutId, reason: haltReason });
    if (status === 'halted') {
      telemetry.rolloutStuck(rollout.cluster);
      this.#deps.logger.error('rollout halted', {
        cluster: rollout.cluster,
        rolloutId: rollout.rolloutId,
        haltReason,
      });
      await events.publish('RolloutHalted', {
        cluster: rollout.cluster,
        rolloutId: rollout.rolloutId,
        reason: haltReason,
      });
    } else {
      await events.publish(rollout.kind === 'emergency' ? 'EmergencyReissueFinished' : 'RolloutCompleted', {
        cluster: rollout.cluster,
        rolloutId: rollout.rolloutId,
      });
    }
    return finished;
  }

  async #dispatchPrepare(rollout: RolloutRecord, wave: Wave, nodes: NodeRecord[]): Promise<void> {
    const { authority, logger } = this.#deps;
    try {
      // A sealed or unreachable Vault means no node is touched at all, not even a pending key.
      await authority.assertReady();
    } catch (error) {
      logger.warn('certificate authority not ready; prepare deferred', {
        cluster: rollout.cluster,
        error: describeError(error),
      });
      return;
    }
    const online = nodes.filter((node) => node.ping !== 'ConnectionLost');
    for (const node of nodes.filter((candidate) => candidate.ping === 'ConnectionLost')) {
      const claimed = await this.#claim(node, rollout, 'preparing', newAttemptId(rollout));
      if (claimed) await this.#fail(claimed, 'node-offline');
    }
    for (let index = 0; index < online.length; index += SSM_MAX_TARGETS) {
      const attemptId = newAttemptId(rollout);
      const claimed = await this.#claimAll(
        online.slice(index, index + SSM_MAX_TARGETS),
        rollout,
        'preparing',
        attemptId,
      );
      if (claimed.length === 0) continue;
      const files = this.#cluster.files;
      await this.#send(claimed, 'prepare', attemptId, wave.role, () => ({
        attemptId,
        keyType: this.#cluster.certificates.keyType,
        agentKeyPath: files.agentKey.path,
        agentCertPath: files.agentCert.path,
        cliKeyPath: files.cliKey.path,
        cliCertPath: files.cliCert.path,
      }));
    }
  }

  /** Every install parameter but the batch's certificates and attempt id. */
  #installParameters(
    rollout: RolloutRecord,
    wave: Wave,
    signed: NonNullable<NodeRecord['signed']>,
  ): Omit<DocumentParameters<'install'>, 'attemptId' | 'certificates'> {
    const files = this.#cluster.files;
    const fileParameters = Object.fromEntries(
      (['agentCert', 'agentKey', 'ca', 'cliCert', 'cliKey'] as const).flatMap((file) => [
        [`${file}Path`, files[file].path],
        [`${file}Mode`, files[file].mode],
        [`${file}Owner`, files[file].owner],
        [`${file}Group`, files[file].group],
      ]),
    ) as Record<string, string>;
    const { serverHealthTimeoutSeconds } = this.#cluster.rollout;
    const { address, verifyHttpsClient, settleSeconds } = this.#cluster.nomad;
    return {
      ...(fileParameters as Omit<DocumentParameters<'install'>, 'attemptId'>),
      role: wave.role,
      region: this.#cluster.region,
      mode: rollout.mode,
      chain: base64(signed.chainPem),
      caBundle: base64(signed.caBundlePem),
      minimumValiditySeconds: String(this.#cluster.certificates.minimumValidity),
      healthTimeoutSeconds: String(serverHealthTimeoutSeconds),
      settleSeconds: String(settleSeconds),
      nomadAddress: address,
      verifyHttpsClient: String(verifyHttpsClient),
      executionTimeout: String(installExecutionTimeoutSeconds(serverHealthTimeoutSeconds, settleSeconds)),
    };
  }

  /**
   * Bytes left for the certificates parameter of one install command: the document, chain, CA bundle
   * and every other parameter count against SSM's 64 KB too.
   */
  #installCertificateBudget(
    rollout: RolloutRecord,
    wave: Wave,
    signed: NonNullable<NodeRecord['signed']>,
  ): number {
    const fixed = validateDocumentParameters('install', {
      ...this.#installParameters(rollout, wave, signed),
      attemptId: 'x'.repeat(64),
      certificates: 'A',
    });
    return DOCUMENT_SIZE_BUDGET_BYTES - documentSizeBytes('install', fixed);
  }

  async #dispatchInstall(rollout: RolloutRecord, wave: Wave, nodes: NodeRecord[]): Promise<void> {
    const sample = nodes.find((node) => node.signed !== undefined)?.signed;
    if (sample === undefined) return;
    for (const batch of installBatches(nodes, this.#installCertificateBudget(rollout, wave, sample))) {
      const attemptId = batch[0]!.attemptId!;
      const claimed = (
        await Promise.all(
          batch.map((node) =>
            this.#tryUpdate(
              node,
              { status: 'signed', attemptId: node.attemptId ?? null },
              {
                status: 'installing',
                dispatchedAt: this.#deps.clock.now(),
                lastAction: 'install-dispatched',
              },
              ['commandId'],
            ),
          ),
        )
      ).filter((node): node is NodeRecord => node !== undefined);
      if (claimed.length === 0) continue;
      const first = claimed[0]!.signed!;
      const certificates = claimed.flatMap((node) => [
        node.signed!.agentCertificatePem,
        node.signed!.cliCertificatePem,
      ]);
      const sent = await this.#send(claimed, 'install', attemptId, wave.role, () => ({
        ...this.#installParameters(rollout, wave, first),
        attemptId,
        certificates: base64(certificates.join('\n')),
      }));
      // A throttled send gave the nodes back: nothing was dispatched, so nothing is audited as such.
      if (!sent) continue;
      for (const node of claimed) {
        await this.#audit('install-dispatched', 'rotator', {
          rolloutId: rollout.rolloutId,
          instanceId: node.instanceId,
          role: node.role,
          details: { mode: rollout.mode, batch: claimed.length },
        });
      }
    }
  }

  /**
   * Send a command to claimed nodes; on a refused or throttled send, give the nodes back untouched.
   * True when the command was sent.
   */
  async #send<Kind extends 'prepare' | 'install'>(
    claimed: NodeRecord[],
    stage: Kind,
    attemptId: string,
    role: NodeRole,
    parameters: () => DocumentParameters<Kind>,
  ): Promise<boolean> {
    const { commands, logger, clock } = this.#deps;
    const ids = claimed.map((node) => node.instanceId);
    try {
      const commandId = await commands.send(
        stage,
        ids,
        parameters(),
        commandComment({ cluster: this.#cluster.name, stage, attemptId }),
      );
      for (const node of claimed) {
        await this.#tryUpdate(node, { attemptId }, { commandId });
      }
      logger.info(`${stage} sent`, { cluster: this.#cluster.name, commandId, role, instances: ids });
      return true;
    } catch (error) {
      logger.warn(`${stage} not sent; nodes released for the next run`, {
        cluster: this.#cluster.name,
        error: describeError(error),
      });
      const previous = stage === 'prepare' ? 'idle' : 'signed';
      for (const node of claimed) {
        await this.#tryUpdate(
          node,
          { attemptId },
          {
            status: previous,
            lastError: `${stage}-not-sent:${errorName(error)}`,
            lastAction: `${stage}-deferred`,
            lastActionAt: clock.now(),
          },
          stage === 'prepare' ? ['attemptId', 'commandId'] : ['commandId'],
        );
      }
      if (!(error instanceof RotatorError && error.retryable) && errorName(error) !== 'ThrottlingException')
        throw error;
      return false;
    }
  }

  async #claimAll(nodes: NodeRecord[], rollout: RolloutRecord, status: 'preparing', attemptId: string) {
    const claimed = await Promise.all(nodes.map((node) => this.#claim(node, rollout, status, attemptId)));
    return claimed.filter((node): node is NodeRecord => node !== undefined);
  }

  #claim(node: NodeRecord, rollout: RolloutRecord, status: 'preparing', attemptId: string) {
    const attempts = node.rolloutId === rollout.rolloutId ? (node.rolloutAttempts ?? 0) : 0;
    const revoke = rollout.revokePrevious
      ? [node.agent?.serial, node.cli?.serial].filter((s): s is string => !!s)
      : [];
    return this.#tryUpdate(
      node,
      { version: node.version },
      {
        status,
        attemptId,
        rolloutId: rollout.rolloutId,
        rolloutAttempts: attempts + 1,
        mode: rollout.mode,
        dispatchedAt: this.#deps.clock.now(),
        lastAction: 'prepare-dispatched',
        lastActionAt: this.#deps.clock.now(),
        ...(revoke.length > 0 ? { revokeAfterInstall: revoke } : {}),
      },
      [
        'commandId',
        'signed',
        'nextAttemptAt',
        ...(revoke.length > 0 ? [] : (['revokeAfterInstall'] as NodeField[])),
      ],
    );
  }

  // ---- command results -----------------------------------------------------------------------

  /**
   * An SSM invocation changed state (event path). The caller already read the invocation to learn its
   * cluster from the command comment; this applies the matching transition and moves the rollout on.
   */
  async onInvocation(
    instanceId: string,
    tag: CommandTag,
    outcome: InvocationOutcome,
    deadline: number,
  ): Promise<void> {
    const node = await this.#deps.table.getNode(this.#cluster.name, instanceId);
    if (node === undefined) return;
    const rolloutId = await this.#applyOutcome(node, tag, outcome);
    if (rolloutId !== undefined) await this.advance(rolloutId, deadline);
  }

  async #applyOutcome(
    node: NodeRecord,
    tag: CommandTag,
    outcome: InvocationOutcome,
  ): Promise<string | undefined> {
    const expected = tag.stage === 'prepare' ? 'preparing' : 'installing';
    if (node.attemptId !== tag.attemptId || node.status !== expected) return undefined;
    if (outcome.state === 'running' || outcome.state === 'missing') return undefined;
    try {
      if (outcome.state === 'failed') await this.#fail(node, failureReason(outcome.stdout, outcome.detail));
      else if (tag.stage === 'prepare') await this.#onPrepared(node, outcome.stdout);
      else await this.#onInstalled(node, outcome.stdout);
    } catch (error) {
      if (error instanceof ConflictError) return undefined;
      throw error;
    }
    return node.rolloutId;
  }

  async #onPrepared(node: NodeRecord, stdout: string): Promise<void> {
    const parsed = prepareOutputSchema.safeParse(lastJsonLine(stdout));
    if (!parsed.success || parsed.data.attemptId !== node.attemptId) {
      await this.#fail(node, 'prepare-output-unreadable');
      return;
    }
    let signed: SignedSet;
    try {
      signed = await this.#sign(node, parsed.data.agentCsr, parsed.data.cliCsr);
    } catch (error) {
      await this.#fail(node, `signing-failed:${errorName(error)}`);
      return;
    }
    await this.#deps.table.updateNode(
      this.#cluster.name,
      node.instanceId,
      { status: 'preparing', attemptId: node.attemptId ?? null },
      { status: 'signed', signed, lastAction: 'signed', lastActionAt: this.#deps.clock.now() },
      this.#deps.clock.now(),
    );
  }

  async #sign(node: NodeRecord, agentCsrBase64: string, cliCsrBase64: string): Promise<SignedSet> {
    const { authority } = this.#deps;
    const { keyType, ttl } = this.#cluster.certificates;
    const agentCsr = await validateCsr(agentCsrBase64, keyType, 'agent CSR');
    const cliCsr = await validateCsr(cliCsrBase64, keyType, 'CLI CSR');
    const agent = await authority.sign({
      kind: node.role,
      csrPem: agentCsr,
      names: certificateNames(node.role, this.#cluster, node.ip),
      ttlSeconds: ttl,
    });
    const cli = await authority.sign({
      kind: 'cli',
      csrPem: cliCsr,
      names: certificateNames('cli', this.#cluster),
      ttlSeconds: ttl,
    });
    const intermediates = agent.caChainPems.slice(0, -1);
    return {
      agentCertificatePem: agent.certificatePem,
      cliCertificatePem: cli.certificatePem,
      chainPem: (intermediates.length > 0 ? intermediates : agent.caChainPems).join('\n'),
      caBundlePem: agent.caChainPems.join('\n'),
      agent: { serial: agent.serial, notBefore: agent.notBefore, notAfter: agent.notAfter },
      cli: { serial: cli.serial, notBefore: cli.notBefore, notAfter: cli.notAfter },
    };
  }

  async #onInstalled(node: NodeRecord, stdout: string): Promise<void> {
    const { table, clock, events, telemetry, authority, logger } = this.#deps;
    const parsed = installOutputSchema.safeParse(lastJsonLine(stdout));
    if (!parsed.success || parsed.data.attemptId !== node.attemptId || node.signed === undefined) {
      await this.#fail(node, 'install-output-unreadable');
      return;
    }
    const { signed } = node;
    if (normalizeSerial(parsed.data.agent.serial) !== normalizeSerial(signed.agent.serial)) {
      await this.#fail(node, 'installed-serial-mismatch');
      return;
    }
    const now = clock.now();
    await table.updateNode(
      this.#cluster.name,
      node.instanceId,
      { status: 'installing', attemptId: node.attemptId ?? null },
      {
        status: 'idle',
        agent: signed.agent,
        cli: signed.cli,
        failures: 0,
        completedRolloutId: node.rolloutId,
        lastAction: parsed.data.action === 'none' ? 'already-installed' : `rotated-${parsed.data.action}`,
        lastActionAt: now,
      },
      now,
      ['signed', 'attemptId', 'commandId', 'nextAttemptAt', 'lastError', 'revokeAfterInstall'],
    );
    telemetry.pushSucceeded(this.#cluster.name, node.role);
    await this.#audit('install-succeeded', 'rotator', {
      rolloutId: node.rolloutId,
      instanceId: node.instanceId,
      role: node.role,
      details: { serial: signed.agent.serial, action: parsed.data.action },
    });
    await events.publish('CertificateRotated', {
      cluster: this.#cluster.name,
      instanceId: node.instanceId,
      role: node.role,
      rolloutId: node.rolloutId,
      serial: signed.agent.serial,
      cliSerial: signed.cli.serial,
      notAfter: new Date(signed.agent.notAfter).toISOString(),
      action: parsed.data.action,
    });
    for (const serial of node.revokeAfterInstall ?? []) {
      try {
        await authority.revoke(serial);
        await this.#audit('serial-revoked', 'rotator', {
          rolloutId: node.rolloutId,
          instanceId: node.instanceId,
          details: { serial },
        });
      } catch (error) {
        logger.error('revoking a replaced serial failed', {
          cluster: this.#cluster.name,
          instanceId: node.instanceId,
          serial,
          error: describeError(error),
        });
      }
    }
  }

  async #fail(node: NodeRecord, reason: string): Promise<void> {
    const { clock, events, telemetry, logger } = this.#deps;
    const { backoffBaseSeconds, backoffMaxSeconds } = this.#cluster.rollout;
    const failures = node.failures + 1;
    const backoffSeconds = Math.min(backoffBaseSeconds * 2 ** (failures - 1), backoffMaxSeconds);
    const nextAttemptAt = clock.now() + backoffSeconds * 1000;
    await this.#deps.table.updateNode(
      this.#cluster.name,
      node.instanceId,
      { status: node.status, attemptId: node.attemptId ?? null },
      {
        status: 'failed',
        failures,
        nextAttemptAt,
        lastError: reason,
        lastAction: 'failed',
        lastActionAt: clock.now(),
      },
      clock.now(),
      ['signed', 'commandId'],
    );
    telemetry.pushFailed(this.#cluster.name, node.role);
    logger.warn('certificate push failed', {
      cluster: this.#cluster.name,
      instanceId: node.instanceId,
      reason,
      failures,
    });
    await this.#audit('rotation-failed', 'rotator', {
      rolloutId: node.rolloutId,
      instanceId: node.instanceId,
      role: node.role,
      reason,
      details: { failures, nextAttemptAt: new Date(nextAttemptAt).toISOString() },
    });
    await events.publish('CertificatePushFailed', {
      cluster: this.#cluster.name,
      instanceId: node.instanceId,
      role: node.role,
      rolloutId: node.rolloutId,
      reason,
      failures,
      nextAttemptAt: new Date(nextAttemptAt).toISOString(),
    });
  }

  // ---- reconcile -----------------------------------------------------------------------------

  /** Events are best effort: look up every in-flight command directly and apply what finished. */
  async reconcile(deadline: number): Promise<number> {
    const { table, clock } = this.#deps;
    let applied = 0;
    const inFlight = (await table.listNodes(this.#cluster.name)).filter((node) =>
      ['preparing', 'installing'].includes(node.status),
    );
    const touchedRollouts = new Set<string>();
    for (const node of inFlight) {
      if (clock.now() >= deadline) break;
      const age = clock.now() - (node.dispatchedAt ?? 0);
      if (node.commandId === undefined) {
        if (age > ORPHANED_CLAIM_MS) {
          await this.#tryUpdate(
            node,
            { attemptId: node.attemptId ?? null },
            { status: node.status === 'preparing' ? 'idle' : 'signed', lastAction: 'claim-expired' },
            node.status === 'preparing' ? ['attemptId'] : [],
          );
        }
        continue;
      }
      const outcome = await this.#deps.commands.invocation(node.commandId, node.instanceId);
      const stage = node.status === 'preparing' ? 'prepare' : 'install';
      if (
        (outcome.state === 'running' || outcome.state === 'missing') &&
        age > this.#cluster.rollout.commandTimeoutSeconds * 1000
      ) {
        await this.#fail(node, `${stage}-command-timeout`).catch(ignoreConflict);
        applied += 1;
        if (node.rolloutId) touchedRollouts.add(node.rolloutId);
        continue;
      }
      const rolloutId = await this.#applyOutcome(
        node,
        { cluster: this.#cluster.name, stage, attemptId: node.attemptId ?? '' },
        outcome,
      );
      if (rolloutId !== undefined) {
        applied += 1;
        touchedRollouts.add(rolloutId);
      }
    }
    for (const rolloutId of touchedRollouts) await this.advance(rolloutId, deadline);
    return applied;
  }

  // ---- instance lifecycle ----------------------------------------------------------------------

  /**
   * An instance of this cluster reached `running` and its SSM agent is online. A node with no
   * certificate (or a due one) joins the active rollout as one more wave, so servers still never
   * reload two at a time, or gets a rollout of its own.
   */
  async onInstanceRunning(instanceId: string, actor: string, deadline: number): Promise<string | undefined> {
    const { table, clock } = this.#deps;
    await this.syncInventory();
    const plan = await this.plan({ kind: 'rotate', targets: [instanceId], force: false });
    const wave = plan.waves[0];
    if (wave === undefined) return undefined;
    for (let attempt = 0; attempt < 5; attempt += 1) {
      const active = await table.getActiveRollout(this.#cluster.name);
      if (active === undefined) {
        try {
          const rollout = await this.#startFromPlan(
            {
              kind: 'rotate',
              targets: [instanceId],
              force: false,
              reason: 'instance running',
              actor,
              revokePrevious: false,
              restart: false,
            },
            true,
          );
          if (rollout !== undefined) await this.advance(rollout.rolloutId, deadline);
          return rollout?.rolloutId;
        } catch (error) {
          ignoreConflict(error);
          continue;
        }
      }
      if (active.waves.some((existing) => existing.instanceIds.includes(instanceId))) return active.rolloutId;
      try {
        const updated = await table.updateRollout(active, { waves: [...active.waves, wave] }, clock.now());
        await this.#audit('node-joined-rollout', actor, {
          rolloutId: updated.rolloutId,
          instanceId,
          role: wave.role,
        });
        await this.advance(updated.rolloutId, deadline);
        return updated.rolloutId;
      } catch (error) {
        ignoreConflict(error);
      }
    }
    return undefined;
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

  /** A terminated instance: revoke its serials in Vault and mark it retired. */
  async retire(instanceId: string, actor: string): Promise<boolean> {
    const { table, authority, events, clock } = this.#deps;
    const node = await table.getNode(this.#cluster.name, instanceId);
    if (node === undefined || node.status === 'retired') return false;
    const serials = [
      node.agent?.serial,
      node.cli?.serial,
      node.signed?.agent.serial,
      node.signed?.cli.serial,
    ].filter((serial): serial is string => serial !== undefined);
    for (const serial of serials) await authority.revoke(serial);
    const retired = await this.#tryUpdate(
      node,
      { version: node.version },
      { status: 'retired', lastAction: 'retired', lastActionAt: clock.now() },
      ['attemptId', 'commandId', 'signed'],
    );
    if (retired === undefined) return false;
    await this.#audit('node-retired', actor, {
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

  // ---- helpers -------------------------------------------------------------------------------

  async publishFleetExpiry(): Promise<void> {
    const { table, clock, telemetry } = this.#deps;
    const now = clock.now();
    const nodes = (await table.listNodes(this.#cluster.name)).filter((node) => node.status !== 'retired');
    // A node with no certificate yet counts as just expired: it needs one as urgently as that.
    const hoursLeft = nodes.map((node) => hoursUntil(node.agent ? node.agent.notAfter : now - 1, now));
    const minHours = hoursLeft.length > 0 ? Math.min(...hoursLeft) : undefined;
    const soonHours = expiringSoonHours(this.#cluster.certificates);
    telemetry.fleetExpiry(
      this.#cluster.name,
      minHours,
      hoursLeft.filter((hours) => hours < soonHours).length,
    );
  }

  async #tryUpdate(
    node: NodeRecord,
    expected: NodeExpectation,
    changes: NodeChanges,
    remove: readonly NodeField[] = [],
  ): Promise<NodeRecord | undefined> {
    try {
      return await this.#deps.table.updateNode(
        this.#cluster.name,
        node.instanceId,
        expected,
        changes,
        this.#deps.clock.now(),
        remove,
      );
    } catch (error) {
      return ignoreConflict(error);
    }
  }

  async #audit(
    action: string,
    actor: string,
    entry: {
      rolloutId?: string;
      instanceId?: string;
      role?: NodeRole;
      reason?: string;
      details?: Record<string, string | number | boolean>;
    },
  ): Promise<void> {
    const at = this.#deps.clock.now();
    await this.#deps.table.audit({
      cluster: this.#cluster.name,
      at,
      id: auditId(),
      action,
      actor,
      ...entry,
    });
  }
}

let auditSequence = 0;

/**
 * Audit ids sort in the order this process wrote them even within one millisecond, so the trail
 * shows "server A done" before "server B dispatched"; the random part keeps ids unique across Lambdas.
 */
function auditId(): string {
  auditSequence = (auditSequence + 1) % 1_000_000;
  return `${String(auditSequence).padStart(6, '0')}-${randomBytes(3).toString('hex')}`;
}

function newAttemptId(rollout: RolloutRecord): string {
  return `${rollout.rolloutId.slice(-6)}-${randomBytes(4).toString('hex')}`;
}

/**
 * Group signed nodes so that one install command's certificates fit the bytes its document and other
 * parameters leave (base64 of the PEMs, joined by newlines). A node whose pair alone does not fit still
 * gets a command of its own, which the parameter check then refuses by name.
 */
function installBatches(nodes: NodeRecord[], certificateBudgetBytes: number): NodeRecord[][] {
  const batches: NodeRecord[][] = [];
  let current: NodeRecord[] = [];
  let bytes = 0;
  const byAttempt = [...nodes].sort((a, b) => (a.attemptId ?? '').localeCompare(b.attemptId ?? ''));
  for (const node of byAttempt) {
    const size =
      4 *
      Math.ceil(
        ((node.signed?.agentCertificatePem.length ?? 0) + (node.signed?.cliCertificatePem.length ?? 0) + 2) /
          3,
      );
    const sameAttempt = current.length === 0 || current[0]!.attemptId === node.attemptId;
    if (
      current.length > 0 &&
      (!sameAttempt || bytes + size > certificateBudgetBytes || current.length === SSM_MAX_TARGETS)
    ) {
      batches.push(current);
      current = [];
      bytes = 0;
    }
    current.push(node);
    bytes += size;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}

function base64(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64');
}

function errorName(error: unknown): string {
  return error instanceof Error ? error.name : 'Error';
}

function ignoreConflict(error: unknown): undefined {
  if (error instanceof ConflictError) return undefined;
  throw error;
}
