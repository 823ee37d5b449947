import { type AttemptRecord, isFinished, type RolloutRecord } from '../shared/rollout/model';
import { cleanCell, isoOrNull, paint, progressBar, relativeTime, shortDuration } from './format';

/** Where a rollout stands, from its item and its attempts: what status shows and watch follows. */
export interface RolloutProgress {
  rolloutId: string;
  plan: string;
  kind: string;
  reason: string;
  requestedBy: string;
  status: RolloutRecord['status'];
  haltReason?: string;
  /** The wave being worked on, 1-based; `waves` once every wave is done. */
  wave: number;
  waves: number;
  targets: number;
  done: number;
  /** Attempts that failed: waiting to be tried again, or out of tries. */
  failed: number;
  inFlight: { instanceId: string; step: string; state: string }[];
  /** The targets that failed, with the step and what their last try reported. */
  failures: { instanceId: string; step: string; error: string }[];
  startedAt: number;
  updatedAt: number;
  /** From the pace so far; undefined until a target is done, and once the rollout ended. */
  eta?: number;
}

export function rolloutProgress(
  rollout: RolloutRecord,
  attempts: readonly AttemptRecord[],
  now: number,
): RolloutProgress {
  const done = attempts.filter((attempt) => attempt.state === 'done').length;
  const inFlight = attempts
    .filter((attempt) => attempt.state === 'sent')
    .map((attempt) => ({ instanceId: attempt.target, step: attempt.step, state: attempt.state }))
    .sort((a, b) => a.instanceId.localeCompare(b.instanceId));
  const failures = attempts
    .filter((attempt) => attempt.state === 'failed' || attempt.state === 'exhausted')
    .map((attempt) => ({
      instanceId: attempt.target,
      step: attempt.step,
      error: attempt.lastError ?? 'unknown',
    }))
    .sort((a, b) => a.instanceId.localeCompare(b.instanceId));
  const elapsed = Math.max(0, now - rollout.createdAt);
  const finished = attempts.filter(isFinished).length;
  const eta =
    rollout.status === 'running' && done > 0 && finished < attempts.length
      ? now + Math.round((elapsed / done) * (attempts.length - finished))
      : undefined;
  return {
    rolloutId: rollout.rolloutId,
    plan: rollout.plan,
    kind: rollout.kind,
    reason: rollout.reason,
    requestedBy: rollout.requestedBy,
    status: rollout.status,
    ...(rollout.haltReason === undefined ? {} : { haltReason: rollout.haltReason }),
    wave: Math.min(rollout.currentWave + 1, rollout.waveCount),
    waves: rollout.waveCount,
    targets: attempts.length,
    done,
    failed: failures.length,
    inFlight,
    failures,
    startedAt: rollout.createdAt,
    updatedAt: rollout.updatedAt,
    ...(eta === undefined ? {} : { eta }),
  };
}

/** The `--json` shape: times as UTC ISO strings, every field always present. */
export function progressJson(progress: RolloutProgress) {
  return {
    ...progress,
    haltReason: progress.haltReason ?? null,
    startedAt: isoOrNull(progress.startedAt),
    updatedAt: isoOrNull(progress.updatedAt),
    eta: isoOrNull(progress.eta),
  };
}

/** `3/10 done  wave 2/4  1 failed  ETA in 2m`, the line watch and rotate --wait keep up to date. */
export function progressLine(progress: RolloutProgress, now: number, colour: boolean): string {
  return [
    `${progress.done}/${progress.targets} done`,
    `wave ${progress.wave}/${progress.waves}`,
    paint(`${progress.failed} failed`, progress.failed > 0 ? 'red' : undefined, colour),
    `${progress.inFlight.length} in flight`,
    progress.eta === undefined ? undefined : `ETA ${relativeTime(progress.eta, now)}`,
  ]
    .filter((part) => part !== undefined)
    .join('  ');
}

/** The live view: the bar, the counts, and which nodes are in flight at which step. */
export function progressFrame(progress: RolloutProgress, now: number, colour: boolean): string[] {
  const nodes = progress.inFlight.map((node) => `${node.instanceId} (${node.step})`);
  const shown = nodes.slice(0, 6).join(', ') + (nodes.length > 6 ? `, +${nodes.length - 6} more` : '');
  return [
    `rollout ${progress.rolloutId} (${progress.plan} ${progress.kind}): ${cleanCell(progress.reason)}`,
    `${paint(progressBar(progress.done, progress.targets), 'green', colour)} ${progressLine(progress, now, colour)}`,
    `in flight: ${nodes.length === 0 ? '-' : cleanCell(shown)}`,
  ];
}

/** How a rollout that ended is told, and the exit code it means. */
export function outcomeOf(progress: RolloutProgress, colour: boolean): { line: string; code: number } {
  const took = shortDuration(progress.updatedAt - progress.startedAt);
  if (progress.status === 'completed')
    return {
      line: `rollout ${progress.rolloutId} ${paint('completed', 'green', colour)}: ${progress.done}/${progress.targets} done in ${took}`,
      code: 0,
    };
  const failures = progress.failures
    .slice(0, 10)
    .map((failure) => `\n  ${failure.instanceId} ${failure.step}: ${cleanCell(failure.error)}`);
  return {
    line: `rollout ${progress.rolloutId} ${paint(progress.status, 'red', colour)} after ${took}: ${cleanCell(progress.haltReason ?? 'no reason recorded')}${failures.join('')}`,
    code: 1,
  };
}
