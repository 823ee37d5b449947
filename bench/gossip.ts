// npm run bench:gossip: how long a gossip key rotation takes on 3 and 5 servers with real serf agents
// under Nomad's WAN gossip profile, stage by stage, and what it costs in SSM and Secrets Manager calls;
// then the same with staged restarts after it (restart: "staged"), each server restarted behind the
// gate and held stable for gossip.stabilizationSeconds (10 s) before the next.
import '../local/quiet-sdk-warning';
import 'reflect-metadata';
import { mkdir, writeFile } from 'node:fs/promises';
import { startWorld, type World } from '../local/world';
import { countCalls, difference, median, say } from './measure';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SERVER_COUNTS = [3, 5];
const STAGES = ['inspect', 'install', 'use', 'remove', 'persist'] as const;

type RestartMode = 'none' | 'staged';

interface RoundResult {
  seconds: number;
  /** Of `seconds`, the staged restarts' share: from the restart rollout's start to its end. */
  restartSeconds: number;
  /** Seconds from one stage's first dispatch to the next one's (the last: to the rollout's end). */
  stageSeconds: Record<string, number>;
  calls: Record<string, number>;
}

/** Tick (a failed stage's backoff passed at once) until the rollout completes. */
async function runToCompletion(world: World, rolloutId: string): Promise<void> {
  for (let round = 0; ; round += 1) {
    await world.settle();
    const rollout = await world.runtime.table.getRollout(world.cluster.name, rolloutId);
    if (rollout?.status === 'completed') return;
    if (rollout?.status !== 'running' || round > 50)
      throw new Error(
        `rollout ${rolloutId} did not complete: ${rollout?.status} ${rollout?.haltReason ?? ''}`,
      );
    world.clock.advance(30_000);
    await world.tick();
  }
}

/** One rotation from the manual request to the rollout's end, and its staged restarts when asked for. */
async function rotate(world: World, sdk: Map<string, number>, restart: RestartMode): Promise<RoundResult> {
  const before = new Map(sdk);
  const started = performance.now();
  const { rolloutId } = (await world.invoke({
    action: 'rotate-gossip',
    cluster: world.cluster.name,
    reason: 'bench',
    restart,
  })) as { rolloutId: string };
  await runToCompletion(world, rolloutId);
  let restartSeconds = 0;
  if (restart === 'staged') {
    const restartStarted = performance.now();
    await world.tick();
    const restarts = (await world.runtime.table.listRollouts(world.cluster.name)).find(
      (rollout) => rollout.plan === 'gossiprestart' && rollout.settings.after === rolloutId,
    );
    if (restarts === undefined) throw new Error('no staged restarts followed the rotation');
    await runToCompletion(world, restarts.rolloutId);
    restartSeconds = (performance.now() - restartStarted) / 1000;
  }
  const seconds = (performance.now() - started) / 1000;
  const trail = (await world.runtime.table.listAudit(world.cluster.name, world.clock.now())).filter(
    (entry) => entry.rolloutId === rolloutId,
  );
  const firstAt = (action: string) => trail.find((entry) => entry.action === action)?.at;
  const endedAt = firstAt('rollout-completed')!;
  const stageSeconds: Record<string, number> = {};
  STAGES.forEach((stage, index) => {
    const from = firstAt(`${stage}-dispatched`)!;
    const to = index + 1 < STAGES.length ? firstAt(`${STAGES[index + 1]}-dispatched`)! : endedAt;
    stageSeconds[stage] = Number(((to - from) / 1000).toFixed(2));
  });
  return { seconds, restartSeconds, stageSeconds, calls: difference(sdk, before) };
}

async function runScenario(servers: number, restart: RestartMode): Promise<RoundResult[]> {
  const world = await startWorld({
    servers,
    clients: 1,
    // A restarted server's minute to come back as a voter and hold the gate 10 s.
    cluster: { name: 'bench', rollout: { serverHealthTimeoutSeconds: 60 } },
  });
  try {
    const sdk = countCalls(world);
    // The servers' HTTPS API needs their certificates: the first tick issues them.
    await world.tick();
    await world.settle();
    const rounds: RoundResult[] = [];
    for (let round = 0; round < ROUNDS; round += 1) rounds.push(await rotate(world, sdk, restart));
    return rounds;
  } finally {
    await world.stop();
  }
}

async function main(): Promise<void> {
  say(`nomad-rotator gossip benchmark: ${SERVER_COUNTS.join(' and ')} servers, ${ROUNDS} rotations each`);
  const report: Record<string, unknown>[] = [];
  for (const [servers, restart] of SERVER_COUNTS.flatMap((count) =>
    (['none', 'staged'] as const).map((mode) => [count, mode] as const),
  )) {
    const scenario = `gossip key rotation, ${servers} servers, ${restart === 'none' ? 'no restart' : 'staged restarts'}`;
    say(`\n=== ${scenario}`);
    const rounds = await runScenario(servers, restart);
    const seconds = median(rounds.map((round) => round.seconds));
    const restartSeconds = median(rounds.map((round) => round.restartSeconds));
    const stages = Object.fromEntries(
      STAGES.map((stage) => [stage, median(rounds.map((round) => round.stageSeconds[stage]!))]),
    );
    const keys = new Set(rounds.flatMap((round) => Object.keys(round.calls)));
    const calls = Object.fromEntries(
      [...keys].sort().map((key) => [key, median(rounds.map((round) => round.calls[key] ?? 0))]),
    );
    say(
      `rounds (s): ${rounds.map((round) => round.seconds.toFixed(1)).join(', ')}; median ${seconds.toFixed(1)} s`,
    );
    say(`stages (median s): ${STAGES.map((stage) => `${stage} ${stages[stage]}`).join(', ')}`);
    if (restart === 'staged')
      say(
        `staged restarts (median): ${restartSeconds.toFixed(1)} s, ${(restartSeconds / servers).toFixed(1)} s per server`,
      );
    say('calls per rotation (median):');
    for (const [key, value] of Object.entries(calls)) if (value > 0) say(`  ${key.padEnd(48)} ${value}`);
    report.push({
      scenario,
      servers,
      restart,
      roundSeconds: rounds.map((round) => Number(round.seconds.toFixed(2))),
      medianSeconds: Number(seconds.toFixed(2)),
      medianRestartSeconds: Number(restartSeconds.toFixed(2)),
      medianStageSeconds: stages,
      callsPerRotation: calls,
    });
  }
  await mkdir('bench/results', { recursive: true });
  await writeFile(
    'bench/results/gossip-latest.json',
    `${JSON.stringify({ date: new Date().toISOString(), report }, null, 2)}\n`,
  );
  say('results written to bench/results/gossip-latest.json');
}

main().catch((error: unknown) => {
  process.stderr.write(
    `bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
});
