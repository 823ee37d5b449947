import { startWorld, type World, type WorldOptions } from '../../local/world';
import type { RolloutRecord } from '../../shared/rollout/model';

/**
 * The first issuance, ticked (past any backoff) until no rollout runs: the servers' HTTPS API, which
 * every gossip step calls, needs their certificates, and a gossip rotation is refused beside it.
 */
export async function issueFleet(world: World): Promise<void> {
  for (let round = 0; round < 10; round += 1) {
    await world.tick();
    await world.settle();
    if ((await world.runtime.table.getActiveRollout(world.cluster.name)) === undefined) return;
    world.clock.advance(2 * 60_000);
  }
  throw new Error('the first issuance did not finish');
}

/**
 * Three servers and a client for the gossip e2e suites, their first certificates issued. Backoffs
 * are long enough, in real time too, for a stopped server to start and rejoin (serf fails it after
 * its suspicion window) before its tries run out; a repaired, restarted or enabled server has a
 * minute to come back as a voter and hold the gate 10 s (a pruned straggler waits for autopilot's
 * next pass and its stabilization time first).
 */
export async function startGossipWorld(name: string, options: Omit<WorldOptions, 'cluster'> = {}) {
  const world = await startWorld({
    servers: 3,
    clients: 1,
    ...options,
    cluster: {
      name,
      gossip: { maxTries: 10, backoffBaseSeconds: 15, backoffMaxSeconds: 30 },
      rollout: { serverHealthTimeoutSeconds: 60 },
    },
  });
  try {
    await issueFleet(world);
  } catch (error) {
    await world.stop();
    throw error;
  }
  return world;
}

/** Tick (and let 30 s of rotator time pass for backoffs) until the rollout ends; returns it as it ended. */
export async function runToEnd(world: World, rolloutId: string): Promise<RolloutRecord> {
  for (let round = 0; round < 40; round += 1) {
    await world.settle();
    const rollout = await world.runtime.table.getRollout(world.cluster.name, rolloutId);
    if (rollout !== undefined && rollout.status !== 'running') return rollout;
    world.clock.advance(30_000);
    await world.tick();
  }
  const attempts = await world.runtime.table.listAttempts(world.cluster.name, rolloutId);
  throw new Error(
    `rollout ${rolloutId} did not end: ${attempts.map((a) => `${a.target} ${a.step} ${a.state} ${a.tries} ${a.lastError ?? ''}`).join('; ')}`,
  );
}
