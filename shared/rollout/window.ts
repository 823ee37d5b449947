import type { RolloutRecord, WaveRecord } from './model';
import type { RolloutPlan } from './plan';
import type { RolloutStore } from './store';
import { waveAt } from './waves';

/**
 * The waves a rollout works on now: the one at its current position and, when that wave is of the
 * plan's concurrent group, the waves of that group right after it, as many as the plan's bound of
 * targets in flight allows. A function of the rollout, its waves and the plan alone (no item records
 * it), so the engine and whoever drains an ended rollout see the same window.
 */
export async function openWaves(
  store: RolloutStore,
  rollout: RolloutRecord,
  plan: RolloutPlan,
): Promise<WaveRecord[]> {
  const first = await waveAt(store, rollout, rollout.currentWave);
  const concurrency = plan.concurrency?.(rollout);
  const waves = [first];
  if (concurrency === undefined || first.group !== concurrency.group) return waves;
  let targets = first.targets.length;
  for (let position = rollout.currentWave + 1; position < rollout.waveCount; position += 1) {
    const wave = await waveAt(store, rollout, position);
    if (wave.group !== concurrency.group || targets + wave.targets.length > concurrency.maxTargets) break;
    waves.push(wave);
    targets += wave.targets.length;
  }
  return waves;
}
