import { describe, expect, it, vi } from 'vitest';
import { ManualClock } from '../../local/clock';
import { RecordingLogger } from '../../local/world/recording';
import { ConflictError } from '../../shared/errors';
import { RolloutEngine } from '../../shared/rollout/engine';
import type { AttemptRecord, RolloutRecord, WaveRecord } from '../../shared/rollout/model';
import type {
  CommandResult,
  FailurePolicy,
  RolloutPlan,
  StepOutcome,
  StepSpec,
  StepVerdict,
} from '../../shared/rollout/plan';
import { parseRoutingKey } from '../../shared/rollout/routing';
import { ATTEMPT_TRANSITIONS, IllegalTransitionError, transition } from '../../shared/rollout/transitions';
import { InMemoryStateStore } from '../helpers/in-memory-state-store';

// The engine with a plan it has never heard of: a "restart" plan of one step per target, halting at
// the first failure, ordering its waves when they open and gating each on the cluster's health. It
// lives only in this file, which is the point: a plan is added without an edit to the engine.

interface Sent {
  step: string;
  targets: string[];
  routingKey: string;
  commandId: string;
}

class RestartPlan implements RolloutPlan {
  readonly name: string = 'restart';
  readonly steps: readonly StepSpec[] = [{ name: 'stop' }, { name: 'start', waitsForWave: true }];
  readonly sent: Sent[] = [];
  readonly succeeded: string[] = [];
  readonly failed: { target: string; reason: string }[] = [];
  readonly milestones: string[] = [];
  readonly observed: string[] = [];
  policy: FailurePolicy = { kind: 'halt' };
  leader = '';
  healthy = true;
  sideBySide: { group: string; maxTargets: number } | undefined;

  failurePolicy(): FailurePolicy {
    return this.policy;
  }

  concurrency() {
    return this.sideBySide;
  }

  async batch(_rollout: RolloutRecord, _step: string, attempts: readonly AttemptRecord[]) {
    return { batches: attempts.map((attempt) => [attempt]), unreachable: [] };
  }

  async send(_rollout: RolloutRecord, step: string, attempts: readonly AttemptRecord[], routingKey: string) {
    const commandId = `cmd-${this.sent.length + 1}`;
    this.sent.push({ step, targets: attempts.map((a) => a.target), routingKey, commandId });
    return commandId;
  }

  async judge(_rollout: RolloutRecord, _attempt: AttemptRecord, outcome: StepOutcome): Promise<StepVerdict> {
    return outcome.state === 'succeeded' ? { ok: true } : { ok: false, reason: outcome.detail };
  }

  async observe(rollout: RolloutRecord, attempt: AttemptRecord, outcome: StepOutcome) {
    this.observed.push(`${rollout.rolloutId}/${attempt.target}:${attempt.step}:${outcome.state}`);
  }

  async onSucceeded(_rollout: RolloutRecord, attempt: AttemptRecord) {
    this.succeeded.push(attempt.target);
  }

  async onFailed(_rollout: RolloutRecord, attempt: AttemptRecord, reason: string) {
    this.failed.push({ target: attempt.target, reason });
  }

  async chooseWave(_rollout: RolloutRecord, candidates: readonly WaveRecord[]) {
    return candidates.find((wave) => !wave.targets.includes(this.leader)) ?? candidates[0]!;
  }

  async gate() {
    return this.healthy ? { open: true as const } : { open: false as const, reason: 'cluster unhealthy' };
  }

  async announce(rollout: RolloutRecord, milestone: string) {
    this.milestones.push(`${milestone}:${rollout.status}`);
  }
}

const FAR = Number.MAX_SAFE_INTEGER;

/** What the engine asked of the results port: per-target reads, per-command listings. */
interface ResultReads {
  single: string[];
  listed: string[];
  /** Targets whose output a listing leaves out (it did not come whole). */
  cut: Set<string>;
}

function world(options: { listing?: boolean } = {}) {
  const store = new InMemoryStateStore();
  const clock = new ManualClock(Date.UTC(2026, 11, 2, 12));
  const plan = new RestartPlan();
  const results = new Map<string, CommandResult>();
  const reads: ResultReads = { single: [], listed: [], cut: new Set() };
  const invocations = async (commandId: string) => {
    reads.listed.push(commandId);
    const sent = plan.sent.find((command) => command.commandId === commandId);
    return {
      results: new Map(
        (sent?.targets ?? []).flatMap((target) => {
          const result = results.get(`${commandId}/${target}`);
          return result === undefined || reads.cut.has(target) ? [] : [[target, result] as const];
        }),
      ),
    };
  };
  const engine = new RolloutEngine({
    cluster: 'prod',
    store,
    plans: [plan],
    results: {
      invocation: async (commandId, target) => {
        reads.single.push(`${commandId}/${target}`);
        return results.get(`${commandId}/${target}`) ?? { state: 'running' };
      },
      ...(options.listing ? { invocations } : {}),
      findSent: async (target, routingKey) =>
        plan.sent.find((sent) => sent.routingKey === routingKey && sent.targets.includes(target))?.commandId,
    },
    telemetry: { rolloutHalted: () => {} },
    logger: new RecordingLogger(),
    clock,
    limits: { commandTimeoutMs: 600_000, orphanedClaimMs: 120_000 },
  });
  const finish = async (sent: Sent, outcome: CommandResult = { state: 'succeeded', stdout: '' }) => {
    for (const target of sent.targets) results.set(`${sent.commandId}/${target}`, outcome);
    await engine.onCommandResults(
      parseRoutingKey(sent.routingKey)!,
      new Map(sent.targets.map((target) => [target, outcome])),
      FAR,
    );
  };
  const start = (waves: string[][], group = 'server') =>
    engine.start({
      plan: 'restart',
      kind: 'rolling',
      settings: {},
      reason: 'test',
      actor: 'tester',
      waves: waves.map((targets) => ({ group, targets })),
    });
  return { store, clock, plan, results, reads, engine, finish, start };
}

describe('rollout engine with a plan of its own', () => {
  it('runs each wave step by step and the waves in order, then completes', async () => {
    const w = world();
    const rollout = await w.start([['a'], ['b']]);

    await w.engine.advance(rollout.rolloutId, FAR);
    await w.finish(w.plan.sent[0]!);
    await w.finish(w.plan.sent[1]!);
    await w.finish(w.plan.sent[2]!);
    await w.finish(w.plan.sent[3]!);

    expect(w.plan.sent.map((s) => `${s.step}:${s.targets.join()}`)).toEqual([
      'stop:a',
      'start:a',
      'stop:b',
      'start:b',
    ]);
    expect(w.plan.succeeded).toEqual(['a', 'b']);
    expect((await w.store.getRollout('prod', rollout.rolloutId))?.status).toBe('completed');
    expect(w.plan.milestones).toEqual(['started:running', 'completed:completed']);
  });

  it('names the plan and step in the routing key of every command', async () => {
    const w = world();
    const rollout = await w.start([['a']]);

    await w.engine.advance(rollout.rolloutId, FAR);

    expect(parseRoutingKey(w.plan.sent[0]!.routingKey)).toMatchObject({
      cluster: 'prod',
      plan: 'restart',
      step: 'stop',
    });
  });

  it('halts at the first failure when the plan says so, and opens no later wave', async () => {
    const w = world();
    const rollout = await w.start([['a'], ['b']]);

    await w.engine.advance(rollout.rolloutId, FAR);
    await w.finish(w.plan.sent[0]!, { state: 'failed', detail: 'unit-failed', stdout: '' });

    const halted = await w.store.getRollout('prod', rollout.rolloutId);
    expect(halted?.status).toBe('halted');
    expect(halted?.haltReason).toContain('a failed stop: unit-failed');
    expect(w.plan.sent).toHaveLength(1);
    expect(w.plan.failed).toEqual([{ target: 'a', reason: 'unit-failed' }]);
  });

  it('retries with backoff under a retry policy, and halts after the wave once tries run out', async () => {
    const w = world();
    w.plan.policy = { kind: 'retry', maxTries: 2, backoffBaseSeconds: 60, backoffMaxSeconds: 600 };
    const rollout = await w.start([['a'], ['b']]);
    const fail: CommandResult = { state: 'failed', detail: 'boom', stdout: '' };

    await w.engine.advance(rollout.rolloutId, FAR);
    await w.finish(w.plan.sent[0]!, fail);
    await w.engine.advance(rollout.rolloutId, FAR);
    const sentDuringBackoff = w.plan.sent.length;
    w.clock.advance(61_000);
    await w.engine.advance(rollout.rolloutId, FAR);
    await w.finish(w.plan.sent[1]!, fail);

    expect(sentDuringBackoff).toBe(1);
    expect(w.plan.sent.map((s) => s.targets.join())).toEqual(['a', 'a']);
    const halted = await w.store.getRollout('prod', rollout.rolloutId);
    expect(halted?.status).toBe('halted');
    expect(halted?.haltReason).toBe('a failed 2 attempt(s) in wave 1');
  });

  it('lets the plan choose the next wave when it opens: the leader goes last', async () => {
    const w = world();
    w.plan.leader = 'b';
    const rollout = await w.start([['a'], ['b'], ['c']]);

    await w.engine.advance(rollout.rolloutId, FAR);
    for (let index = 0; index < 6; index += 1) await w.finish(w.plan.sent[index]!);

    expect(w.plan.sent.filter((s) => s.step === 'stop').map((s) => s.targets.join())).toEqual([
      'a',
      'c',
      'b',
    ]);
    expect((await w.store.getRollout('prod', rollout.rolloutId))?.status).toBe('completed');
  });

  it('holds the next wave while its gate is closed and opens it once the gate holds', async () => {
    const w = world();
    const rollout = await w.start([['a'], ['b']]);
    await w.engine.advance(rollout.rolloutId, FAR);
    w.plan.healthy = false;

    await w.finish(w.plan.sent[0]!);
    await w.finish(w.plan.sent[1]!);
    const whileClosed = w.plan.sent.length;
    w.plan.healthy = true;
    await w.engine.advance(rollout.rolloutId, FAR);

    expect(whileClosed).toBe(2);
    expect(w.plan.sent[2]).toMatchObject({ step: 'stop', targets: ['b'] });
  });

  it('runs waves of the concurrent group side by side, as many as the bound of targets allows', async () => {
    const w = world();
    w.plan.sideBySide = { group: 'client', maxTargets: 4 };
    const rollout = await w.start(
      [
        ['a', 'b'],
        ['c', 'd'],
        ['e', 'f'],
      ],
      'client',
    );

    await w.engine.advance(rollout.rolloutId, FAR);
    const firstSends = w.plan.sent.map((s) => s.targets.join());
    for (let index = 0; index < 4; index += 1) await w.finish(w.plan.sent[index]!);
    const whileTwoWavesRun = w.plan.sent.map((s) => `${s.step}:${s.targets.join()}`);
    await w.finish(w.plan.sent[4]!);
    await w.finish(w.plan.sent[5]!);

    expect(firstSends).toEqual(['a', 'b', 'c', 'd']);
    expect(whileTwoWavesRun.slice(4)).toEqual(['start:a', 'start:b', 'start:c', 'start:d']);
    // The third wave opens once the first has finished and left room under the bound.
    expect(w.plan.sent.slice(8).map((s) => `${s.step}:${s.targets.join()}`)).toEqual(['stop:e', 'stop:f']);
  });

  it('keeps waves of other groups one at a time even under a bound', async () => {
    const w = world();
    w.plan.sideBySide = { group: 'client', maxTargets: 10 };
    const rollout = await w.start([['a'], ['b']]);

    await w.engine.advance(rollout.rolloutId, FAR);

    expect(w.plan.sent.map((s) => s.targets.join())).toEqual(['a']);
  });

  it('halts after a stuck wave: the waves before it finish, none after it starts', async () => {
    const w = world();
    w.plan.policy = { kind: 'retry', maxTries: 1, backoffBaseSeconds: 60, backoffMaxSeconds: 600 };
    w.plan.sideBySide = { group: 'client', maxTargets: 2 };
    const rollout = await w.start([['a'], ['b'], ['c']], 'client');
    const fail: CommandResult = { state: 'failed', detail: 'boom', stdout: '' };

    await w.engine.advance(rollout.rolloutId, FAR);
    await w.finish(w.plan.sent[1]!, fail);
    const whileTheFirstRuns = await w.store.getRollout('prod', rollout.rolloutId);
    await w.finish(w.plan.sent[0]!);
    await w.finish(w.plan.sent.find((s) => s.step === 'start' && s.targets[0] === 'a')!);

    expect(whileTheFirstRuns?.status).toBe('running');
    expect(w.plan.succeeded).toEqual(['a']);
    expect(w.plan.sent.some((s) => s.targets.includes('c'))).toBe(false);
    const halted = await w.store.getRollout('prod', rollout.rolloutId);
    expect(halted?.status).toBe('halted');
    expect(halted?.haltReason).toBe('b failed 1 attempt(s) in wave 2');
  });

  it('ignores a duplicate or late result: the attempt moved on, so nothing is applied twice', async () => {
    const w = world();
    const rollout = await w.start([['a']]);
    await w.engine.advance(rollout.rolloutId, FAR);
    const first = w.plan.sent[0]!;
    await w.finish(first);

    const again = await w.engine.onCommandResults(
      parseRoutingKey(first.routingKey)!,
      new Map([['a', { state: 'succeeded', stdout: '' }]]),
      FAR,
    );

    expect(again).toBe(false);
    expect(w.plan.sent.map((s) => s.step)).toEqual(['stop', 'start']);
  });

  it('keeps one active rollout per cluster: a second start is refused', async () => {
    const w = world();
    await w.start([['a']]);

    await expect(w.start([['b']])).rejects.toBeInstanceOf(ConflictError);
  });

  it('abandons the attempts of a superseded rollout, so their late results change nothing', async () => {
    const w = world();
    const rollout = await w.start([['a', 'b']]);
    await w.engine.advance(rollout.rolloutId, FAR);

    await w.engine.supersedeActive('emergency', 'tester');
    await w.finish(w.plan.sent[0]!);

    const attempts = await w.store.listAttempts('prod', rollout.rolloutId);
    expect(attempts.map((a) => a.state)).toEqual(['abandoned', 'abandoned']);
    expect(w.plan.succeeded).toEqual([]);
    expect(await w.store.getActiveRollout('prod')).toBeUndefined();
  });

  it('sends nothing for a superseding rollout while a command of the superseded one runs, then records what it did', async () => {
    // Arrange: an emergency cuts a rollout short while its stop command runs on a
    const w = world();
    const first = await w.start([['a']]);
    await w.engine.advance(first.rolloutId, FAR);
    await w.engine.supersedeActive('emergency', 'tester');
    const second = await w.start([['a'], ['b']]);

    // Act
    await w.engine.advance(second.rolloutId, FAR);
    const sentWhileRunning = w.plan.sent.length;
    w.results.set('cmd-1/a', { state: 'succeeded', stdout: '' });
    await w.engine.advance(second.rolloutId, FAR);

    // Assert
    expect(sentWhileRunning).toBe(1);
    expect(w.plan.observed).toEqual([`${first.rolloutId}/a:stop:succeeded`]);
    expect(w.plan.sent.map((sent) => sent.step)).toEqual(['stop', 'stop']);
    expect((await w.store.getRollout('prod', second.rolloutId))?.drains).toEqual([]);
  });

  it('recovers the id of a command whose sender died before recording it, instead of sending it again', async () => {
    // Arrange: the claim is written and the command out, but its id never reached the attempt
    const w = world();
    const rollout = await w.start([['a']]);
    await w.engine.advance(rollout.rolloutId, FAR);
    const claimed = (await w.store.getAttempt('prod', rollout.rolloutId, 'a'))!;
    await w.store.updateAttempt(claimed, { state: 'sent', token: claimed.token }, {}, w.clock.now(), [
      'commandId',
    ]);
    w.results.set('cmd-1/a', { state: 'succeeded', stdout: '' });

    // Act
    w.clock.advance(300_000);
    const moved = await w.engine.reconcile(FAR);

    // Assert
    expect(moved).toBe(1);
    expect(w.plan.sent.map((sent) => sent.step)).toEqual(['stop', 'start']);
  });

  it('adds a joining target as a wave of its own at the end of the active rollout', async () => {
    const w = world();
    const rollout = await w.start([['a']]);
    const join = { plan: 'restart', kind: 'rolling', settings: {}, reason: 'joined', actor: 'ec2' };

    const joined = await w.engine.join({ ...join, waves: [{ group: 'server', targets: ['z'] }] });
    const again = await w.engine.join({ ...join, waves: [{ group: 'server', targets: ['z'] }] });

    expect(joined).toBe(rollout.rolloutId);
    expect(again).toBe(rollout.rolloutId);
    const updated = await w.store.getRollout('prod', rollout.rolloutId);
    expect(updated?.waveCount).toBe(2);
    expect((await w.store.getWave('prod', rollout.rolloutId, 1))?.targets).toEqual(['z']);
  });

  it('fails a command still running past the timeout on reconcile, and releases a claim never sent', async () => {
    const w = world();
    w.plan.policy = { kind: 'retry', maxTries: 3, backoffBaseSeconds: 60, backoffMaxSeconds: 600 };
    const rollout = await w.start([['a']]);
    await w.engine.advance(rollout.rolloutId, FAR);

    w.clock.advance(601_000);
    const moved = await w.engine.reconcile(FAR);

    expect(moved).toBe(1);
    expect(w.plan.failed).toEqual([{ target: 'a', reason: 'stop-command-timeout' }]);
  });
});

describe('reconcile reads', () => {
  it("lists each command's results once and reads alone only a target the listing left out", async () => {
    // Arrange: two targets sent, their results in but every event lost; one output did not come whole
    const w = world({ listing: true });
    const rollout = await w.start([['a', 'b']]);
    await w.engine.advance(rollout.rolloutId, FAR);
    for (const sent of w.plan.sent)
      for (const target of sent.targets)
        w.results.set(`${sent.commandId}/${target}`, { state: 'succeeded', stdout: '' });
    w.reads.cut.add('b');
    const stops = [...w.plan.sent];

    // Act
    const moved = await w.engine.reconcile(FAR);

    // Assert
    expect(moved).toBe(2);
    expect(w.reads.listed.sort()).toEqual(stops.map((sent) => sent.commandId).sort());
    const bCommand = stops.find((sent) => sent.targets.includes('b'))!.commandId;
    expect(w.reads.single).toEqual([`${bCommand}/b`]);
  });
});

describe('attempt transition table', () => {
  it('allows only the listed moves and names the refused one', () => {
    expect(transition('pending', 'claim')).toBe('sent');
    expect(transition('sent', 'succeeded')).toBe('done');
    expect(transition('failed', 'retry')).toBe('pending');
    expect(() => transition('done', 'claim')).toThrow(IllegalTransitionError);
    expect(() => transition('exhausted', 'retry')).toThrow('an attempt in exhausted cannot take retry');
  });

  it('never moves an attempt out of done, exhausted or abandoned', () => {
    const finalStates = new Set(['done', 'exhausted', 'abandoned']);
    const escapes = Object.entries(ATTEMPT_TRANSITIONS).flatMap(([event, moves]) =>
      Object.keys(moves)
        .filter((from) => finalStates.has(from))
        .map((from) => `${from} --${event}-->`),
    );

    expect(escapes).toEqual([]);
  });
});

// A plan whose later steps act for the whole wave (as gossip's do): barriers, and failures that
// name where the next try starts.
class QuorumPlan extends RestartPlan {
  override readonly name: string = 'quorum';
  override readonly steps: readonly StepSpec[] = [
    { name: 'check' },
    { name: 'act', barrier: true },
    { name: 'confirm', barrier: true },
  ];
  verdicts = new Map<string, StepVerdict>();

  override async batch(_rollout: RolloutRecord, _step: string, attempts: readonly AttemptRecord[]) {
    return { batches: [[...attempts]], unreachable: [] };
  }

  override async judge(_rollout: RolloutRecord, attempt: AttemptRecord): Promise<StepVerdict> {
    const verdict = this.verdicts.get(`${attempt.target}:${attempt.step}`) ?? { ok: true };
    this.verdicts.delete(`${attempt.target}:${attempt.step}`);
    return verdict;
  }
}

function quorumWorld(policy: FailurePolicy) {
  const store = new InMemoryStateStore();
  const clock = new ManualClock(Date.UTC(2026, 11, 3, 12));
  const plan = new QuorumPlan();
  plan.policy = policy;
  const engine = new RolloutEngine({
    cluster: 'prod',
    store,
    plans: [plan],
    results: { invocation: async () => ({ state: 'running' }), findSent: async () => undefined },
    telemetry: { rolloutHalted: () => {} },
    logger: new RecordingLogger(),
    clock,
    limits: { commandTimeoutMs: 600_000, orphanedClaimMs: 120_000 },
  });
  const finish = (sent: Sent) =>
    engine.onCommandResults(
      parseRoutingKey(sent.routingKey)!,
      new Map(sent.targets.map((target) => [target, { state: 'succeeded', stdout: '' } as const])),
      FAR,
    );
  const start = () =>
    engine.start({
      plan: 'quorum',
      kind: 'rotate',
      settings: {},
      reason: 'test',
      actor: 'tester',
      waves: [{ group: 'server', targets: ['a', 'b', 'c'] }],
    });
  return { store, clock, plan, engine, finish, start };
}

describe('rollout engine: steps that act for the whole wave', () => {
  const retry: FailurePolicy = { kind: 'retry', maxTries: 3, backoffBaseSeconds: 10, backoffMaxSeconds: 10 };

  it('holds a barrier step while one target runs the step before again, then sends it to all as one command', async () => {
    // Arrange: b's `act` fails and is to run `act` again; a and c wait at `confirm`
    const w = quorumWorld(retry);
    const rollout = await w.start();
    await w.engine.advance(rollout.rolloutId, FAR);
    await w.finish(w.plan.sent[0]!);
    w.plan.verdicts.set('b:act', { ok: false, reason: 'not yet', retryFrom: 'act' });

    // Act
    await w.finish(w.plan.sent[1]!);
    const whileFailed = w.plan.sent.map((sent) => `${sent.step}:${sent.targets.join()}`);
    w.clock.advance(11_000);
    await w.engine.advance(rollout.rolloutId, FAR);
    await w.finish(w.plan.sent[2]!);

    // Assert
    expect(whileFailed).toEqual(['check:a,b,c', 'act:a,b,c']);
    expect(w.plan.sent.slice(2).map((sent) => `${sent.step}:${sent.targets.join()}`)).toEqual([
      'act:b',
      'confirm:a,b,c',
    ]);
    const attempts = await w.store.listAttempts('prod', rollout.rolloutId);
    expect(new Set(attempts.map((attempt) => attempt.token)).size).toBe(1);
    expect(attempts.find((attempt) => attempt.target === 'b')?.tries).toBe(2);
  });

  it('halts at once when a target runs out of tries at a barrier: the others could never pass it', async () => {
    // Arrange
    const w = quorumWorld({ ...retry, maxTries: 1 });
    const rollout = await w.start();
    await w.engine.advance(rollout.rolloutId, FAR);
    w.plan.verdicts.set('c:check', { ok: false, reason: 'down', retryFrom: 'check' });

    // Act
    await w.finish(w.plan.sent[0]!);

    // Assert
    const halted = await w.store.getRollout('prod', rollout.rolloutId);
    expect(halted).toMatchObject({ status: 'halted', haltReason: 'c failed 1 attempt(s) in wave 1' });
    expect(w.plan.sent.map((sent) => sent.step)).toEqual(['check']);
  });

  it('gives a final failure no next try, whatever tries are left', async () => {
    // Arrange
    const w = quorumWorld(retry);
    const rollout = await w.start();
    await w.engine.advance(rollout.rolloutId, FAR);
    w.plan.verdicts.set('a:check', { ok: false, reason: 'nothing a retry changes', final: true });

    // Act
    await w.finish(w.plan.sent[0]!);

    // Assert
    expect((await w.store.getRollout('prod', rollout.rolloutId))?.status).toBe('halted');
    expect((await w.store.getAttempt('prod', rollout.rolloutId, 'a'))?.state).toBe('exhausted');
  });
});

describe("rollout engine: a command's results at once", () => {
  const retry: FailurePolicy = { kind: 'retry', maxTries: 3, backoffBaseSeconds: 10, backoffMaxSeconds: 10 };
  const succeeded: CommandResult = { state: 'succeeded', stdout: '' };
  const allOf = (sent: Sent, result: CommandResult = succeeded) =>
    new Map(sent.targets.map((target) => [target, result] as const));

  it('applies every target of a command, then moves the rollout on once', async () => {
    // Arrange: one command of three targets, the next step a barrier of all three
    const w = quorumWorld(retry);
    const rollout = await w.start();
    await w.engine.advance(rollout.rolloutId, FAR);
    const check = w.plan.sent[0]!;
    const advance = vi.spyOn(w.engine, 'advance');

    // Act
    const applied = await w.engine.onCommandResults(parseRoutingKey(check.routingKey)!, allOf(check), FAR);

    // Assert
    expect(applied).toBe(true);
    expect(advance).toHaveBeenCalledTimes(1);
    const attempts = await w.store.listAttempts('prod', rollout.rolloutId);
    expect(attempts.map((attempt) => `${attempt.target}:${attempt.state}:${attempt.step}`)).toEqual([
      'a:sent:act',
      'b:sent:act',
      'c:sent:act',
    ]);
    expect(w.plan.sent.map((sent) => `${sent.step}:${sent.targets.join()}`)).toEqual([
      'check:a,b,c',
      'act:a,b,c',
    ]);
  });

  it('skips a target that already took its result and applies the rest of the command', async () => {
    // Arrange: a's result came on its own (as reconcile reads it) before the command's event
    const w = quorumWorld(retry);
    const rollout = await w.start();
    await w.engine.advance(rollout.rolloutId, FAR);
    const check = w.plan.sent[0]!;
    const key = parseRoutingKey(check.routingKey)!;
    await w.engine.onCommandResults(key, new Map([['a', succeeded]]), FAR);
    const afterA = w.plan.sent.length;

    // Act
    const applied = await w.engine.onCommandResults(key, allOf(check), FAR);

    // Assert
    expect(afterA).toBe(1);
    expect(applied).toBe(true);
    expect(w.plan.sent.map((sent) => `${sent.step}:${sent.targets.join()}`)).toEqual([
      'check:a,b,c',
      'act:a,b,c',
    ]);
  });

  it("ignores the results of an earlier try's command: nothing moves, nothing is sent", async () => {
    // Arrange: a's first stop failed and its retry went out under a new token
    const w = world();
    w.plan.policy = { kind: 'retry', maxTries: 3, backoffBaseSeconds: 60, backoffMaxSeconds: 600 };
    const rollout = await w.start([['a']]);
    await w.engine.advance(rollout.rolloutId, FAR);
    const first = w.plan.sent[0]!;
    await w.engine.onCommandResults(
      parseRoutingKey(first.routingKey)!,
      allOf(first, { state: 'failed', detail: 'boom', stdout: '' }),
      FAR,
    );
    w.clock.advance(61_000);
    await w.engine.advance(rollout.rolloutId, FAR);
    const retried = (await w.store.getAttempt('prod', rollout.rolloutId, 'a'))!;
    const advance = vi.spyOn(w.engine, 'advance');

    // Act
    const applied = await w.engine.onCommandResults(parseRoutingKey(first.routingKey)!, allOf(first), FAR);

    // Assert
    expect(applied).toBe(false);
    expect(advance).not.toHaveBeenCalled();
    expect(await w.store.getAttempt('prod', rollout.rolloutId, 'a')).toEqual(retried);
    expect(w.plan.sent.map((sent) => sent.routingKey === first.routingKey)).toEqual([true, false]);
  });

  it("observes the results of a superseded rollout's command instead of applying them", async () => {
    const w = world();
    const rollout = await w.start([['a', 'b']]);
    await w.engine.advance(rollout.rolloutId, FAR);
    await w.engine.supersedeActive('emergency', 'tester');
    const [toA] = w.plan.sent;

    const applied = await w.engine.onCommandResults(parseRoutingKey(toA!.routingKey)!, allOf(toA!), FAR);

    expect(applied).toBe(false);
    expect(w.plan.observed).toEqual([`${rollout.rolloutId}/a:stop:succeeded`]);
    expect(w.plan.succeeded).toEqual([]);
  });
});
