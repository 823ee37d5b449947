/**
 * The staged-rollout model, free of what is being rolled out: a rollout is an ordered list of waves,
 * each wave a list of targets, and each target of the rollout one attempt item. Waves and attempts are
 * items of their own, so the rollout item stays the same size for 5 nodes or 20,000.
 */

export type RolloutStatus = 'running' | 'completed' | 'halted' | 'superseded';

/** A plan's own settings for one rollout (reload mode, revoke choice, ...): small scalars only. */
export type RolloutSettings = Readonly<Record<string, string | number | boolean>>;

export interface RolloutRecord {
  cluster: string;
  rolloutId: string;
  /** The plan that runs this rollout; it names the plan in the routing key too. */
  plan: string;
  /** The plan's variant, e.g. `rotate` or `emergency`. */
  kind: string;
  settings: RolloutSettings;
  reason: string;
  requestedBy: string;
  /** Waves are numbered 0..waveCount-1 in planned order. */
  waveCount: number;
  /** The position being worked on; `waveCount` when every wave is done. */
  currentWave: number;
  /**
   * Position → wave number where the plan chose another wave than the planned one when a position
   * opened (gossip: the leader goes last). Holds only the swapped positions.
   */
  waveOrder: Readonly<Record<string, number>>;
  status: RolloutStatus;
  haltReason?: string;
  /**
   * Waves of rollouts that ended (superseded or halted) while their commands may still run on
   * nodes. This rollout sends nothing until each of those has finished or timed out, so a
   * superseding rollout never has a server install in flight beside the one it cut short. Emptied
   * once they have.
   */
  drains?: readonly DrainedWave[];
  createdAt: number;
  updatedAt: number;
  version: number;
}

/** One wave of an earlier rollout, by its wave number (not its position). */
export interface DrainedWave {
  rolloutId: string;
  wave: number;
}

export interface WaveRecord {
  cluster: string;
  rolloutId: string;
  wave: number;
  /** What the targets have in common, as the plan groups them (e.g. `server`, `client`). */
  group: string;
  targets: string[];
}

/** A target's progress in one rollout; see `transitions.ts` for how it may change. */
export type AttemptState =
  /** Waits for its wave to send `step` (the first step, or the next after a finished one). */
  | 'pending'
  /** `step` was claimed for a command (commandId set once it is sent). */
  | 'sent'
  /** Every step finished. */
  | 'done'
  /** The last try failed; tried again after `nextAttemptAt`. */
  | 'failed'
  /** No tries left, or the plan halts at the first failure: the rollout halts. */
  | 'exhausted'
  /** Its rollout was superseded; late results are ignored. */
  | 'abandoned';

export interface AttemptRecord {
  cluster: string;
  rolloutId: string;
  target: string;
  wave: number;
  group: string;
  state: AttemptState;
  step: string;
  /** Identifies one try; a result carrying another token belongs to an earlier try and is ignored. */
  token: string;
  /** Tries started (first steps sent) in this rollout. */
  tries: number;
  commandId?: string;
  sentAt?: number;
  nextAttemptAt?: number;
  lastError?: string;
  /**
   * What a finished step hands to the next one (the certificate plan: the signed public
   * certificates). Never a secret: attempt items are as readable as the rest of the table.
   */
  carry?: Readonly<Record<string, unknown>>;
  version: number;
  updatedAt: number;
}

/** A target of a new wave, as a plan lays it out. */
export interface PlannedWave {
  group: string;
  targets: string[];
}

/** An attempt its rollout will not change any more. */
export const isFinished = (attempt: Pick<AttemptRecord, 'state'>): boolean =>
  attempt.state === 'done' || attempt.state === 'exhausted' || attempt.state === 'abandoned';
