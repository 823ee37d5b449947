import { failureReason } from '../certificates/outputs';
import type { EventPublisher } from '../certificates/ports';
import type { Clock } from '../clock';
import type { ClusterConfig } from '../config';
import { describeError, ValidationError } from '../errors';
import type { Logger } from '../logger';
import { auditRollout } from '../rollout/audit';
import type { AttemptRecord, RolloutRecord } from '../rollout/model';
import type {
  FailurePolicy,
  RetryPoint,
  RolloutMilestone,
  RolloutPlan,
  StepBatches,
  StepOutcome,
  StepVerdict,
} from '../rollout/plan';
import { formatRoutingKey, newToken } from '../rollout/routing';
import type { RolloutStore } from '../rollout/store';
import { splitByReachability } from '../state/reachability';
import type { AuditLog, NodeStore } from '../state/store';
import { type GossipKeyCustody, rolloutKey, type StagedGossipKey } from './custody';
import {
  type GossipOperation,
  type GossipReport,
  gossipReportSchema,
  readGossipReport,
  serverView,
} from './outputs';
import { installVerified, preCheck, removeVerified, useVerified, type Verdict } from './verdicts';

export const GOSSIP_PLAN = 'gossip';
/** The audit action written before `use` is sent: from then on the new key may be some server's primary. */
const USE_REQUESTED = 'gossip-use-requested';

export type GossipClusterConfig = ClusterConfig & { gossip: NonNullable<ClusterConfig['gossip']> };

/** One gossip step as a command to some servers; the key itself never travels, only which one. */
export interface GossipCommandRequest {
  attemptId: string;
  /** The secret version holding the key (install and persist read it on the node). */
  versionId?: string;
  /** The key the step installs, uses, keeps, discards, repairs with or persists. */
  keyFingerprint?: string;
  /** Servers a repaired, restarted or enabled server must see again. */
  expectedServers?: number;
  /** enable: the last server to come up encrypted, and whether autopilot's cleanup goes back on after it. */
  lastServer?: boolean;
  restoreCleanup?: boolean;
}

export interface GossipCommands {
  send(
    operation: GossipOperation,
    targets: readonly string[],
    request: GossipCommandRequest,
    routingKey: string,
  ): Promise<string>;
}

export interface GossipTelemetry {
  /** A gossip rotation halted (alarmed). */
  gossipRotationFailed(cluster: string): void;
}

export interface GossipPlanDependencies {
  cluster: GossipClusterConfig;
  custody: GossipKeyCustody;
  commands: GossipCommands;
  nodes: Pick<NodeStore, 'getNodes'>;
  waves: Pick<RolloutStore, 'getWave'>;
  audit: AuditLog;
  events: EventPublisher;
  telemetry: GossipTelemetry;
  logger: Logger;
  clock: Clock;
}

/** A report an attempt carries from its last step, checked again: attempt items are writable by others. */
function carriedReport(attempt: AttemptRecord): GossipReport | undefined {
  const parsed = gossipReportSchema.safeParse((attempt.carry as { report?: unknown } | undefined)?.report);
  return parsed.success ? parsed.data : undefined;
}

/**
 * Gossip key rotation as a plan: every server of the cluster is one target of one wave, and every
 * step after `inspect` is a barrier, sent only once every server finished the one before. Each step
 * runs on every server (the keyring operations are idempotent, and each server proves it can read
 * the key) and answers with that server's keyring by fingerprint; the gate of the next step judges
 * all of those answers together, following real-systems facts: no `use` until every server holds
 * the key, no `remove` until the new key is every server's primary. A gate that fails sends every
 * server back to the step before, after backoff; out of tries the rotation halts, alarms, and takes
 * its key out again when no server can be using it yet.
 */
export class GossipPlan implements RolloutPlan {
  readonly name = GOSSIP_PLAN;
  readonly steps = [
    { name: 'inspect' },
    { name: 'install', barrier: true },
    { name: 'use', barrier: true },
    { name: 'remove', barrier: true },
    { name: 'persist', barrier: true },
  ] as const;
  readonly #deps: GossipPlanDependencies;

  constructor(dependencies: GossipPlanDependencies) {
    this.#deps = dependencies;
  }

  get #secretId(): string {
    return this.#deps.cluster.gossip.secretId;
  }

  failurePolicy(): FailurePolicy {
    const { maxTries, backoffBaseSeconds, backoffMaxSeconds } = this.#deps.cluster.gossip;
    return { kind: 'retry', maxTries, backoffBaseSeconds, backoffMaxSeconds };
  }

  /** The new key is staged before anything is installed: a run cut off here stages the same one again. */
  async ready(rollout: RolloutRecord, step: string): Promise<boolean> {
    if (step !== 'install') return true;
    try {
      await this.#deps.custody.stagePending(this.#secretId, rollout.rolloutId);
      return true;
    } catch (error) {
      this.#deps.logger.warn('the new gossip key could not be staged; install deferred', {
        cluster: rollout.cluster,
        rolloutId: rollout.rolloutId,
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
    if (step === 'inspect') {
      const { online, offline } = await splitByReachability(this.#deps.nodes, rollout.cluster, attempts);
      return {
        batches: online.length > 0 ? [online] : [],
        unreachable: offline.map((attempt) => ({ attempt, reason: 'server-offline', retryFrom: 'inspect' })),
      };
    }
    // A step the whole wave passed the gate of is run again for the servers whose try failed; only
    // the wave arriving at it together is judged (from every server's answer to the step before).
    const wave = await this.#deps.waves.getWave(rollout.cluster, rollout.rolloutId, attempts[0]!.wave);
    if (wave !== undefined && attempts.length < wave.targets.length)
      return { batches: [[...attempts]], unreachable: [] };
    const gate = await this.#gate(rollout, step, attempts);
    if (gate.open) return { batches: [[...attempts]], unreachable: [] };
    this.#deps.logger.warn(`gossip ${step} held back`, {
      cluster: rollout.cluster,
      rolloutId: rollout.rolloutId,
      reasons: gate.reasons,
    });
    return {
      batches: [],
      unreachable: attempts.map((attempt) => ({
        attempt,
        reason: gateReason(step, attempt.target, gate.reasons),
        ...gate.retry,
      })),
    };
  }

  /** Whether every server's answer to the step before lets `step` go out. */
  async #gate(
    rollout: RolloutRecord,
    step: string,
    attempts: readonly AttemptRecord[],
  ): Promise<{ open: true } | { open: false; reasons: string[]; retry: RetryPoint }> {
    const expected = attempts.map((attempt) => attempt.target);
    const reports = attempts.flatMap((attempt) => {
      const report = carriedReport(attempt);
      return report === undefined ? [] : [serverView(attempt.target, report)];
    });
    const next = await rolloutKey(this.#deps.custody, this.#secretId, rollout.rolloutId);
    const closed = (verdict: Verdict, retry: RetryPoint) =>
      verdict.go ? { open: true as const } : { open: false as const, reasons: verdict.reasons, retry };
    switch (step) {
      case 'install': {
        const verdict = preCheck(expected, reports, next.fingerprint);
        if (verdict.go) return { open: true };
        // A cluster in clear is for enable mode: no retry changes that.
        return {
          open: false,
          reasons: verdict.reasons,
          retry: verdict.enable ? { final: true } : { retryFrom: 'inspect' },
        };
      }
      case 'use': {
        const current = reports[0]?.keyringFile?.[0] ?? 'none';
        return closed(installVerified(expected, reports, { current, next: next.fingerprint }), {
          retryFrom: 'install',
        });
      }
      case 'remove':
        return closed(useVerified(expected, reports, next.fingerprint), { retryFrom: 'use' });
      case 'persist': {
        const verdict = removeVerified(expected, reports, next.fingerprint);
        // A server cut off by the removal cannot be reached by the key any more: it needs a repair.
        if (verdict.stragglers.length > 0) return closed(verdict, { final: true });
        if (!verdict.go) return closed(verdict, { retryFrom: 'remove' });
        await this.#deps.custody.promotePending(this.#secretId, rollout.rolloutId);
        return { open: true };
      }
      default:
        throw new ValidationError(`the gossip plan has no step ${step}`, [
          `step: ${step} is not a gossip step`,
        ]);
    }
  }

  async send(rollout: RolloutRecord, step: string, attempts: readonly AttemptRecord[], routingKey: string) {
    const targets = attempts.map((attempt) => attempt.target);
    const attemptId = attempts[0]!.token;
    const operation = step as GossipOperation;
    if (operation === 'inspect')
      return this.#deps.commands.send('inspect', targets, { attemptId }, routingKey);
    const key = await rolloutKey(this.#deps.custody, this.#secretId, rollout.rolloutId);
    if (operation === 'use') {
      // Written before the command goes out: a halt after this may never take the key out again.
      await auditRollout(this.#deps.audit, this.#deps.clock, USE_REQUESTED, 'rotator', rollout, {
        details: { fingerprint: key.fingerprint },
      });
    }
    return this.#deps.commands.send(
      operation,
      targets,
      {
        attemptId,
        keyFingerprint: key.fingerprint,
        ...(operation === 'install' || operation === 'persist' ? { versionId: key.versionId } : {}),
      },
      routingKey,
    );
  }

  async judge(_rollout: RolloutRecord, attempt: AttemptRecord, outcome: StepOutcome): Promise<StepVerdict> {
    const again = { retryFrom: attempt.step };
    if (outcome.state === 'failed')
      return { ok: false, reason: failureReason(outcome.stdout, outcome.detail), ...again };
    const report = readGossipReport(outcome.stdout);
    if (report === undefined || report.attemptId !== attempt.token || report.operation !== attempt.step)
      return { ok: false, reason: 'gossip-output-unreadable', ...again };
    if (report.mutation !== null && !report.mutation.ok)
      return { ok: false, reason: `${attempt.step}-failed:${report.mutation.error}`, ...again };
    return { ok: true, carry: { report } };
  }

  async onFailed(rollout: RolloutRecord, attempt: AttemptRecord, reason: string, nextAttemptAt?: number) {
    this.#deps.logger.warn('gossip step failed', {
      cluster: rollout.cluster,
      rolloutId: rollout.rolloutId,
      instanceId: attempt.target,
      step: attempt.step,
      reason,
      ...(nextAttemptAt === undefined ? {} : { nextAttemptAt: new Date(nextAttemptAt).toISOString() }),
    });
  }

  async announce(rollout: RolloutRecord, milestone: RolloutMilestone, targets: readonly string[]) {
    const { events, telemetry, custody } = this.#deps;
    const base = { cluster: rollout.cluster, rolloutId: rollout.rolloutId };
    if (milestone === 'started') {
      await events.publish('GossipRotationStarted', { ...base, reason: rollout.reason, servers: targets });
      return;
    }
    const stages = await custody.stages(this.#secretId, rollout.rolloutId);
    if (milestone === 'completed') {
      await events.publish('GossipKeyRotated', {
        ...base,
        fingerprint: stages.current?.fingerprint ?? 'unknown',
        ...(stages.previous?.fingerprint ? { previousFingerprint: stages.previous.fingerprint } : {}),
      });
      return;
    }
    telemetry.gossipRotationFailed(rollout.cluster);
    const discarded = stages.pending?.ofRollout === true && (await this.#discard(rollout, stages.pending));
    await events.publish('GossipRotationHalted', {
      ...base,
      reason: rollout.haltReason,
      newKeyDiscarded: discarded,
    });
  }

  /**
   * A halted rotation takes its key out of the cluster again, and out of AWSPENDING, but only when
   * `use` was never requested: then no server can have it as primary, and removing it cuts no one
   * off. After a `use` the key stays where it is, for an operator (or a repair) to finish.
   */
  async #discard(rollout: RolloutRecord, pending: StagedGossipKey): Promise<boolean> {
    const { audit, clock, commands, waves, custody, logger } = this.#deps;
    const trail = await audit.listAudit(rollout.cluster, clock.now());
    if (trail.some((entry) => entry.rolloutId === rollout.rolloutId && entry.action === USE_REQUESTED))
      return false;
    const wave = await waves.getWave(rollout.cluster, rollout.rolloutId, 0);
    if (wave !== undefined && pending.fingerprint !== undefined) {
      const token = newToken(rollout.rolloutId);
      try {
        await commands.send(
          'discard',
          wave.targets,
          { attemptId: token, keyFingerprint: pending.fingerprint },
          formatRoutingKey({ cluster: rollout.cluster, plan: GOSSIP_PLAN, step: 'discard', token }),
        );
      } catch (error) {
        logger.error('the halted rotation could not take its gossip key out again', {
          cluster: rollout.cluster,
          rolloutId: rollout.rolloutId,
          error: describeError(error),
        });
        return false;
      }
    }
    await custody.discardPending(this.#secretId, rollout.rolloutId);
    return true;
  }
}

/** The reasons of a closed gate that name this server, else the first one: attempt errors stay short. */
function gateReason(step: string, target: string, reasons: readonly string[]): string {
  const own = reasons.find((reason) => reason.startsWith(`${target}:`)) ?? reasons[0] ?? 'gate-closed';
  return `${step}-held:${own}`;
}
