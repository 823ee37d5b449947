import type { Clock } from '../clock';
import { ignoreConflict } from '../errors';
import type { AttemptRunner } from './attempts';
import type { EngineLimits } from './engine';
import type { AttemptRecord, DrainedWave, RolloutRecord } from './model';
import type { CommandResult, CommandResults, RolloutPlan } from './plan';
import { formatRoutingKey } from './routing';
import type { RolloutStore } from './store';
import { openWaves } from './window';

export interface EarlierCommandsDependencies {
  cluster: string;
  store: RolloutStore;
  results: CommandResults;
  clock: Clock;
  limits: EngineLimits;
  attempts: AttemptRunner;
  plan(name: string): RolloutPlan;
}

/**
 * How long after a rollout ended its unsettled commands are still looked at. Their events can be
 * lost and ticks can stop for a while (a throttled or failing function); SSM keeps invocation
 * results for 30 days, and a day of ended rollouts is a handful of items to read.
 */
const SETTLE_WINDOW_MS = 24 * 60 * 60 * 1000;

/** A command of an ended rollout that may still run on its target. */
export interface CommandStillOut {
  rolloutId: string;
  target: string;
  commandId?: string;
}

/**
 * Commands of rollouts that ended (superseded or halted) while they were out. SSM runs what it was
 * sent whatever the table says, so a later rollout waits for them, and what they left on their
 * targets is recorded even when their status-change event never comes.
 */
export class EarlierCommands {
  readonly #deps: EarlierCommandsDependencies;

  constructor(dependencies: EarlierCommandsDependencies) {
    this.#deps = dependencies;
  }

  /**
   * The open waves of rollouts that ended within the settle window, with whatever those were still
   * waiting for themselves. Only commands younger than the command timeout are waited for; older
   * ones are only looked at, for what they left on their targets.
   */
  async wavesStillOut(now: number): Promise<DrainedWave[]> {
    const { store, cluster, limits } = this.#deps;
    const ended = (await store.listRollouts(cluster)).filter(
      (rollout) =>
        (rollout.status === 'superseded' || rollout.status === 'halted') &&
        now - rollout.updatedAt < Math.max(SETTLE_WINDOW_MS, limits.commandTimeoutMs) &&
        rollout.currentWave < rollout.waveCount,
    );
    const drains: DrainedWave[] = [];
    for (const rollout of ended) {
      for (const wave of await openWaves(store, rollout, this.#deps.plan(rollout.plan)))
        drains.push({ rolloutId: rollout.rolloutId, wave: wave.wave });
      drains.push(...(rollout.drains ?? []));
    }
    return drains;
  }

  /**
   * Settle what finished among the commands of these waves: a halted rollout's attempt takes its
   * result, a superseded one's is abandoned and observed. Returns the first command that may still
   * run, if any.
   */
  async settle(waves: readonly DrainedWave[]): Promise<CommandStillOut | undefined> {
    const { store, clock, cluster, limits, results } = this.#deps;
    let stillOut: CommandStillOut | undefined;
    for (const drained of waves) {
      const earlier = await store.getRollout(cluster, drained.rolloutId);
      const wave = await store.getWave(cluster, drained.rolloutId, drained.wave);
      if (earlier === undefined || wave === undefined) continue;
      for (const listed of await store.getAttempts(cluster, drained.rolloutId, wave.targets)) {
        // sentAt stays on an attempt only while its step is out, or was when it was abandoned.
        if (listed.sentAt === undefined || (listed.state !== 'sent' && listed.state !== 'abandoned'))
          continue;
        const age = clock.now() - listed.sentAt;
        const attempt = await this.recoverCommandId(earlier, listed);
        const running = {
          rolloutId: earlier.rolloutId,
          target: attempt.target,
          commandId: attempt.commandId,
        };
        if (attempt.commandId === undefined) {
          // A claim SSM shows no command for may still be sent by a run that is slow, not dead.
          if (age < limits.orphanedClaimMs) stillOut ??= running;
          continue;
        }
        const outcome = await results.invocation(attempt.commandId, attempt.target);
        if (outcome.state === 'running' || outcome.state === 'missing') {
          // Past its timeout the node agent has killed it.
          if (age < limits.commandTimeoutMs) stillOut ??= running;
          continue;
        }
        if (earlier.status === 'halted' && attempt.state === 'sent') {
          await this.#deps.attempts.apply(earlier, this.#deps.plan(earlier.plan), attempt, outcome);
        } else {
          await this.observe(earlier, attempt, outcome);
        }
      }
    }
    return stillOut;
  }

  /**
   * A finished command of an attempt its rollout gave up: the plan records what it left on the
   * target, once (the attempt then drops its sentAt, so it is not settled again).
   */
  async observe(rollout: RolloutRecord, attempt: AttemptRecord, result: CommandResult): Promise<void> {
    if (result.state === 'running' || result.state === 'missing') return;
    if (attempt.state === 'done' || attempt.state === 'exhausted') return;
    let abandoned: AttemptRecord | undefined = attempt;
    // A supersede that died part-way left this attempt unabandoned: finish that first.
    if (attempt.state !== 'abandoned') abandoned = await this.#deps.attempts.move(attempt, 'abandon', {});
    if (abandoned === undefined || abandoned.state !== 'abandoned') return;
    await this.#deps.plan(rollout.plan).observe?.(rollout, attempt, result);
    await this.#deps.store
      .updateAttempt(
        abandoned,
        { state: 'abandoned', token: abandoned.token, version: abandoned.version },
        {},
        this.#deps.clock.now(),
        ['sentAt'],
      )
      .catch(ignoreConflict);
  }

  /**
   * A claim without a command id, made by a run that died around its send: ask the command service
   * whether it went out under the attempt's routing key, and record its id if it did.
   */
  async recoverCommandId(rollout: RolloutRecord, attempt: AttemptRecord): Promise<AttemptRecord> {
    if (attempt.commandId !== undefined || attempt.sentAt === undefined) return attempt;
    const { store, clock, cluster, results } = this.#deps;
    const key = formatRoutingKey({ cluster, plan: rollout.plan, step: attempt.step, token: attempt.token });
    const commandId = await results.findSent(attempt.target, key, attempt.sentAt);
    if (commandId === undefined) return attempt;
    try {
      return await store.updateAttempt(
        attempt,
        { state: attempt.state, token: attempt.token, version: attempt.version },
        { commandId },
        clock.now(),
      );
    } catch (error) {
      ignoreConflict(error);
      return { ...attempt, commandId };
    }
  }
}
