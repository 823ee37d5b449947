// npm run bench: what a full certificate rotation costs per node (API calls to SSM, Vault, DynamoDB,
// EventBridge) and how fast a fleet rotates, with installs batched per wave or sent per node, and with
// SSM throttled to a modelled rate (the SSM API rate is what bounds a fleet rotation).
import '../local/quiet-sdk-warning';
import 'reflect-metadata';
import { mkdir, writeFile } from 'node:fs/promises';
import { startWorld, type World } from '../local/world';
import { countCalls, difference, median, sendAgainWhenThrottled as resend, say } from './measure';

interface Scenario {
  name: string;
  clientWaveSize: number;
  /** SSM API rate limit (requests per second, all operations); 0 = unlimited. */
  ssmTps: number;
}

interface RoundResult {
  seconds: number;
  nodes: number;
  calls: Record<string, number>;
}

const SERVERS = 3;
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 12);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
/** SSM publishes no TPS for SendCommand/GetCommandInvocation; low single digits is the safe assumption. */
const MODELLED_SSM_TPS = Number(process.env.BENCH_SSM_TPS ?? 2);

const SCENARIOS: Scenario[] = [
  { name: 'batched installs (one install command per client wave)', clientWaveSize: CLIENTS, ssmTps: 0 },
  { name: 'per-node installs (client wave size 1)', clientWaveSize: 1, ssmTps: 0 },
  {
    name: `batched installs, SSM limited to ${MODELLED_SSM_TPS} TPS`,
    clientWaveSize: CLIENTS,
    ssmTps: MODELLED_SSM_TPS,
  },
  {
    name: `per-node installs, SSM limited to ${MODELLED_SSM_TPS} TPS`,
    clientWaveSize: 1,
    ssmTps: MODELLED_SSM_TPS,
  },
];

function vaultCalls(world: World): Map<string, number> {
  const counts = new Map<string, number>();
  for (const { method, path } of world.vault.requestLog) {
    const key = `vault.${method} ${path.replace(/^\/v1\//, '').replace(/\/(sign|issue)\/.+$/, '/$1/<role>')}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

const snapshot = (world: World, sdk: Map<string, number>) =>
  new Map([...sdk.entries(), ...vaultCalls(world).entries()]);

async function serials(world: World): Promise<Map<string, string | undefined>> {
  const nodes = await world.runtime.table.listNodes(world.cluster.name);
  return new Map(nodes.map((node) => [node.instanceId, node.agent?.serial]));
}

const THROTTLED_RETRIES = 5;
/** How often a request had to be sent again after SSM throttled it; reported per scenario. */
let throttledRequestsSentAgain = 0;

/** Under a modelled SSM rate the previous round's reconcile and events may still be spending it. */
async function sendAgainWhenThrottled(send: () => Promise<unknown>): Promise<void> {
  throttledRequestsSentAgain += await resend(send, { retries: THROTTLED_RETRIES });
}

/** One forced rotation of the whole fleet, timed until every node is idle on a new serial. */
async function rotateFleet(world: World, sdk: Map<string, number>): Promise<RoundResult> {
  const before = await serials(world);
  const callsBefore = snapshot(world, sdk);
  const started = performance.now();
  await sendAgainWhenThrottled(() =>
    world.invoke({ action: 'rotate', cluster: world.cluster.name, targets: 'all', reason: 'bench' }),
  );
  for (let tick = 0; ; tick += 1) {
    await world.settle();
    const nodes = await world.runtime.table.listNodes(world.cluster.name);
    const done = nodes.every(
      (node) => node.status === 'idle' && node.agent?.serial !== before.get(node.instanceId),
    );
    if (done) break;
    if (tick > 200) throw new Error('the rotation did not complete within 200 ticks');
    // Throttled work is given back and picked up by the next tick; the bench ticks as soon as the
    // world is quiet instead of every 5 minutes.
    await sendAgainWhenThrottled(() => world.tick());
  }
  const seconds = (performance.now() - started) / 1000;
  return { seconds, nodes: before.size, calls: difference(snapshot(world, sdk), callsBefore) };
}

async function runScenario(scenario: Scenario) {
  const world = await startWorld({
    servers: SERVERS,
    clients: CLIENTS,
    cluster: { name: 'bench', rollout: { clientWaveSize: scenario.clientWaveSize } },
  });
  try {
    const sdk = countCalls(world);
    await world.tick();
    await world.settle();
    world.ssm.limiter.tps = scenario.ssmTps;
    world.ssm.limiter.burst = Math.max(1, scenario.ssmTps);
    const rounds: RoundResult[] = [];
    for (let round = 0; round < ROUNDS; round += 1) rounds.push(await rotateFleet(world, sdk));
    world.ssm.limiter.tps = 0;
    return rounds;
  } finally {
    await world.stop();
  }
}

function perNode(rounds: RoundResult[]): Record<string, number> {
  const keys = new Set(rounds.flatMap((round) => Object.keys(round.calls)));
  const result: Record<string, number> = {};
  for (const key of [...keys].sort()) {
    const value = Number(median(rounds.map((round) => (round.calls[key] ?? 0) / round.nodes)).toFixed(2));
    if (value > 0) result[key] = value;
  }
  return result;
}

const sumWhere = (calls: Record<string, number>, prefix: string) =>
  Object.entries(calls)
    .filter(([key]) => key.startsWith(prefix))
    .reduce((total, [, value]) => total + value, 0);

async function main(): Promise<void> {
  say(`nomad-rotator benchmark: ${SERVERS} servers + ${CLIENTS} clients, ${ROUNDS} forced rotations each`);
  const report = [];
  for (const scenario of SCENARIOS) {
    say(`\n=== ${scenario.name}`);
    const throttledBefore = throttledRequestsSentAgain;
    const rounds = await runScenario(scenario);
    const throttledRetries = throttledRequestsSentAgain - throttledBefore;
    const seconds = median(rounds.map((round) => round.seconds));
    const nodesPerMinute = (rounds[0]!.nodes / seconds) * 60;
    const calls = perNode(rounds);
    const ssmPerNode = sumWhere(calls, 'ssm.');
    say(
      `rounds (s): ${rounds.map((round) => round.seconds.toFixed(1)).join(', ')}; median ${seconds.toFixed(1)} s`,
    );
    say(`throughput: ${nodesPerMinute.toFixed(1)} nodes/min`);
    say('calls per rotated node (median over rounds):');
    for (const [key, value] of Object.entries(calls)) say(`  ${key.padEnd(48)} ${value}`);
    say(`  SSM calls per node: ${ssmPerNode.toFixed(2)}`);
    if (throttledRetries > 0) say(`requests sent again after SSM throttled them: ${throttledRetries}`);
    const entry: Record<string, unknown> = {
      scenario: scenario.name,
      clientWaveSize: scenario.clientWaveSize,
      ssmTps: scenario.ssmTps,
      roundSeconds: rounds.map((round) => Number(round.seconds.toFixed(2))),
      medianSeconds: Number(seconds.toFixed(2)),
      nodesPerMinute: Number(nodesPerMinute.toFixed(1)),
      callsPerNode: calls,
      ssmCallsPerNode: Number(ssmPerNode.toFixed(2)),
      throttledRequestsSentAgain: throttledRetries,
    };
    if (scenario.ssmTps > 0) {
      // At the limit, each node costs ssmPerNode requests: the fleet cannot go faster than this.
      const boundNodesPerMinute = (scenario.ssmTps / ssmPerNode) * 60;
      const ratio = nodesPerMinute / boundNodesPerMinute;
      say(
        `rate-limit bound at ${scenario.ssmTps} TPS: ${boundNodesPerMinute.toFixed(1)} nodes/min; achieved ${(ratio * 100).toFixed(0)}% of it`,
      );
      entry.boundNodesPerMinute = Number(boundNodesPerMinute.toFixed(1));
      entry.ratioToBound = Number(ratio.toFixed(2));
    }
    report.push(entry);
  }
  const [batched, perNodeInstalls, batchedLimited, perNodeLimited] = report;
  say(
    `\nbatching: ${String(perNodeInstalls!.ssmCallsPerNode)} → ${String(batched!.ssmCallsPerNode)} SSM calls per node; ` +
      `under the SSM limit ${String(perNodeLimited!.nodesPerMinute)} → ${String(batchedLimited!.nodesPerMinute)} nodes/min`,
  );
  await mkdir('bench/results', { recursive: true });
  await writeFile(
    'bench/results/latest.json',
    `${JSON.stringify({ date: new Date().toISOString(), report }, null, 2)}\n`,
  );
  say('results written to bench/results/latest.json');
}

main().catch((error: unknown) => {
  process.stderr.write(
    `bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
});
