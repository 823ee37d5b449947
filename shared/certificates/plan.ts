import type { Clock } from '../clock';
import type { ClusterConfig } from '../config';
import { ConflictError, describeError, errorName } from '../errors';
import type { Logger } from '../logger';
import { recordAudit } from '../rollout/audit';
import type { AttemptRecord, RolloutRecord } from '../rollout/model';
import type {
  FailurePolicy,
  RolloutMilestone,
  RolloutPlan,
  StepBatches,
  StepOutcome,
  StepVerdict,
} from '../rollout/plan';
import { splitByReachability } from '../state/reachability';
import type { NodeRecord, ReloadMode, SignedSet } from '../state/records';
import type { AuditLog, NodeChanges, NodeField, NodeStore } from '../state/store';
import type { CertificateCommands } from './commands';
import type { NodeRole } from './names';
import { normalizeSerial } from './outputs';
import type {
  CertificateAuthority,
  EventPublisher,
  NodeInventory,
  RotationTelemetry,
  TrustedChain,
} from './ports';
import { CachedChain, chainFiles, signPair } from './signing';

export const CERTIFICATE_PLAN = 'certs';

/** The certificate plan's settings on a rollout item. */
export interface CertificateSettings {
  mode: ReloadMode;
  revokePrevious: boolean;
}

/** What prepare hands to install on the attempt: the signed public certificates and the serials they replace. */
interface SignedCarry {
  signed: SignedSet;
  revokeAfterInstall: string[];
  /** The agent serial the table recorded when these were signed; absent for a node without one. */
  replacesSerial?: string;
}

export interface CertificatePlanDependencies {
  cluster: ClusterConfig;
  nodes: NodeStore;
  audit: AuditLog;
  commands: CertificateCommands;
  authority: CertificateAuthority;
  /** Role and IP are asked of EC2 again just before Vault signs: the table is not where identity lives. */
  inventory: Pick<NodeInventory, 'identify'>;
  events: EventPublisher;
  telemetry: RotationTelemetry;
  logger: Logger;
  clock: Clock;
}

export function certificateSettings(rollout: RolloutRecord): CertificateSettings {
  return {
    mode: rollout.settings.mode === 'restart' ? 'restart' : 'reload',
    revokePrevious: rollout.settings.revokePrevious === true,
  };
}

/** The signed set an attempt carries between prepare and install, if it holds one. */
export function signedCarry(attempt: AttemptRecord): SignedCarry | undefined {
  const carry = attempt.carry as Partial<SignedCarry> | undefined;
  return carry?.signed === undefined
    ? undefined
    : {
        signed: carry.signed,
        revokeAfterInstall: carry.revokeAfterInstall ?? [],
        ...(typeof carry.replacesSerial === 'string' ? { replacesSerial: carry.replacesSerial } : {}),
      };
}

/**
 * Certificates as a plan: `prepare` has each node make a fresh key and CSRs (keys never leave the
 * node), the CSRs are signed in Vault as the results come in, and `install` (once every prepare of
 * the wave is back) writes, reloads and proves the new set. A failed node keeps its working set and
 * is retried with backoff; one out of tries halts the rollout after its wave. An emergency reissue
 * is the same plan with restart and revoke.
 */
export class CertificatePlan implements RolloutPlan {
  readonly name = CERTIFICATE_PLAN;
  readonly steps = [{ name: 'prepare' }, { name: 'install', waitsForWave: true }] as const;
  readonly #deps: CertificatePlanDependencies;
  readonly #chain: CachedChain;

  constructor(dependencies: CertificatePlanDependencies) {
    this.#deps = dependencies;
    this.#chain = new CachedChain(dependencies.authority);
  }

  failurePolicy(): FailurePolicy {
    const { maxAttempts, backoffBaseSeconds, backoffMaxSeconds } = this.#deps.cluster.rollout;
    return { kind: 'retry', maxTries: maxAttempts, backoffBaseSeconds, backoffMaxSeconds };
  }

  /** Client waves run side by side up to the configured nodes in flight; servers one at a time. */
  concurrency(): { group: NodeRole; maxTargets: number } {
    return { group: 'client', maxTargets: this.#deps.cluster.rollout.maxNodesInFlight };
  }

  /**
   * Prepare needs Vault to sign what it returns, install to read the chain the nodes trust: a sealed
   * or unreachable Vault means no node is touched at all, not even a pending key.
   */
  async ready(rollout: RolloutRecord, step: string): Promise<boolean> {
    try {
      if (step === 'prepare') await this.#deps.authority.assertReady();
      else await this.#trustedChain();
      return true;
    } catch (error) {
      this.#deps.logger.warn(`certificate authority not ready; ${step} deferred`, {
        cluster: rollout.cluster,
        error: describeError(error),
      });
      return false;
    }
  }

  async batch(
    rollout: RolloutRecord,
    step: string,
    attempts: readonly AttemptRecord[],
  ): Promise<StepBatches> {
    const { commands } = this.#deps;
    if (step === 'prepare') {
      const { online, offline } = await splitByReachability(this.#deps.nodes, rollout.cluster, attempts);
      const unreachable = offline.map((attempt) => ({ attempt, reason: 'node-offline' }));
      const byTarget = new Map(online.map((attempt) => [attempt.target, attempt]));
      return {
        batches: commands
          .prepareBatches(online.map((a) => a.target))
          .map((ids) => ids.map((id) => byTarget.get(id)!)),
        unreachable,
      };
    }
    // One install command serves one prepare batch: the nodes answer with its attempt id.
    const withCarry = attempts
      .map((attempt) => ({ attempt, carry: signedCarry(attempt) }))
      .filter((entry): entry is { attempt: AttemptRecord; carry: SignedCarry } => entry.carry !== undefined)
      .sort((a, b) => a.attempt.token.localeCompare(b.attempt.token));
    // The attempt items are as writable as the rest of the table: a leaf Vault did not sign is
    // never installed, and its node fails with the reason (and the push-failure alarm).
    const chain = await this.#trustedChain();
    const unreachable: StepBatches['unreachable'] = [];
    const byToken = new Map<string, typeof withCarry>();
    for (const entry of withCarry) {
      const { agentCertificatePem, cliCertificatePem } = entry.carry.signed;
      if (!(await chain.issued(agentCertificatePem)) || !(await chain.issued(cliCertificatePem))) {
        unreachable.push({ attempt: entry.attempt, reason: 'stored-certificate-not-signed-by-vault' });
        continue;
      }
      byToken.set(entry.attempt.token, [...(byToken.get(entry.attempt.token) ?? []), entry]);
    }
    const batches: AttemptRecord[][] = [];
    for (const group of byToken.values()) {
      const request = this.#installShared(rollout, group[0]!.attempt, chain);
      const items = group.map((entry) => ({ attempt: entry.attempt, pair: entry.carry.signed }));
      for (const batch of commands.installBatches(items, request))
        batches.push(batch.map((item) => item.attempt));
    }
    return { batches, unreachable };
  }

  async send(rollout: RolloutRecord, step: string, attempts: readonly AttemptRecord[], routingKey: string) {
    const { commands } = this.#deps;
    const targets = attempts.map((attempt) => attempt.target);
    const attemptId = attempts[0]!.token;
    if (step === 'prepare') return commands.prepare(targets, attemptId, routingKey);
    const carries = attempts.map((attempt) => signedCarry(attempt)!);
    return commands.install(
      targets,
      {
        ...this.#installShared(rollout, attempts[0]!, await this.#trustedChain()),
        attemptId,
        pairs: carries.map((carry) => carry.signed),
      },
      routingKey,
    );
  }

  async judge(rollout: RolloutRecord, attempt: AttemptRecord, outcome: StepOutcome): Promise<StepVerdict> {
    const { commands } = this.#deps;
    if (outcome.state === 'failed')
      return { ok: false, reason: commands.failureReason(outcome.stdout, outcome.detail) };
    if (attempt.step === 'prepare') {
      const prepared = commands.readPrepared(outcome.stdout);
      if (prepared === undefined || prepared.attemptId !== attempt.token)
        return { ok: false, reason: 'prepare-output-unreadable' };
      const node = await this.#deps.nodes.getNode(rollout.cluster, attempt.target);
      if (node === undefined) return { ok: false, reason: 'node-unknown' };
      const provisioned = await this.#deps.inventory.identify(this.#deps.cluster, attempt.target);
      // A node item whose role or IP is not what EC2 says was written by something other than the
      // inventory sync: nothing is signed for it, and the next sync puts the item right.
      if (provisioned === undefined) return { ok: false, reason: 'identity-not-provisioned' };
      if (provisioned.role !== node.role || provisioned.ip !== node.ip || node.status === 'refused')
        return { ok: false, reason: 'identity-mismatch' };
      try {
        const signed = await signPair(
          this.#deps.authority,
          this.#deps.cluster,
          provisioned,
          prepared.agentCsrDerBase64,
          prepared.cliCsrDerBase64,
        );
        const revoke = certificateSettings(rollout).revokePrevious
          ? [node.agent?.serial, node.cli?.serial].filter((serial): serial is string => !!serial)
          : [];
        const carry: SignedCarry = {
          signed,
          revokeAfterInstall: revoke,
          ...(node.agent === undefined ? {} : { replacesSerial: node.agent.serial }),
        };
        return { ok: true, carry: { ...carry } };
      } catch (error) {
        return { ok: false, reason: `signing-failed:${errorName(error)}` };
      }
    }
    const installed = this.#installed(attempt, outcome);
    if (installed === 'unreadable') return { ok: false, reason: 'install-output-unreadable' };
    if (installed === 'mismatch') return { ok: false, reason: 'installed-serial-mismatch' };
    // What the node runs now is true whatever becomes of the attempt, so it is written first.
    await this.#updateNode(
      rollout.cluster,
      attempt.target,
      { status: 'idle', failures: 0, ...installed.facts },
      ['nextAttemptAt', 'lastError'],
    );
    // Also before the commit: a replaced serial left valid by a crash would outlive an emergency.
    await this.#revokeReplaced(rollout, attempt, installed.carry.revokeAfterInstall);
    return { ok: true, carry: { action: installed.action } };
  }

  /**
   * An install of a superseded rollout that went through anyway: the node runs its certificates, so
   * the next emergency must revoke those serials, not the ones before them, and the serials this
   * install replaced are revoked as its rollout asked.
   */
  async observe(rollout: RolloutRecord, attempt: AttemptRecord, outcome: StepOutcome): Promise<void> {
    if (attempt.step !== 'install' || outcome.state !== 'succeeded') return;
    const installed = this.#installed(attempt, outcome);
    if (typeof installed === 'string') return;
    // Only over the facts it replaced: a late report of an older install must not undo a newer one.
    const replaced = normalizeSerial(installed.carry.replacesSerial ?? '');
    await this.#updateNode(
      rollout.cluster,
      attempt.target,
      installed.facts,
      [],
      (node) => normalizeSerial(node.agent?.serial ?? '') === replaced,
    );
    await this.#revokeReplaced(rollout, attempt, installed.carry.revokeAfterInstall);
  }

  /** The node's install report, checked against what this attempt signed for it. */
  #installed(attempt: AttemptRecord, outcome: StepOutcome & { state: 'succeeded' }) {
    const installed = this.#deps.commands.readInstalled(outcome.stdout);
    const carry = signedCarry(attempt);
    if (installed === undefined || installed.attemptId !== attempt.token || carry === undefined)
      return 'unreadable' as const;
    if (normalizeSerial(installed.agent.serial) !== normalizeSerial(carry.signed.agent.serial))
      return 'mismatch' as const;
    const facts = {
      agent: carry.signed.agent,
      cli: carry.signed.cli,
      lastAction: installed.action === 'none' ? 'already-installed' : `rotated-${installed.action}`,
      lastActionAt: this.#deps.clock.now(),
    };
    return { action: installed.action, carry, facts };
  }

  async onSucceeded(
    rollout: RolloutRecord,
    attempt: AttemptRecord,
    result?: Record<string, unknown>,
  ): Promise<void> {
    const { events, telemetry, cluster } = this.#deps;
    const carry = signedCarry(attempt);
    if (carry === undefined) return;
    const { signed } = carry;
    const action = typeof result?.action === 'string' ? result.action : 'none';
    // The wave's group is the node's role: the planner groups waves by role.
    const role = attempt.group as NodeRole;
    telemetry.pushSucceeded(cluster.name, role);
    await events.publish('CertificateRotated', {
      cluster: cluster.name,
      instanceId: attempt.target,
      role,
      rolloutId: rollout.rolloutId,
      serial: signed.agent.serial,
      cliSerial: signed.cli.serial,
      notAfter: new Date(signed.agent.notAfter).toISOString(),
      action,
    });
  }

  async #revokeReplaced(rollout: RolloutRecord, attempt: AttemptRecord, serials: readonly string[]) {
    const { clock, authority, logger, cluster } = this.#deps;
    for (const serial of serials) {
      try {
        await authority.revoke(serial);
        await recordAudit(this.#deps.audit, clock, {
          cluster: cluster.name,
          action: 'serial-revoked',
          actor: 'rotator',
          rolloutId: rollout.rolloutId,
          instanceId: attempt.target,
          details: { serial },
        });
      } catch (error) {
        logger.error('revoking a replaced serial failed', {
          cluster: cluster.name,
          instanceId: attempt.target,
          serial,
          error: describeError(error),
        });
      }
    }
  }

  async onFailed(rollout: RolloutRecord, attempt: AttemptRecord, reason: string, nextAttemptAt?: number) {
    const { clock, events, telemetry, logger, cluster } = this.#deps;
    const current = await this.#deps.nodes.getNode(rollout.cluster, attempt.target);
    const failures = (current?.failures ?? 0) + 1;
    const { backoffBaseSeconds, backoffMaxSeconds } = cluster.rollout;
    // Out of tries, the node still waits before a later rollout tries it again.
    const retryAt =
      nextAttemptAt ??
      clock.now() + Math.min(backoffBaseSeconds * 2 ** (failures - 1), backoffMaxSeconds) * 1000;
    const node = await this.#updateNode(rollout.cluster, attempt.target, {
      status: 'failed',
      failures,
      nextAttemptAt: retryAt,
      lastError: reason,
      lastAction: 'failed',
      lastActionAt: clock.now(),
    });
    const role = node?.role ?? (attempt.group as NodeRole);
    telemetry.pushFailed(cluster.name, role);
    logger.warn('certificate push failed', {
      cluster: cluster.name,
      instanceId: attempt.target,
      reason,
      failures,
    });
    await events.publish('CertificatePushFailed', {
      cluster: cluster.name,
      instanceId: attempt.target,
      role,
      rolloutId: rollout.rolloutId,
      reason,
      failures,
      nextAttemptAt: new Date(retryAt).toISOString(),
    });
  }

  async announce(
    rollout: RolloutRecord,
    milestone: RolloutMilestone,
    targets: readonly string[],
  ): Promise<void> {
    const emergency = rollout.kind === 'emergency';
    const base = { cluster: rollout.cluster, rolloutId: rollout.rolloutId };
    if (milestone === 'started') {
      await this.#deps.events.publish(emergency ? 'EmergencyReissueStarted' : 'RolloutStarted', {
        ...base,
        reason: rollout.reason,
        nodes: targets,
      });
    } else if (milestone === 'halted') {
      await this.#deps.events.publish('RolloutHalted', { ...base, reason: rollout.haltReason });
    } else {
      await this.#deps.events.publish(emergency ? 'EmergencyReissueFinished' : 'RolloutCompleted', base);
    }
  }

  #installShared(rollout: RolloutRecord, attempt: AttemptRecord, chain: TrustedChain) {
    return { role: attempt.group as NodeRole, mode: certificateSettings(rollout).mode, ...chainFiles(chain) };
  }

  #trustedChain(): Promise<TrustedChain> {
    return this.#chain.get(this.#deps.clock.now());
  }

  /**
   * The node item is shared with inventory sync, so the write is a read-modify-write on its version,
   * tried again when inventory got there first. A retired node is left retired, and so is one
   * `applies` turns down.
   */
  async #updateNode(
    cluster: string,
    instanceId: string,
    changes: NodeChanges,
    remove: readonly NodeField[] = [],
    applies: (node: NodeRecord) => boolean = () => true,
  ) {
    const { nodes, clock } = this.#deps;
    for (let round = 0; round < 5; round += 1) {
      const node = await nodes.getNode(cluster, instanceId);
      if (node === undefined || node.status === 'retired' || !applies(node)) return node;
      try {
        return await nodes.updateNode(
          cluster,
          instanceId,
          { version: node.version },
          changes,
          clock.now(),
          remove,
        );
      } catch (error) {
        if (!(error instanceof ConflictError)) throw error;
      }
    }
    throw new ConflictError('the node item kept changing', { context: { cluster, instanceId } });
  }
}
