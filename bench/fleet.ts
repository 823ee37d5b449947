// npm run bench:fleet: certificate rotations of a simulated fleet of hundreds to thousands of nodes,
// through the real functions, SDK clients and emulators: how long until every node serves a new
// certificate, and what each node costs in SSM, Vault and DynamoDB requests, with SSM unthrottled and
// throttled to a modelled rate; beside it, Vault's CPU per node for the seed's approach and ours.
// Options: --nodes 500,1000,5000 --servers 5 --ssm-tps 2 --seed 1 --vault-nodes 50 --out <json>
// --scenarios first,emergency,renewal,throttled,idle (all by default; first always runs, the others
// need the fleet's first certificates).
import '../local/quiet-sdk-warning';
import 'reflect-metadata';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { startWorld, type World } from '../local/world';
import { StateTable } from '../shared/state/table';
import { nodesOverTimeSvg } from './chart';
import { countCalls, difference, sendAgainWhenThrottled as resend, say } from './measure';
import { measureVaultCost, type VaultCostResult } from './vault-cost';

const { values: flags } = parseArgs({
  options: {
    nodes: { type: 'string', default: '500,1000,5000' },
    servers: { type: 'string', default: '5' },
    'ssm-tps': { type: 'string', default: '2' },
    seed: { type: 'string', default: '1' },
    out: { type: 'string', default: 'bench/results/fleet-latest.json' },
    'vault-nodes': { type: 'string', default: '50' },
    scenarios: { type: 'string', default: 'first,emergency,renewal,throttled,idle' },
  },
});
const NODE_COUNTS = flags.nodes.split(',').map((count) => Number(count));
const SERVERS = Number(flags.servers);
const SSM_TPS = Number(flags['ssm-tps']);
const SEED = Number(flags.seed);
const SCENARIOS = new Set(flags.scenarios.split(','));
for (const scenario of SCENARIOS)
  if (!['first', 'emergency', 'renewal', 'throttled', 'idle'].includes(scenario))
    throw new Error(`--scenarios: ${scenario} is none of first, emergency, renewal, throttled, idle`);
const HOUR = 3_600_000;
/** The world's certificates live 24 h and renew at two thirds of that: 17 h on, every node is due. */
const UNTIL_EVERY_NODE_IS_DUE = 17 * HOUR;

const DYNAMODB_READS = new Set(['GetItemCommand', 'BatchGetItemCommand', 'QueryCommand', 'ScanCommand']);
const DYNAMODB_WRITES = new Set([
  'PutItemCommand',
  'UpdateItemCommand',
  'DeleteItemCommand',
  'BatchWriteItemCommand',
]);

export interface FleetScenarioResult {
  scenario: string;
  nodes: number;
  ssmTps: number;
  seconds: number;
  ssmCallsPerNode: number;
  vaultRequestsPerNode: number;
  dynamodbReadsPerNode: number;
  dynamodbWritesPerNode: number;
  peakRssMb: number;
  /** With SSM throttled: the share of the rate's bound (tps / SSM calls per node) achieved. */
  boundShare?: number;
  /** The rollout's end as the table has it, and the nodes that ended on a new certificate. */
  outcome: string;
  rotated: number;
  calls: Record<string, number>;
  /** Nodes that installed a new set, by seconds since the request (for the chart). */
  progress: { seconds: number; done: number }[];
}

/**
 * Samples the process's resident set while a scenario runs. The functions share it with every
 * emulator and the simulated fleet, so this is an upper bound of what the functions need.
 */
function rssSampler() {
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 200);
  return {
    stop: () => {
      clearInterval(timer);
      return Math.round(Math.max(peak, process.memoryUsage().rss) / 2 ** 20);
    },
  };
}

const sum = (calls: Record<string, number>, match: (service: string, command: string) => boolean) =>
  Object.entries(calls)
    .filter(([key]) => {
      const [service = '', command = ''] = key.split('.');
      return match(service, command);
    })
    .reduce((total, [, value]) => total + value, 0);

function vaultRequests(world: World): number {
  return world.vault.requestLog.length;
}

/**
 * Run one rotation of every node from `request` until the fleet is quiet with nothing left to do,
 * ticking as soon as it is quiet (the scheduler would tick every few minutes) so that reconcile picks
 * up whatever an event did not.
 */
async function measure(
  world: World,
  sdk: Map<string, number>,
  scenario: string,
  ssmTps: number,
  request: () => Promise<unknown>,
): Promise<FleetScenarioResult> {
  const simulated = world.simulated!;
  // The bench's own reads go through a client of their own, so they are not counted as the product's.
  const observer = new StateTable(world.dynamo.client(), world.tableName);
  const nodes = simulated.nodes().length;
  const installsBefore = simulated.installs.length;
  const callsBefore = new Map(sdk);
  const vaultBefore = vaultRequests(world);
  world.ssm.limiter.tps = ssmTps;
  world.ssm.limiter.burst = Math.max(1, ssmTps);
  const rss = rssSampler();
  const startedAt = world.clock.now();
  const started = performance.now();
  await sendAgainWhenThrottled(request);
  for (let tick = 0; ; tick += 1) {
    await world.settle();
    const active = await observer.getActiveRollout(world.cluster.name);
    if (active === undefined) break;
    if (tick > 500) throw new Error(`${scenario}: the rollout did not end within 500 ticks`);
    await sendAgainWhenThrottled(() => world.tick());
  }
  const seconds = (performance.now() - started) / 1000;
  const peakRssMb = rss.stop();
  world.ssm.limiter.tps = 0;
  const calls = difference(sdk, callsBefore);
  const rollouts = await observer.listRollouts(world.cluster.name);
  const last = rollouts.sort((a, b) => b.createdAt - a.createdAt)[0];
  const installs = simulated.installs.slice(installsBefore);
  const ssmCallsPerNode = sum(calls, (service) => service === 'ssm') / nodes;
  const result: FleetScenarioResult = {
    scenario,
    nodes,
    ssmTps,
    seconds: round(seconds, 1),
    ssmCallsPerNode: round(ssmCallsPerNode, 3),
    vaultRequestsPerNode: round((vaultRequests(world) - vaultBefore) / nodes, 2),
    dynamodbReadsPerNode: round(
      sum(calls, (service, command) => service === 'dynamodb' && DYNAMODB_READS.has(command)) / nodes,
      2,
    ),
    dynamodbWritesPerNode: round(
      sum(calls, (service, command) => service === 'dynamodb' && DYNAMODB_WRITES.has(command)) / nodes,
      2,
    ),
    peakRssMb,
    outcome: last?.status ?? 'none',
    rotated: new Set(installs.map((install) => install.instanceId)).size,
    calls,
    progress: sampled(
      installs.map((install, index) => ({
        seconds: round((install.at - startedAt) / 1000, 2),
        done: index + 1,
      })),
    ),
  };
  if (ssmTps > 0 && ssmCallsPerNode > 0) {
    // Each node costs ssmCallsPerNode requests, so at the limit the fleet cannot go faster than this.
    const boundNodesPerSecond = ssmTps / ssmCallsPerNode;
    result.boundShare = round(nodes / seconds / boundNodesPerSecond, 2);
  }
  return result;
}

const THROTTLED_RETRIES = 20;
const sendAgainWhenThrottled = (send: () => Promise<unknown>) => resend(send, { retries: THROTTLED_RETRIES });

const round = (value: number, digits: number) => Number(value.toFixed(digits));

/** At most this many points of a rollout's progress are kept: enough for the chart, small in the JSON. */
const PROGRESS_POINTS = 200;

function sampled<Point>(points: Point[]): Point[] {
  const step = Math.ceil(points.length / PROGRESS_POINTS);
  return points.filter((_, index) => index % step === 0 || index === points.length - 1);
}

function report(result: FleetScenarioResult): void {
  say(
    `${result.scenario.padEnd(34)} ${String(result.nodes).padStart(5)} nodes ${result.seconds.toFixed(1).padStart(7)} s  ` +
      `ssm/node ${result.ssmCallsPerNode.toFixed(3)}  vault/node ${result.vaultRequestsPerNode}  ` +
      `ddb r/w per node ${result.dynamodbReadsPerNode}/${result.dynamodbWritesPerNode}  rss ${result.peakRssMb} MB` +
      `${result.boundShare === undefined ? '' : `  bound share ${result.boundShare}`}  ${result.outcome} (${result.rotated} rotated)`,
  );
}

async function runFleet(total: number): Promise<FleetScenarioResult[]> {
  const world = await startWorld({
    servers: SERVERS,
    clients: total - SERVERS,
    simulated: { seed: SEED },
    cluster: { name: 'fleet', rollout: { clientWaveSize: 50 } },
  });
  try {
    const sdk = countCalls(world);
    const idleRssMb = Math.round(process.memoryUsage().rss / 2 ** 20);
    say(`${total} nodes: the world is up; the process holds ${idleRssMb} MB before the first rotation`);
    const cluster = world.cluster.name;
    const results: FleetScenarioResult[] = [];
    const run = async (scenario: string, ssmTps: number, request: () => Promise<unknown>) => {
      const result = await measure(world, sdk, scenario, ssmTps, request);
      report(result);
      results.push(result);
    };
    const emergency = () => world.invoke({ action: 'reissue', cluster, targets: 'all', reason: 'bench' });
    const renewal = async () => {
      world.clock.advance(UNTIL_EVERY_NODE_IS_DUE);
      await world.tick();
    };
    // Every node's first certificates: a scheduled tick finds them all without one.
    await run('first issuance', 0, () => world.tick());
    if (SCENARIOS.has('emergency')) await run('emergency reissue', 0, emergency);
    if (SCENARIOS.has('renewal')) await run('scheduled renewal', 0, renewal);
    world.clock.reset();
    if (SCENARIOS.has('throttled')) {
      await run(`emergency reissue, SSM ${SSM_TPS} TPS`, SSM_TPS, emergency);
      await run(`scheduled renewal, SSM ${SSM_TPS} TPS`, SSM_TPS, renewal);
      world.clock.reset();
    }
    if (SCENARIOS.has('idle') && total === Math.max(...NODE_COUNTS))
      await run('tick with nothing due', 0, () => world.tick());
    return results;
  } finally {
    await world.stop();
  }
}

async function main(): Promise<void> {
  say(`nomad-rotator fleet benchmark: ${NODE_COUNTS.join(', ')} simulated nodes (${SERVERS} servers)`);
  const results: FleetScenarioResult[] = [];
  await mkdir(dirname(flags.out), { recursive: true });
  const write = (vault?: VaultCostResult) =>
    writeFile(
      flags.out,
      `${JSON.stringify({ date: new Date().toISOString(), servers: SERVERS, seed: SEED, results, vault }, null, 2)}\n`,
    );
  for (const total of NODE_COUNTS) {
    results.push(...(await runFleet(total)));
    // Written after each fleet size too: a long run interrupted still leaves what it measured.
    await write();
  }
  // Vault's side of the same question, in the same run: what the seed's approach costs it per node.
  if (Number(flags['vault-nodes']) > 0) {
    const vault = await measureVaultCost({ nodes: Number(flags['vault-nodes']) });
    say(
      `Vault per node: seed ${vault.seed.requestsPerNode} requests, ${vault.seed.cpuMsPerNode} ms CPU; ` +
        `ours ${vault.ours.requestsPerNode} requests, ${vault.ours.cpuMsPerNode} ms CPU; ratio ${vault.cpuRatio}`,
    );
    await write(vault);
  }
  const chart = flags.out.replace(/\.json$/, '.svg');
  await writeFile(
    chart,
    nodesOverTimeSvg(
      results
        .filter((result) => result.progress.length > 0)
        .map((result) => ({ name: `${result.scenario} (${result.nodes})`, points: result.progress })),
      { title: 'Nodes on a new certificate, seconds after the request' },
    ),
  );
  say(`results written to ${flags.out} and ${chart}`);
}

main().catch((error: unknown) => {
  process.stderr.write(
    `bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
});
