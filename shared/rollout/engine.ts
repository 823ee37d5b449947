import type { Clock } from '../clock';
import { ignoreConflict, RotatorError } from '../errors';
import type { Logger } from '../logger';
import type { AuditLog } from '../state/store';
import { AttemptRunner } from './attempts';
import { auditRollout } from './audit';
import { EarlierCommands } from './earlier-commands';
import {
  type AttemptRecord,
  isFinished,
  type PlannedWave,
  type RolloutRecord,
  type RolloutSettings,
} from './model';
import { type CommandResult, type CommandResults, type RolloutPlan, resultReader } from './plan';
import { newRolloutId, type RoutingKey, tokenBelongsTo } from './routing';
import type { RolloutStore } from './store';
import { newAttempts, openNext, waveRecord } from './waves';
import { openWaves } from './window';

export interface EngineTelemetry {
  rolloutHalted(cluster: string): void;
}

export interface EngineLimits {
  /** A command still running after this long fails its attempt. */
  commandTimeoutMs: number;
  /** A claim whose command was never sent (a crash between the two writes) is released after this long. */
  orphanedClaimMs: number;
}

export interface EngineDependencies {
  cluster: string;
  store: RolloutStore & AuditLog;
  plans: readonly RolloutPlan[];
  results: CommandResults;
  telemetry: EngineTelemetry;
  logger: Logger;
  clock: Clock;
  limits: EngineLimits;
}

export interface NewRollout {
  plan: string;
  kind: string;
  settings: RolloutSettings;
  reason: string;
  actor: string;
  waves: readonly PlannedWave[];
}

const LEASE_KIND = 'rollout';

/**
 * The staged-rollout engine for one cluster. It knows rollouts, waves and attempts, never what a
 * step does: plans do. Every write is conditional (attempt state + token, rollout version), so the
 * event path, the reconcile path and concurrent ticks may all call any method at any time; whoever
 * loses a race drops its write and re-reads.
 */
export class RolloutEngine {
  readonly #deps: EngineDependencies;
  readonly #plans: ReadonlyMap<string, RolloutPlan>;
  readonly #attempts: AttemptRunner;
  readonly #earlier: EarlierCommands;

  constructor(dependencies: EngineDependencies) {
    this.#deps = dependencies;
    this.#plans = new Map(dependencies.plans.map((plan) => [plan.name, plan]));
    this.#attempts = new AttemptRunner({
      ...dependencies,
      halt: (rollout, reason) => this.#finish(rollout, 'halted', reason),
    });
    this.#earlier = new EarlierCommands({
      ...dependencies,
      attempts: this.#attempts,
      plan: (name) => this.#plan(name),
    });
  }

  /**
   * Run `work` holding the cluster's planning lease until `deadline`; undefined when another run
   * holds it. The lease keeps two runs from planning at once; it is not what keeps servers apart
   * (the single active rollout does that).
   */
  async withLease<T>(owner: string, deadline: number, work: () => Promise<T>): Promise<T | undefined> {
    const { store, clock, cluster } = this.#deps;
    const ttlMs = Math.max(deadline - clock.now(), 60_000);
    if (!(await store.acquireLease(cluster, LEASE_KIND, owner, clock.now(), ttlMs))) return undefined;
    try {
      return await work();
    } finally {
      await store.releaseLease(cluster, LEASE_KIND, owner);
    }
  }

  activeRollout(): Promise<RolloutRecord | undefined> {
    return this.#deps.store.getActiveRollout(this.#deps.cluster);
  }

  /** Every attempt of the active rollout that has not finished, by target. */
  async unfinishedAttempts(): Promise<Map<string, AttemptRecord>> {
    const active = await this.activeRollout();
    if (active === undefined) return new Map();
    const attempts = await this.#deps.store.listAttempts(this.#deps.cluster, active.rolloutId);
    return new Map(
      attempts.filter((attempt) => !isFinished(attempt)).map((attempt) => [attempt.target, attempt]),
    );
  }

  /** Start a rollout as the cluster's active one; ConflictError while another runs. */
  async start(request: NewRollout): Promise<RolloutRecord> {
    const { store, clock, cluster } = this.#deps;
    const plan = this.#plan(request.plan);
    const now = clock.now();
    const rolloutId = newRolloutId(now);
    const drains = await this.#earlier.wavesStillOut(now);
    const rollout: RolloutRecord = {
      cluster,
      rolloutId,
      plan: plan.name,
      kind: request.kind,
      settings: request.settings,
      reason: request.reason,
      requestedBy: request.actor,
      waveCount: request.waves.length,
      currentWave: 0,
      waveOrder: {},
      status: 'running',
      ...(drains.length > 0 ? { drains } : {}),
      createdAt: now,
      updatedAt: now,
      version: 1,
    };
    const waves = request.waves.map((wave, index) => waveRecord(rollout, index, wave));
    const firstStep = plan.steps[0]!.name;
    await store.startRollout(
      rollout,
      waves,
      waves.flatMap((wave) => newAttempts(wave, firstStep, now)),
    );
    const targets = request.waves.flatMap((wave) => wave.targets);
    await auditRollout(this.#deps.store, this.#deps.clock, 'rollout-started', request.actor, rollout, {
      reason: request.reason,
      details: {
        plan: plan.name,
        kind: request.kind,
        ...request.settings,
        waves: waves.length,
        nodes: targets.length,
      },
    });
    await plan.announce(rollout, 'started', targets);
    return rollout;
  }

  /** Supersede the active rollout: it stops, and its unfinished attempts are abandoned. */
  async supersedeActive(reason: string, actor: string): Promise<RolloutRecord | undefined> {
    const { store, clock, cluster } = this.#deps;
    const active = await this.activeRollout();
    if (active === undefined) return undefined;
    const superseded = await store.updateRollout(
      active,
      { status: 'superseded', haltReason: reason },
      clock.now(),
    );
    for (const attempt of await store.listAttempts(cluster, active.rolloutId)) {
      if (!isFinished(attempt)) await this.#attempts.move(attempt, 'abandon', {});
    }
    await auditRollout(this.#deps.store, this.#deps.clock, 'rollout-superseded', actor, active, { reason });
    return superseded;
  }

  /**
   * Add one target to the active rollout as a wave of its own at the end (so servers still never
   * run two at a time), or start a rollout for it. Returns the rollout the target is in, or undefined
   * when it could not be placed (the scheduled tick picks it up).
   */
  async join(request: NewRollout & { waves: [PlannedWave] }): Promise<string | undefined> {
    const { store, clock, cluster } = this.#deps;
    const [planned] = request.waves;
    for (let round = 0; round < 5; round += 1) {
      const active = await this.activeRollout();
      if (active === undefined) {
        try {
          return (await this.start(request)).rolloutId;
        } catch (error) {
          ignoreConflict(error);
          continue;
        }
      }
      // Another plan's rollout runs: the target waits for the next tick rather than join it.
      if (active.plan !== request.plan) return undefined;
      const present = await store.getAttempts(cluster, active.rolloutId, planned.targets);
      if (present.length > 0) return active.rolloutId;
      const wave = waveRecord(active, active.waveCount, planned);
      try {
        await store.addWave(wave, newAttempts(wave, this.#plan(request.plan).steps[0]!.name, clock.now()));
      } catch (error) {
        ignoreConflict(error);
        // The number is taken by a concurrent join, or by one that crashed before counting its
        // wave: count it in (its attempts are written with it), then try the next number.
        await store
          .updateRollout(active, { waveCount: active.waveCount + 1 }, clock.now())
          .catch(ignoreConflict);
        continue;
      }
      try {
        await store.updateRollout(active, { waveCount: active.waveCount + 1 }, clock.now());
      } catch (error) {
        ignoreConflict(error);
      }
      await auditRollout(this.#deps.store, this.#deps.clock, 'target-joined-rollout', request.actor, active, {
        instanceId: planned.targets[0],
        group: planned.group,
        details: { wave: wave.wave },
      });
      return active.rolloutId;
    }
    return undefined;
  }

  /**
   * A target that left the cluster: its attempt in the active rollout would never finish. Returns the
   * attempt as it was, so the plan can undo what it carried (e.g. revoke signed serials).
   */
  async abandonTarget(target: string, actor: string): Promise<AttemptRecord | undefined> {
    const active = await this.activeRollout();
    if (active === undefined) return undefined;
    const attempt = await this.#deps.store.getAttempt(this.#deps.cluster, active.rolloutId, target);
    if (attempt === undefined || isFinished(attempt)) return undefined;
    if ((await this.#attempts.move(attempt, 'abandon', {})) === undefined) return undefined;
    await auditRollout(this.#deps.store, this.#deps.clock, 'target-abandoned', actor, active, {
      instanceId: target,
    });
    return attempt;
  }

  /**
   * Move a rollout as far as it can go now: send what its open waves are ready for, and open the
   * next position when the wave at the current one has finished. Once a wave is stuck with a target
   * out of tries, no open wave after it starts; those already under way, and the waves before it,
   * run to their end, and the rollout halts when the stuck wave is the current one and nothing else
   * is under way. Sends nothing after `deadline`.
   */
  async advance(rolloutId: string, deadline: number): Promise<RolloutRecord | undefined> {
    const { store, clock, cluster } = this.#deps;
    for (;;) {
      const rollout = await store.getRollout(cluster, rolloutId);
      if (rollout === undefined || rollout.status !== 'running') return rollout;
      if (rollout.currentWave >= rollout.waveCount) return this.#finish(rollout, 'completed');
      if (rollout.drains !== undefined && rollout.drains.length > 0) {
        if (!(await this.#drained(rollout))) return rollout;
        continue;
      }
      const plan = this.#plan(rollout.plan);
      const open: { attempts: AttemptRecord[]; underWay: boolean }[] = [];
      let stuck: { index: number; exhausted: AttemptRecord[] } | undefined;
      for (const wave of await openWaves(store, rollout, plan)) {
        let attempts = await store.getAttempts(cluster, rolloutId, wave.targets);
        const started = attempts.some((attempt) => attempt.state !== 'pending' || attempt.tries > 0);
        if ((stuck === undefined || started) && clock.now() < deadline) {
          attempts = await this.#attempts.retryDue(rollout, plan, attempts);
          if (await this.#attempts.sendReady(rollout, plan, attempts, deadline))
            attempts = await store.getAttempts(cluster, rolloutId, wave.targets);
        }
        const exhausted = attempts.filter((attempt) => attempt.state === 'exhausted');
        const atBarrier = exhausted.length > 0 && plan.steps.some((step) => step.barrier === true);
        if (stuck === undefined && exhausted.length > 0 && (atBarrier || attempts.every(isFinished)))
          stuck = { index: open.length, exhausted };
        open.push({ attempts, underWay: started && !attempts.every(isFinished) });
      }
      if (stuck?.index === 0) {
        if (open.slice(1).some((wave) => wave.underWay)) return rollout;
        const { maxTries } = retryLimits(plan, rollout);
        return this.#finish(
          rollout,
          'halted',
          `${stuck.exhausted.map((attempt) => attempt.target).join(', ')} failed ${maxTries} attempt(s) in wave ${rollout.currentWave + 1}`,
        );
      }
      if (!open[0]!.attempts.every(isFinished)) return rollout;
      if (!(await openNext(this.#deps, rollout, plan))) return rollout;
    }
  }

  /**
   * A command finished (event path): apply each target's result to the attempt it was sent for, then
   * move the rollout on once for all of them. Results for another try, step or rollout are ignored;
   * those of an abandoned attempt or a superseded rollout are observed. True when any attempt moved.
   */
  async onCommandResults(
    key: RoutingKey,
    results: ReadonlyMap<string, CommandResult>,
    deadline: number,
  ): Promise<boolean> {
    const rollout = await this.#rolloutOfToken(key.token);
    if (rollout === undefined || rollout.plan !== key.plan) return false;
    const plan = this.#plan(rollout.plan);
    let applied = false;
    const attempts = await this.#deps.store.getAttempts(this.#deps.cluster, rollout.rolloutId, [
      ...results.keys(),
    ]);
    for (const attempt of attempts) {
      if (attempt.token !== key.token || attempt.step !== key.step) continue;
      const result = results.get(attempt.target)!;
      if (attempt.state === 'abandoned' || rollout.status === 'superseded') {
        await this.#earlier.observe(rollout, attempt, result);
        continue;
      }
      if (await this.#attempts.apply(rollout, plan, attempt, result)) applied = true;
    }
    if (applied) await this.advance(rollout.rolloutId, deadline);
    return applied;
  }

  /**
   * Events are best effort: look up every command of the active rollout still out, apply what
   * finished, fail what ran past its timeout, release claims that were never sent. Returns how many
   * attempts it moved.
   */
  async reconcile(deadline: number): Promise<number> {
    const { store, clock, cluster, limits } = this.#deps;
    // Their events may never come; nothing else looks at them once they have ended.
    await this.#earlier.settle(await this.#earlier.wavesStillOut(clock.now()));
    const rollout = await this.activeRollout();
    if (rollout === undefined) return 0;
    let moved = 0;
    const resultOf = resultReader(this.#deps.results);
    for (const listed of await store.listAttempts(cluster, rollout.rolloutId)) {
      if (listed.state !== 'sent') continue;
      if (clock.now() >= deadline) break;
      const age = clock.now() - (listed.sentAt ?? 0);
      const attempt = await this.#earlier.recoverCommandId(rollout, listed);
      if (attempt.commandId === undefined) {
        if (
          age > limits.orphanedClaimMs &&
          (await this.#attempts.move(attempt, 'release', { lastError: 'claim-expired' }))
        )
          moved += 1;
        continue;
      }
      const result = await resultOf(attempt.commandId, attempt.target);
      const timedOut =
        (result.state === 'running' || result.state === 'missing') && age > limits.commandTimeoutMs;
      const applied = timedOut
        ? await this.#attempts.fail(
            rollout,
            this.#plan(rollout.plan),
            attempt,
            `${attempt.step}-command-timeout`,
          )
        : await this.#attempts.apply(rollout, this.#plan(rollout.plan), attempt, result);
      if (applied) moved += 1;
    }
    if (moved > 0) await this.advance(rollout.rolloutId, deadline);
    return moved;
  }

  /** True (and the drains emptied) once no command of the waves this rollout drains can still run. */
  async #drained(rollout: RolloutRecord): Promise<boolean> {
    const stillOut = await this.#earlier.settle(rollout.drains ?? []);
    if (stillOut !== undefined) {
      this.#deps.logger.info('rollout waits for a command of an earlier rollout', {
        cluster: this.#deps.cluster,
        rolloutId: rollout.rolloutId,
        earlierRolloutId: stillOut.rolloutId,
        instanceId: stillOut.target,
        commandId: stillOut.commandId,
      });
      return false;
    }
    await this.#deps.store
      .updateRollout(rollout, { drains: [] }, this.#deps.clock.now())
      .catch(ignoreConflict);
    return true;
  }

  // ---- waves and the rollout's end -------------------------------------------------------------

  /** End a running rollout; a lost race is re-read and tried again while it still runs. */
  async #finish(rollout: RolloutRecord, status: 'completed' | 'halted', haltReason?: string) {
    const { store, clock, telemetry, logger, cluster } = this.#deps;
    let current: RolloutRecord | undefined = rollout;
    let finished: RolloutRecord | undefined;
    // A rollout that gained a wave meanwhile (a join) is not complete after all.
    const stillDue = (candidate: RolloutRecord | undefined): candidate is RolloutRecord =>
      candidate?.status === 'running' &&
      (status === 'halted' || candidate.currentWave >= candidate.waveCount);
    for (let round = 0; round < 5 && finished === undefined; round += 1) {
      if (!stillDue(current)) break;
      try {
        finished = await store.updateRollout(
          current,
          { status, ...(haltReason ? { haltReason } : {}) },
          clock.now(),
        );
      } catch (error) {
        ignoreConflict(error);
        current = await store.getRollout(cluster, rollout.rolloutId);
      }
    }
    if (finished === undefined) return current;
    await auditRollout(this.#deps.store, this.#deps.clock, `rollout-${status}`, 'rotator', rollout, {
      reason: haltReason,
    });
    if (status === 'halted') {
      telemetry.rolloutHalted(cluster);
      logger.error('rollout halted', { cluster, rolloutId: rollout.rolloutId, haltReason });
    }
    await this.#plan(rollout.plan).announce(finished, status, []);
    return finished;
  }

  // ---- helpers ---------------------------------------------------------------------------------

  /** The rollout a token was issued for: the active one, else any (a late result of a finished one). */
  async #rolloutOfToken(token: string): Promise<RolloutRecord | undefined> {
    const active = await this.activeRollout();
    if (active !== undefined && tokenBelongsTo(token, active.rolloutId)) return active;
    const all = await this.#deps.store.listRollouts(this.#deps.cluster);
    return all.find((rollout) => tokenBelongsTo(token, rollout.rolloutId));
  }

  #plan(name: string): RolloutPlan {
    const plan = this.#plans.get(name);
    if (plan === undefined) throw new RotatorError(`no plan named ${name}`, { context: { plan: name } });
    return plan;
  }
}

function retryLimits(plan: RolloutPlan, rollout: RolloutRecord): { maxTries: number } {
  const policy = plan.failurePolicy(rollout);
  return { maxTries: policy.kind === 'retry' ? policy.maxTries : 1 };
}
