import type { AttemptRecord, RolloutRecord, WaveRecord } from './model';

/** One node step of a plan, run as one command per batch of targets. */
export interface StepSpec {
  name: string;
  /** Sent only once no attempt of the wave is still at an earlier step (installs wait for every prepare). */
  waitsForWave?: boolean;
  /**
   * Sent only once no attempt of the wave is at an earlier step, failed and exhausted ones included:
   * a step that acts for the whole wave (gossip: `use` after every server holds the key). A wave
   * with a barrier halts once one of its attempts is out of tries, since the others could never
   * pass it.
   */
  barrier?: boolean;
}

export type FailurePolicy =
  /**
   * Try a failed target again after backoff; a target out of tries halts the rollout once its wave
   * settles. A try starts again at the first step unless the failure named another (`retryFrom`).
   */
  | { kind: 'retry'; maxTries: number; backoffBaseSeconds: number; backoffMaxSeconds: number }
  /** The first failure halts the rollout at once. */
  | { kind: 'halt' };

/** What a finished command said about one target, as the command gateway reads it back. */
export type StepOutcome =
  | { state: 'succeeded'; stdout: string }
  | { state: 'failed'; detail: string; stdout: string };

/** What became of a command for one target, as the command gateway reads it back. */
export type CommandResult = { state: 'running' } | { state: 'missing' } | StepOutcome;

/** The engine's view of commands: only their results. Sending is the plan's business. */
export interface CommandResults {
  invocation(commandId: string, target: string): Promise<CommandResult>;
  /**
   * Every target's result of one command in as few calls as the gateway can make, for a gateway
   * that can list them; a target whose output did not come whole is left out, to be read alone.
   */
  invocations?(commandId: string): Promise<{ results: ReadonlyMap<string, CommandResult> }>;
  /**
   * The id of a command sent to `target` under `routingKey` no earlier than `since`, if one went out:
   * a run that died between sending a command and recording its id leaves a claim without one.
   */
  findSent(target: string, routingKey: string, since: number): Promise<string | undefined>;
}

/**
 * A reader of command results for one pass: each command's results listed once (where the port can
 * list them), a target the listing left out read alone. A new pass needs a new reader.
 */
export function resultReader(
  results: Pick<CommandResults, 'invocation' | 'invocations'>,
): (commandId: string, target: string) => Promise<CommandResult> {
  const listings = new Map<string, Promise<{ results: ReadonlyMap<string, CommandResult> }>>();
  return async (commandId, target) => {
    if (results.invocations === undefined) return results.invocation(commandId, target);
    let listing = listings.get(commandId);
    if (listing === undefined) {
      listing = results.invocations(commandId);
      listings.set(commandId, listing);
    }
    return (await listing).results.get(target) ?? results.invocation(commandId, target);
  };
}

/**
 * Where a failed target's next try starts: the plan's first step unless a failure names one. A
 * `final` failure gets no next try, whatever tries are left (nothing a retry could change).
 */
export interface RetryPoint {
  retryFrom?: string;
  final?: boolean;
}

export type StepVerdict =
  /** The step did what it should; `carry` is handed to the next step (replacing the previous carry). */
  { ok: true; carry?: Record<string, unknown> } | ({ ok: false; reason: string } & RetryPoint);

export interface StepBatches {
  /** Attempts to send together, one command each. */
  batches: AttemptRecord[][];
  /**
   * Attempts the step cannot be sent to now (offline node, a gate of the whole wave that failed):
   * each fails with its reason.
   */
  unreachable: ({ attempt: AttemptRecord; reason: string } & RetryPoint)[];
}

export type RolloutMilestone = 'started' | 'completed' | 'halted';

/**
 * What the engine asks of a plan. The engine owns the rollout's life (waves, attempts and their
 * transitions, retries, halting, supersede, reconcile, deadlines); a plan owns what its steps mean
 * and what they touch. A plan never writes rollout, wave or attempt items.
 */
export interface RolloutPlan {
  /** Names the plan in rollout items and routing keys: lower-case letters and digits. */
  readonly name: string;
  readonly steps: readonly StepSpec[];
  failurePolicy(rollout: RolloutRecord): FailurePolicy;
  /**
   * Waves of `group` may run side by side, together holding at most `maxTargets` targets; waves of
   * any other group run one at a time (default: every wave alone). A plan with `chooseWave` or `gate`
   * has none: those pick and admit one wave at a time.
   */
  concurrency?(rollout: RolloutRecord): { group: string; maxTargets: number } | undefined;
  /** Whether `step` may be sent now at all (e.g. the CA can sign); false leaves it for the next run. */
  ready?(rollout: RolloutRecord, step: string): Promise<boolean>;
  /** Split the wave's attempts waiting at `step` into commands. */
  batch(rollout: RolloutRecord, step: string, attempts: readonly AttemptRecord[]): Promise<StepBatches>;
  /** Send `step` to claimed attempts with the routing key as its tag; returns the command id. */
  send(
    rollout: RolloutRecord,
    step: string,
    attempts: readonly AttemptRecord[],
    routingKey: string,
  ): Promise<string>;
  /**
   * Judge one target's finished command. Runs before the attempt commits and may run again for the
   * same result (a run that died before committing, two appliers racing), so whatever it records of
   * what the target now holds must be idempotent: a fact recorded only after the commit is lost to a
   * crash between the two writes.
   */
  judge(rollout: RolloutRecord, attempt: AttemptRecord, outcome: StepOutcome): Promise<StepVerdict>;
  /**
   * A finished command of an attempt its rollout no longer acts on (superseded, or the target
   * abandoned): record what the target now holds, nothing more. May run more than once.
   */
  observe?(rollout: RolloutRecord, attempt: AttemptRecord, outcome: StepOutcome): Promise<void>;
  /**
   * The attempt finished its last step (called once, by whoever committed it). `attempt` is as it was
   * before that step finished (its carry intact); `result` is the last verdict's carry.
   */
  onSucceeded?(
    rollout: RolloutRecord,
    attempt: AttemptRecord,
    result?: Record<string, unknown>,
  ): Promise<void>;
  /** A try failed; `nextAttemptAt` is absent when no try follows. */
  onFailed?(
    rollout: RolloutRecord,
    attempt: AttemptRecord,
    reason: string,
    nextAttemptAt?: number,
  ): Promise<void>;
  /**
   * Which of the waves not yet run goes next (default: the first). Called when a position opens, so
   * the choice can follow the cluster as it is then (gossip: the current leader goes last).
   */
  chooseWave?(rollout: RolloutRecord, candidates: readonly WaveRecord[]): Promise<WaveRecord>;
  /** Whether `next` may open now; a closed gate is checked again on the next tick or event. */
  gate?(rollout: RolloutRecord, next: WaveRecord): Promise<{ open: true } | { open: false; reason: string }>;
  /** Tell the world the rollout reached a milestone (events named by the plan). */
  announce(rollout: RolloutRecord, milestone: RolloutMilestone, targets: readonly string[]): Promise<void>;
}
