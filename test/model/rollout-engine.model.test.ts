import fc from 'fast-check';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { type Actor, runAs } from './crash';
import { CLUSTER_NAMES } from './fleets';
import { type CsrPool, generateCsrPool } from './model-authority';
import { isExpectedRefusal, ModelWorld, noStats, type RunStats } from './model-world';
import { reseed } from './seeded-bytes';

// Tokens and rollout ids order install batches; seeded, a shrunk schedule replays the run it came from.
vi.mock('node:crypto', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:crypto')>();
  const { seededBytes } = await import('./seeded-bytes');
  const randomBytes = (size: number, callback?: (error: Error | null, bytes: Buffer) => void) =>
    callback === undefined ? seededBytes(size) : actual.randomBytes(size, callback);
  return { ...actual, randomBytes, default: { ...actual, randomBytes } };
});

// validateCsr is a pure function of its input and costs ~1.5 ms of ASN.1 and ECDSA per call; the
// model's nodes only ever return the pool's CSRs, so the real check runs once per CSR, not per prepare.
vi.mock('../../shared/certificates/csr', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../../shared/certificates/csr')>();
  const checked = new Map<string, Promise<string>>();
  return {
    ...actual,
    validateCsr: (derBase64: string, keyType: Parameters<typeof actual.validateCsr>[1], label: string) => {
      const key = `${keyType}|${label}|${derBase64}`;
      let result = checked.get(key);
      if (result === undefined) {
        result = actual.validateCsr(derBase64, keyType, label);
        checked.set(key, result);
      }
      return result;
    },
  };
});

const RUNS = Number(process.env.MODEL_RUNS ?? 1000);
const SEED = process.env.MODEL_SEED === undefined ? undefined : Number(process.env.MODEL_SEED);
const PATH = process.env.MODEL_PATH;
const QUIESCE_ROUNDS = 40;
const NODE_COUNT = 10;

type Cluster = (typeof CLUSTER_NAMES)[number];
/** The write the run dies at, or right after its first command send, or never. */
type CrashAt = number | 'after-send' | null;

/** One step of a schedule; plain data, so fast-check prints a counterexample that reads as a script. */
type Action =
  /** A scheduled run; a budget under the normal one lets time pass per write so it stops mid-way. */
  | { do: 'tick'; cluster: Cluster; budgetSeconds: number; crashAt: CrashAt }
  | { do: 'tick-twice'; cluster: Cluster; crashAt: CrashAt }
  | { do: 'tick-during-event'; cluster: Cluster; event: number; crashAt: CrashAt }
  | { do: 'advance'; seconds: number }
  /**
   * A node ends a command; when it was the command's last, the command's status-change event is
   * delivered at once or queued for later.
   */
  | {
      do: 'finish';
      invocation: number;
      outcome: 'success' | 'failure';
      event: 'at-once' | 'queued';
      crashAt: CrashAt;
    }
  | { do: 'deliver'; event: number; delivery: 'once' | 'duplicate' | 'drop'; crashAt: CrashAt }
  | { do: 'connectivity'; node: number; online: boolean }
  | { do: 'vault'; sealed: boolean }
  | { do: 'rotate'; cluster: Cluster; crashAt: CrashAt }
  | { do: 'emergency'; cluster: Cluster; crashAt: CrashAt }
  | { do: 'instance-running'; node: number; crashAt: CrashAt }
  | { do: 'terminate'; node: number; crashAt: CrashAt }
  | { do: 'throttle' };

const cluster = fc.constantFrom(...(CLUSTER_NAMES as Cluster[]));
// One action in five runs in a process that dies at some write (if it gets that far).
const crashAt: fc.Arbitrary<CrashAt> = fc.oneof(
  { weight: 12, arbitrary: fc.constant(null) },
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 24 }) },
  { weight: 1, arbitrary: fc.constant('after-send' as const) },
);
const pick = fc.nat({ max: 999 });
const node = fc.nat({ max: NODE_COUNT - 1 });

/** A value drawn with the given relative weights. */
function weighted<T>(...choices: [number, T][]): fc.Arbitrary<T> {
  return fc.oneof(...choices.map(([weight, value]) => ({ weight, arbitrary: fc.constant(value) })));
}

// Weights keep rollouts moving: with too many refusals (sealed Vault, dead runs, zero budgets) a
// schedule never gets a server install in flight, and the interesting interleavings need one.
const action: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 12,
    arbitrary: fc.record({
      do: fc.constant('tick' as const),
      cluster: weighted<Cluster>([3, 'alpha'], [1, 'beta']),
      budgetSeconds: fc.oneof(
        { weight: 6, arbitrary: fc.constant(600) },
        { weight: 1, arbitrary: fc.constant(0) },
        { weight: 2, arbitrary: fc.integer({ min: 1, max: 40 }) },
      ),
      crashAt,
    }),
  },
  { weight: 2, arbitrary: fc.record({ do: fc.constant('tick-twice' as const), cluster, crashAt }) },
  {
    weight: 3,
    arbitrary: fc.record({ do: fc.constant('tick-during-event' as const), cluster, event: pick, crashAt }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      do: fc.constant('advance' as const),
      seconds: fc.oneof(
        fc.integer({ min: 1, max: 120 }),
        fc.integer({ min: 2, max: 20 }).map((minutes) => minutes * 60),
        fc.integer({ min: 1, max: 8 }).map((hours) => hours * 3600),
      ),
    }),
  },
  {
    weight: 20,
    arbitrary: fc.record({
      do: fc.constant('finish' as const),
      invocation: pick,
      outcome: weighted<'success' | 'failure'>([4, 'success'], [1, 'failure']),
      event: weighted<'at-once' | 'queued'>([3, 'at-once'], [1, 'queued']),
      crashAt,
    }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      do: fc.constant('deliver' as const),
      event: pick,
      delivery: weighted<'once' | 'duplicate' | 'drop'>([3, 'once'], [1, 'duplicate'], [1, 'drop']),
      crashAt,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      do: fc.constant('connectivity' as const),
      node,
      online: weighted([1, true], [1, false]),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ do: fc.constant('vault' as const), sealed: weighted([1, true], [2, false]) }),
  },
  { weight: 1, arbitrary: fc.record({ do: fc.constant('rotate' as const), cluster, crashAt }) },
  {
    weight: 2,
    arbitrary: fc.record({
      do: fc.constant('emergency' as const),
      cluster: weighted<Cluster>([3, 'alpha'], [1, 'beta']),
      crashAt,
    }),
  },
  { weight: 1, arbitrary: fc.record({ do: fc.constant('instance-running' as const), node, crashAt }) },
  { weight: 1, arbitrary: fc.record({ do: fc.constant('terminate' as const), node, crashAt }) },
  { weight: 1, arbitrary: fc.record({ do: fc.constant('throttle' as const) }) },
);

const schedule = fc.array(action, { minLength: 1, maxLength: 100, size: 'max' });

/**
 * Run `work` as one Lambda invocation that dies at its `crashAt`-th write. Its SimulatedCrash (or
 * whatever error the dying code then surfaced) ends the action and nothing else: the next action
 * finds the store as the dead run left it. True when it died.
 */
async function invocation(crash: CrashAt, work: () => Promise<unknown>): Promise<boolean> {
  const actor: Actor = {
    crashAtWrite: typeof crash === 'number' ? crash : undefined,
    crashAfterSend: crash === 'after-send',
    writes: 0,
    crashed: false,
  };
  try {
    await runAs(actor, work);
    return false;
  } catch (error) {
    if (actor.crashed) return true;
    throw error;
  }
}

async function refusedOrDone(work: Promise<unknown>): Promise<void> {
  try {
    await work;
  } catch (error) {
    if (!isExpectedRefusal(error)) throw error;
  }
}

/**
 * Deliver one queued command status-change event. A delivery whose invocation dies goes back on the queue:
 * the handler reads from SQS, and a message it did not finish is received again. `keep` delivers a
 * copy and leaves the event queued (a duplicate).
 */
async function deliverOne(
  world: ModelWorld,
  index: number,
  keep: boolean,
  crash: CrashAt = null,
): Promise<void> {
  const queue = world.fleet.undelivered;
  if (queue.length === 0) return;
  const position = index % queue.length;
  const event = queue[position]!;
  if (!keep) queue.splice(position, 1);
  if (await invocation(crash, () => world.deliver(event))) {
    if (!keep) queue.push(event);
  }
}

async function perform(world: ModelWorld, step: Action): Promise<void> {
  world.fleet.expire();
  const nodes = [...world.fleet.nodes.values()];
  switch (step.do) {
    case 'tick': {
      world.msPerWrite = step.budgetSeconds < 600 ? 1000 : 0;
      try {
        await invocation(step.crashAt, () => world.tick(step.cluster, step.budgetSeconds * 1000));
      } finally {
        world.msPerWrite = 0;
      }
      return;
    }
    case 'tick-twice':
      await Promise.all([
        invocation(step.crashAt, () => world.tick(step.cluster)),
        invocation(null, () => world.tick(step.cluster)),
      ]);
      return;
    case 'tick-during-event':
      await Promise.all([
        invocation(step.crashAt, () => world.tick(step.cluster)),
        deliverOne(world, step.event, false),
      ]);
      return;
    case 'advance':
      world.clock.advance(step.seconds * 1000);
      world.fleet.expire();
      return;
    case 'finish': {
      const running = world.fleet.running();
      if (running.length === 0) return;
      const queued = world.fleet.undelivered.length;
      world.fleet.finish(running[step.invocation % running.length]!, step.outcome);
      if (step.event === 'at-once' && world.fleet.undelivered.length > queued) {
        await deliverOne(world, world.fleet.undelivered.length - 1, false, step.crashAt);
      }
      return;
    }
    case 'deliver': {
      if (step.delivery === 'drop') {
        const queue = world.fleet.undelivered;
        if (queue.length > 0) queue.splice(step.event % queue.length, 1);
        return;
      }
      await deliverOne(world, step.event, step.delivery === 'duplicate', step.crashAt);
      return;
    }
    case 'connectivity': {
      const target = nodes[step.node]!;
      if (!target.terminated) target.online = step.online;
      return;
    }
    case 'vault':
      world.authority.sealed = step.sealed;
      return;
    case 'rotate':
    case 'emergency':
      await invocation(step.crashAt, () =>
        refusedOrDone(
          world.rotation(step.cluster).start(
            {
              kind: step.do === 'rotate' ? 'rotate' : 'emergency',
              targets: 'all',
              force: true,
              reason: step.do === 'rotate' ? 'operator request' : 'key compromise drill',
              actor: 'operator',
            },
            world.deadline(),
          ),
        ),
      );
      return;
    case 'instance-running': {
      const target = nodes[step.node]!;
      if (target.terminated || !target.online) return;
      await invocation(step.crashAt, () =>
        world.rotation(target.cluster).onInstanceRunning(target.instanceId, 'ec2-running', world.deadline()),
      );
      return;
    }
    case 'terminate': {
      const target = nodes[step.node]!;
      if (target.terminated) return;
      world.fleet.terminate(target.instanceId);
      await invocation(step.crashAt, () => world.retire(target.instanceId));
      return;
    }
    case 'throttle':
      world.fleet.throttleNextSends += 1;
      return;
  }
}

function failOn(broken: readonly string[], when: string): void {
  if (broken.length > 0) throw new Error(`${when}:\n  ${broken.join('\n  ')}`);
}

const totals: RunStats = noStats();

let pool: CsrPool;

beforeAll(async () => {
  pool = await generateCsrPool(16);
});

describe('rollout engine running the certificate plan (model)', () => {
  it(
    `keeps its invariants over ${RUNS} random schedules of ticks, results, events, crashes and requests`,
    async () => {
      // Arrange
      const property = fc.asyncProperty(schedule, async (actions) => {
        reseed(1);
        const world = new ModelWorld(pool);

        // Act
        for (const [index, step] of actions.entries()) {
          await perform(world, step);
          failOn(world.violations, `after action ${index} (${step.do})`);
        }
        await world.quiesce(QUIESCE_ROUNDS);

        // Assert
        failOn(await world.finalViolations(), 'after quiesce');
        for (const name of Object.keys(totals) as (keyof RunStats)[]) totals[name] += world.stats[name];
      });

      await fc.assert(property, { numRuns: RUNS, seed: SEED, path: PATH });

      // Without these the invariants above could hold only because nothing was ever tried.
      expect(totals.serverInstalls).toBeGreaterThan(0);
      expect(totals.crashes).toBeGreaterThan(0);
      expect(totals.rolloutsCompleted).toBeGreaterThan(0);
      console.info(`model totals over ${RUNS} schedules: ${JSON.stringify(totals)}`);
    },
    Math.max(120_000, RUNS * 300),
  );
});
