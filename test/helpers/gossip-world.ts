import type { World } from '../../local/world';

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
