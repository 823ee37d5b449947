import { ValidationError } from '../../errors';
import type { AttemptRecord, RolloutRecord, WaveRecord } from '../../rollout/model';

/**
 * What a rollout id may be: `newRolloutId` makes `yyyymmddhhmmss-<hex>`; any id without '#' keeps
 * its keys apart from another rollout's. The state table refuses an item outside it on read too.
 */
export const ROLLOUT_ID = /^[A-Za-z0-9._!-]{1,64}$/;

/**
 * What the table cannot store as asked, refused before anything is written: a rollout id outside
 * ROLLOUT_ID (a `#` would let its keys run into another rollout's), a wave or attempt of another
 * rollout would be filed under this one, and a target or wave listed twice is one item written
 * twice (a BatchWriteItem refuses it outright, after earlier batches went through). Exported so the
 * in-memory store refuses the same input.
 */
export function checkRollout(
  rollout: RolloutRecord,
  waves: readonly WaveRecord[],
  attempts: readonly AttemptRecord[],
): void {
  const issues: string[] = [];
  if (!ROLLOUT_ID.test(rollout.rolloutId)) issues.push(`rolloutId: must match ${ROLLOUT_ID.source}`);
  if (waves.some((wave) => wave.cluster !== rollout.cluster || wave.rolloutId !== rollout.rolloutId)) {
    issues.push('a wave belongs to another rollout');
  }
  const numbers = waves.map((wave) => wave.wave);
  for (const wave of duplicates(numbers)) issues.push(`wave ${wave} is listed twice`);
  if (issues.length > 0)
    throw new ValidationError('rollout refused', issues, { context: { cluster: rollout.cluster } });
  checkAttempts(rollout.cluster, rollout.rolloutId, attempts);
}

/** As checkRollout, for the attempts of a wave added later. */
export function checkAttempts(cluster: string, rolloutId: string, attempts: readonly AttemptRecord[]): void {
  const issues: string[] = [];
  if (attempts.some((attempt) => attempt.cluster !== cluster || attempt.rolloutId !== rolloutId)) {
    issues.push('an attempt belongs to another rollout');
  }
  for (const target of duplicates(attempts.map((attempt) => attempt.target))) {
    issues.push(`target ${target} has two attempts`);
  }
  if (issues.length > 0)
    throw new ValidationError('attempts refused', issues, { context: { cluster, rolloutId } });
}

function duplicates<T>(values: readonly T[]): T[] {
  const seen = new Set<T>();
  const twice = new Set<T>();
  for (const value of values) (seen.has(value) ? twice : seen).add(value);
  return [...twice];
}
