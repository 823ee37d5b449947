import type { AttemptRecord, AttemptState, RolloutRecord, WaveRecord } from './model';

/** What a conditional attempt update expects; any mismatch means another actor got there first. */
export interface AttemptExpectation {
  state: AttemptState;
  token: string;
  version?: number;
}

export type AttemptChanges = Partial<
  Omit<AttemptRecord, 'cluster' | 'rolloutId' | 'target' | 'wave' | 'group' | 'version' | 'updatedAt'>
>;
export type AttemptField = keyof AttemptChanges;
export type RolloutChanges = Partial<
  Pick<RolloutRecord, 'currentWave' | 'status' | 'haltReason' | 'waveCount' | 'waveOrder' | 'drains'>
>;

/**
 * Where rollouts, their waves and attempts, and the cluster leases live. Every change is
 * conditional, so a duplicate, late or out-of-order event turns into a ConflictError the caller can
 * drop. Records handed in or out are the caller's own copies.
 */
export interface RolloutStore {
  /**
   * Take or renew the cluster lease of this kind until `now + ttlMs`; false while another owner holds
   * one that has not expired yet (an expired lease is taken over).
   */
  acquireLease(cluster: string, kind: string, owner: string, now: number, ttlMs: number): Promise<boolean>;
  /** Give the lease up; nothing happens when someone else holds it now. */
  releaseLease(cluster: string, kind: string, owner: string): Promise<void>;
  /**
   * Write the waves and attempts, then the rollout as the cluster's active one. At most one rollout
   * is active per cluster (that is what keeps servers from reloading two at a time); ConflictError
   * when one already is, and then the rollout's waves and attempts are never read.
   */
  startRollout(
    rollout: RolloutRecord,
    waves: readonly WaveRecord[],
    attempts: readonly AttemptRecord[],
  ): Promise<void>;
  getRollout(cluster: string, rolloutId: string): Promise<RolloutRecord | undefined>;
  getActiveRollout(cluster: string): Promise<RolloutRecord | undefined>;
  /** Every rollout of the cluster, finished ones too, by rollout id. */
  listRollouts(cluster: string): Promise<RolloutRecord[]>;
  /**
   * Conditional on the version read; ConflictError when another invocation moved the rollout first.
   * A rollout that stops running frees the cluster's active slot.
   */
  updateRollout(rollout: RolloutRecord, changes: RolloutChanges, now: number): Promise<RolloutRecord>;
  getWave(cluster: string, rolloutId: string, wave: number): Promise<WaveRecord | undefined>;
  /**
   * Add a wave at `wave.wave`, then its attempts; ConflictError when that number is taken (then no
   * attempt is written, so none can point at another target's wave). An attempt that exists already
   * is left as it is. The rollout's waveCount is the caller's to raise afterwards.
   */
  addWave(wave: WaveRecord, attempts: readonly AttemptRecord[]): Promise<void>;
  getAttempt(cluster: string, rolloutId: string, target: string): Promise<AttemptRecord | undefined>;
  /** Several attempts in the order asked for; unknown targets are left out. */
  getAttempts(cluster: string, rolloutId: string, targets: readonly string[]): Promise<AttemptRecord[]>;
  /** Every attempt of a rollout, by target. */
  listAttempts(cluster: string, rolloutId: string): Promise<AttemptRecord[]>;
  /**
   * Change an attempt if and only if it is still in the expected state and try; returns the new record
   * with its version one higher. Changes set to undefined are left alone; fields in `remove` are deleted.
   */
  updateAttempt(
    attempt: Pick<AttemptRecord, 'cluster' | 'rolloutId' | 'target'>,
    expected: AttemptExpectation,
    changes: AttemptChanges,
    now: number,
    remove?: readonly AttemptField[],
  ): Promise<AttemptRecord>;
}
