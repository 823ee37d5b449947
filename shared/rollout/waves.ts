import type { Clock } from '../clock';
import { ignoreConflict, RotatorError } from '../errors';
import type { Logger } from '../logger';
import type { AttemptRecord, PlannedWave, RolloutRecord, WaveRecord } from './model';
import type { RolloutPlan } from './plan';
import type { RolloutStore } from './store';

export interface WaveDependencies {
  store: RolloutStore;
  logger: Logger;
  clock: Clock;
}

/** The wave at a position of the rollout, where the plan may have swapped another in. */
export async function waveAt(
  store: RolloutStore,
  rollout: RolloutRecord,
  position: number,
): Promise<WaveRecord> {
  const number = rollout.waveOrder[String(position)] ?? position;
  const wave = await store.getWave(rollout.cluster, rollout.rolloutId, number);
  if (wave === undefined) {
    throw new RotatorError('a wave of the rollout is missing', {
      context: { cluster: rollout.cluster, rolloutId: rollout.rolloutId, wave: number },
    });
  }
  return wave;
}

/** Open the next position: the plan may pick which remaining wave goes there, and gate it. */
export async function openNext(
  deps: WaveDependencies,
  rollout: RolloutRecord,
  plan: RolloutPlan,
): Promise<boolean> {
  const position = rollout.currentWave + 1;
  const changes: { currentWave: number; waveOrder?: Record<string, number> } = { currentWave: position };
  if (position < rollout.waveCount) {
    let next = await waveAt(deps.store, rollout, position);
    if (plan.chooseWave !== undefined) {
      const remaining = [];
      for (let later = position; later < rollout.waveCount; later += 1)
        remaining.push(await waveAt(deps.store, rollout, later));
      const chosen = await plan.chooseWave(rollout, remaining);
      const chosenPosition = position + remaining.findIndex((wave) => wave.wave === chosen.wave);
      if (chosenPosition > position) {
        changes.waveOrder = {
          ...rollout.waveOrder,
          [String(position)]: chosen.wave,
          [String(chosenPosition)]: next.wave,
        };
        next = chosen;
      }
    }
    if (plan.gate !== undefined) {
      const gate = await plan.gate(rollout, next);
      if (!gate.open) {
        deps.logger.info('next wave waits for its gate', {
          cluster: rollout.cluster,
          rolloutId: rollout.rolloutId,
          reason: gate.reason,
        });
        return false;
      }
    }
  }
  await deps.store.updateRollout(rollout, changes, deps.clock.now()).catch(ignoreConflict);
  return true;
}

export function waveRecord(rollout: RolloutRecord, wave: number, planned: PlannedWave): WaveRecord {
  return {
    cluster: rollout.cluster,
    rolloutId: rollout.rolloutId,
    wave,
    group: planned.group,
    targets: [...planned.targets],
  };
}

export function newAttempts(wave: WaveRecord, firstStep: string, now: number): AttemptRecord[] {
  return wave.targets.map((target) => ({
    cluster: wave.cluster,
    rolloutId: wave.rolloutId,
    target,
    wave: wave.wave,
    group: wave.group,
    state: 'pending',
    step: firstStep,
    token: '',
    tries: 0,
    version: 1,
    updatedAt: now,
  }));
}
