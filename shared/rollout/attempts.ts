import type { Clock } from '../clock';
import { describeError, errorName, ignoreConflict, RotatorError } from '../errors';
import type { Logger } from '../logger';
import type { AuditLog } from '../state/store';
import { auditRollout } from './audit';
import { type AttemptRecord, isFinished, type RolloutRecord } from './model';
import type { CommandResult, RetryPoint, RolloutPlan } from './plan';
import { formatRoutingKey, newToken } from './routing';
import type { AttemptChanges, AttemptField, RolloutStore } from './store';
import { type AttemptEvent, transition } from './transitions';

export interface AttemptRunnerDependencies {
  cluster: string;
  store: RolloutStore & AuditLog;
  logger: Logger;
  clock: Clock;
  /** Halt the rollout at once (a plan that halts at the first failure). */
  halt(rollout: RolloutRecord, reason: string): Promise<unknown>;
}

/**
 * The per-target half of the engine: claims, sends, results, failures and retries, each one move of
 * the transition table written conditionally on the attempt's state, token and version.
 */
export class AttemptRunner {
  readonly #deps: AttemptRunnerDependencies;

  constructor(dependencies: AttemptRunnerDependencies) {
    this.#deps = dependencies;
  }

  /**
   * Failed attempts whose backoff is over wait again at the step their failure named (see `fail`),
   * like new ones. A try that restarts at a later step than the first counts as a try of its own,
   * with a token of its own, so a late result of the try before is ignored.
   */
  async retryDue(
    rollout: RolloutRecord,
    plan: RolloutPlan,
    attempts: AttemptRecord[],
  ): Promise<AttemptRecord[]> {
    const now = this.#deps.clock.now();
    const first = plan.steps[0]!.name;
    return Promise.all(
      attempts.map(async (attempt) => {
        if (attempt.state !== 'failed' || (attempt.nextAttemptAt ?? 0) > now) return attempt;
        const changes =
          attempt.step === first ? {} : { token: newToken(rollout.rolloutId), tries: attempt.tries + 1 };
        return (await this.move(attempt, 'retry', changes, ['nextAttemptAt'])) ?? attempt;
      }),
    );
  }

  /** Send every step the wave is ready for: the first step at once, a waiting step once no attempt is behind it. */
  async sendReady(
    rollout: RolloutRecord,
    plan: RolloutPlan,
    attempts: readonly AttemptRecord[],
    deadline: number,
  ): Promise<boolean> {
    let touched = false;
    const stepIndex = (attempt: AttemptRecord) => plan.steps.findIndex((step) => step.name === attempt.step);
    const behind = (index: number) =>
      attempts.some(
        (attempt) => !isFinished(attempt) && attempt.state !== 'failed' && stepIndex(attempt) < index,
      );
    const anyBehind = (index: number) =>
      attempts.some(
        (attempt) => attempt.state !== 'done' && attempt.state !== 'abandoned' && stepIndex(attempt) < index,
      );
    for (const [index, step] of plan.steps.entries()) {
      if (this.#deps.clock.now() >= deadline) return touched;
      const waiting = attempts.filter((attempt) => attempt.state === 'pending' && attempt.step === step.name);
      if (waiting.length === 0 || (step.waitsForWave === true && behind(index))) continue;
      if (step.barrier === true && anyBehind(index)) continue;
      if (plan.ready !== undefined && !(await plan.ready(rollout, step.name))) continue;
      const { batches, unreachable } = await plan.batch(rollout, step.name, waiting);
      touched = true;
      for (const { attempt, reason, ...retry } of unreachable) {
        const claimed = await this.#claim(attempt, index === 0 ? newToken(rollout.rolloutId) : undefined);
        if (claimed !== undefined) await this.fail(rollout, plan, claimed, reason, retry);
      }
      for (const batch of batches) {
        if (this.#deps.clock.now() >= deadline) return touched;
        await this.#sendBatch(rollout, plan, step.name, index === 0, batch);
      }
    }
    return touched;
  }

  async #sendBatch(
    rollout: RolloutRecord,
    plan: RolloutPlan,
    step: string,
    first: boolean,
    batch: AttemptRecord[],
  ) {
    const { logger, cluster } = this.#deps;
    const token = first ? newToken(rollout.rolloutId) : undefined;
    // One command answers with one attempt id: attempts of a later step whose tries parted (one ran
    // the step again) share a new token for it, keeping their tries and carry.
    const parted = !first && new Set(batch.map((attempt) => attempt.token)).size > 1;
    const shared = parted ? newToken(rollout.rolloutId) : undefined;
    const claimed = (
      await Promise.all(
        batch.map((attempt) =>
          shared === undefined
            ? this.#claim(attempt, token)
            : this.move(attempt, 'claim', { token: shared, sentAt: this.#deps.clock.now() }, ['commandId']),
        ),
      )
    ).filter((attempt): attempt is AttemptRecord => attempt !== undefined);
    if (claimed.length === 0) return;
    const key = formatRoutingKey({ cluster, plan: plan.name, step, token: claimed[0]!.token });
    let commandId: string;
    try {
      commandId = await plan.send(rollout, step, claimed, key);
    } catch (error) {
      logger.warn(`${step} not sent; targets released for the next run`, {
        cluster,
        error: describeError(error),
      });
      for (const attempt of claimed)
        await this.move(attempt, 'release', { lastError: `${step}-not-sent:${errorName(error)}` });
      if (!(error instanceof RotatorError && error.retryable) && errorName(error) !== 'ThrottlingException')
        throw error;
      return;
    }
    const targets = claimed.map((attempt) => attempt.target);
    for (const attempt of claimed) {
      await this.#deps.store
        .updateAttempt(
          attempt,
          { state: 'sent', token: attempt.token },
          { commandId },
          this.#deps.clock.now(),
        )
        .catch(ignoreConflict);
    }
    // One entry per command, not per node: a fleet's rotation writes its dispatches 50 to an item.
    const [only] = claimed;
    await auditRollout(this.#deps.store, this.#deps.clock, `${step}-dispatched`, 'rotator', rollout, {
      ...(claimed.length === 1 ? { instanceId: only!.target } : {}),
      group: only!.group,
      details: {
        commandId,
        batch: claimed.length,
        ...(claimed.length === 1 ? {} : { instances: targets.join(',') }),
        ...rollout.settings,
      },
    });
    logger.info(`${step} sent`, { cluster, commandId, plan: plan.name, instances: targets });
  }

  /** Claim an attempt's step for a command; a new token starts a new try. */
  #claim(attempt: AttemptRecord, newTryToken: string | undefined): Promise<AttemptRecord | undefined> {
    const now = this.#deps.clock.now();
    return newTryToken === undefined
      ? this.move(attempt, 'claim', { sentAt: now }, ['commandId'])
      : this.move(attempt, 'claim', { token: newTryToken, sentAt: now, tries: attempt.tries + 1 }, [
          'commandId',
          'carry',
          'lastError',
        ]);
  }

  /** Apply a result to an attempt that is out; true when this call moved it. */
  async apply(
    rollout: RolloutRecord,
    plan: RolloutPlan,
    attempt: AttemptRecord,
    result: CommandResult,
  ): Promise<boolean> {
    if (attempt.state !== 'sent' || result.state === 'running' || result.state === 'missing') return false;
    const verdict = await plan.judge(rollout, attempt, result);
    if (!verdict.ok) return this.fail(rollout, plan, attempt, verdict.reason, verdict);
    const index = plan.steps.findIndex((step) => step.name === attempt.step);
    const next = plan.steps[index + 1];
    if (next !== undefined) {
      const moved = await this.move(attempt, 'step-succeeded', {
        step: next.name,
        ...(verdict.carry === undefined ? {} : { carry: verdict.carry }),
      });
      return moved !== undefined;
    }
    const done = await this.move(attempt, 'succeeded', {}, ['carry', 'nextAttemptAt', 'lastError']);
    if (done === undefined) return false;
    await auditRollout(this.#deps.store, this.#deps.clock, `${attempt.step}-succeeded`, 'rotator', rollout, {
      instanceId: attempt.target,
      group: attempt.group,
    });
    await plan.onSucceeded?.(rollout, attempt, verdict.carry);
    return true;
  }

  /** A try failed; its next one, if any, starts at the retry point (default: the plan's first step). */
  async fail(
    rollout: RolloutRecord,
    plan: RolloutPlan,
    attempt: AttemptRecord,
    reason: string,
    { retryFrom, final = false }: RetryPoint = {},
  ): Promise<boolean> {
    const policy = plan.failurePolicy(rollout);
    const restartAt = retryFrom ?? plan.steps[0]!.name;
    if (!plan.steps.some((step) => step.name === restartAt))
      throw new RotatorError(`plan ${plan.name} has no step ${restartAt} to retry from`, {
        context: { plan: plan.name, step: restartAt },
      });
    const now = this.#deps.clock.now();
    const retry = !final && policy.kind === 'retry' && attempt.tries < policy.maxTries;
    const nextAttemptAt = retry
      ? now + Math.min(policy.backoffBaseSeconds * 2 ** (attempt.tries - 1), policy.backoffMaxSeconds) * 1000
      : undefined;
    // A try that runs the same step again keeps what the step before handed it.
    const moved = await this.move(
      attempt,
      retry ? 'failed' : 'exhausted',
      {
        lastError: reason,
        ...(nextAttemptAt === undefined ? {} : { nextAttemptAt, step: restartAt }),
      },
      retry && restartAt === attempt.step ? [] : ['carry'],
    );
    if (moved === undefined) return false;
    await auditRollout(this.#deps.store, this.#deps.clock, `${attempt.step}-failed`, 'rotator', rollout, {
      instanceId: attempt.target,
      reason,
      group: attempt.group,
      details: { tries: attempt.tries, ...(nextAttemptAt ? { nextAttemptAt: iso(nextAttemptAt) } : {}) },
    });
    await plan.onFailed?.(rollout, moved, reason, nextAttemptAt);
    if (policy.kind === 'halt') {
      await this.#deps.halt(rollout, `${attempt.target} failed ${attempt.step}: ${reason}`);
    }
    return true;
  }

  /** One move of the transition table as a conditional write; undefined when another actor moved first. */
  async move(
    attempt: AttemptRecord,
    event: AttemptEvent,
    changes: AttemptChanges,
    remove: readonly AttemptField[] = [],
  ): Promise<AttemptRecord | undefined> {
    const state = transition(attempt.state, event);
    // commandId and sentAt describe the command out, so they go when the attempt leaves `sent`; an
    // abandoned attempt keeps them, for the rollout that superseded it to wait for that command.
    const leavesCommand = attempt.state === 'sent' && state !== 'abandoned';
    const removed: readonly AttemptField[] = leavesCommand
      ? [...new Set<AttemptField>([...remove, 'commandId', 'sentAt'])]
      : remove;
    try {
      return await this.#deps.store.updateAttempt(
        attempt,
        { state: attempt.state, token: attempt.token, version: attempt.version },
        { ...changes, state },
        this.#deps.clock.now(),
        removed,
      );
    } catch (error) {
      return ignoreConflict(error);
    }
  }
}

function iso(epochMs: number): string {
  return new Date(epochMs).toISOString();
}
