import { beforeEach, describe, expect, it } from 'vitest';
import { ConflictError, ValidationError } from '../../shared/errors';
import type { AttemptRecord, RolloutRecord, WaveRecord } from '../../shared/rollout/model';
import type { StateStore } from '../../shared/state/store';

const NOW = 1_800_000_000_000;
const DAY_MS = 86_400_000;

const instanceId = (index: number) => `i-${String(index).padStart(17, '0')}`;
export const instanceIds = (count: number, first = 0) =>
  Array.from({ length: count }, (_, index) => instanceId(first + index));

export const rollout = (rolloutId: string, cluster = 'prod', waveCount = 1): RolloutRecord => ({
  cluster,
  rolloutId,
  plan: 'certificates',
  kind: 'rotate',
  settings: { mode: 'reload', revokePrevious: false },
  reason: 'test',
  requestedBy: 'test',
  waveCount,
  currentWave: 0,
  waveOrder: {},
  status: 'running',
  createdAt: NOW,
  updatedAt: NOW,
  version: 1,
});

export const waveOf = (rolloutId: string, wave: number, targets: string[], cluster = 'prod'): WaveRecord => ({
  cluster,
  rolloutId,
  wave,
  group: wave === 0 ? 'server' : 'client',
  targets,
});

export const attemptOf = (wave: WaveRecord, target: string): AttemptRecord => ({
  cluster: wave.cluster,
  rolloutId: wave.rolloutId,
  target,
  wave: wave.wave,
  group: wave.group,
  state: 'pending',
  step: 'prepare',
  token: '',
  tries: 0,
  version: 1,
  updatedAt: NOW,
});

/** A new rollout laid out as these waves of targets, with a fresh attempt for every target. */
const planned = (rolloutId: string, targetsByWave: string[][] = [[instanceId(1)]], cluster = 'prod') => {
  const waves = targetsByWave.map((targets, index) => waveOf(rolloutId, index, targets, cluster));
  const attempts = waves.flatMap((wave) => wave.targets.map((target) => attemptOf(wave, target)));
  return [rollout(rolloutId, cluster, waves.length), waves, attempts] as const;
};

const inWavesOf = (size: number, targets: string[]): string[][] =>
  Array.from({ length: Math.ceil(targets.length / size) }, (_, index) =>
    targets.slice(index * size, (index + 1) * size),
  );

/** Enough targets that a rollout item holding them, or even their ids, would be large. */
const LARGE_ROLLOUT_TARGETS = 20_000;

const attemptKey = (target: string, rolloutId = 'r-1', cluster = 'prod') => ({ cluster, rolloutId, target });

/**
 * What the rotation engine relies on from its state store, run against every implementation so a
 * test double cannot drift from the DynamoDB store. `makeStore` gives an empty store for each test.
 */
export function describeStateStore(name: string, makeStore: () => Promise<StateStore>): void {
  describe(`state store contract: ${name}`, () => {
    let store: StateStore;
    const addNode = (id: string, cluster = 'prod', role: 'server' | 'client' = 'client') =>
      store.addNode({ cluster, instanceId: id, role, ip: '10.0.0.1' }, NOW);
    const start = (rolloutId: string, targetsByWave?: string[][], cluster?: string) =>
      store.startRollout(...planned(rolloutId, targetsByWave, cluster));
    const finish = async (rolloutId: string) =>
      store.updateRollout((await store.getRollout('prod', rolloutId))!, { status: 'completed' }, NOW + 1);

    beforeEach(async () => {
      store = await makeStore();
    });

    describe('nodes', () => {
      it('adds a node once as idle and leaves a known node alone', async () => {
        const first = await store.addNode(
          { cluster: 'prod', instanceId: instanceId(1), role: 'server', ip: '10.0.0.1' },
          NOW,
        );
        const second = await store.addNode(
          { cluster: 'prod', instanceId: instanceId(1), role: 'client', ip: '10.9.9.9' },
          NOW + 1,
        );

        expect(first).toMatchObject({ status: 'idle', failures: 0, version: 1, updatedAt: NOW });
        expect(second).toBeUndefined();
        expect(await store.getNode('prod', instanceId(1))).toEqual(first);
      });

      it('reads a whole wave in wave order, more than one batch of 100, leaving out unknown nodes', async () => {
        const ids = instanceIds(130);
        for (const id of ids) await addNode(id);
        const wanted = [...ids].reverse().concat('i-ffffffffffffffff0');

        const nodes = await store.getNodes('prod', wanted);

        expect(nodes.map((node) => node.instanceId)).toEqual([...ids].reverse());
      });

      it("lists a cluster's nodes by instance id, and only that cluster's nodes", async () => {
        await addNode(instanceId(2));
        await addNode(instanceId(1));
        await addNode(instanceId(3), 'staging');
        await store.acquireLease('prod', 'certs', 'run-1', NOW, 60_000);
        await start('r-1', [[instanceId(1), instanceId(2)]]);
        await store.audit({ cluster: 'prod', at: NOW, id: 'a', action: 'started', actor: 't' });

        const nodes = await store.listNodes('prod');

        expect(nodes.map((node) => node.instanceId)).toEqual([instanceId(1), instanceId(2)]);
        expect(await store.getNode('staging', instanceId(1))).toBeUndefined();
      });

      it('applies a change only while the node is in the expected status, so a late event is a no-op', async () => {
        await addNode(instanceId(1));
        await store.updateNode(
          'prod',
          instanceId(1),
          { status: 'idle' },
          { status: 'failed', lastError: 'timeout' },
          NOW,
        );

        const late = store.updateNode('prod', instanceId(1), { status: 'idle' }, { status: 'retired' }, NOW);
        await expect(late).rejects.toBeInstanceOf(ConflictError);

        const applied = await store.updateNode(
          'prod',
          instanceId(1),
          { status: 'failed' },
          { status: 'idle' },
          NOW + 1,
          ['lastError'],
        );
        expect(applied).toMatchObject({ status: 'idle', version: 3, updatedAt: NOW + 1 });
        expect(applied).not.toHaveProperty('lastError');
        expect(await store.getNode('prod', instanceId(1))).toEqual(applied);
      });

      it('accepts any of several expected statuses and refuses a status outside them', async () => {
        await addNode(instanceId(1));

        const accepted = await store.updateNode(
          'prod',
          instanceId(1),
          { status: ['failed', 'idle'] },
          { status: 'retired' },
          NOW,
        );
        const refused = store.updateNode(
          'prod',
          instanceId(1),
          { status: ['failed', 'idle'] },
          { status: 'idle' },
          NOW,
        );

        expect(accepted.status).toBe('retired');
        await expect(refused).rejects.toBeInstanceOf(ConflictError);
        expect((await store.getNode('prod', instanceId(1)))?.status).toBe('retired');
      });

      it('refuses an update based on a stale version', async () => {
        await addNode(instanceId(1));
        await store.updateNode('prod', instanceId(1), { version: 1 }, { lastAction: 'first' }, NOW);

        const stale = store.updateNode('prod', instanceId(1), { version: 1 }, { lastAction: 'second' }, NOW);

        await expect(stale).rejects.toBeInstanceOf(ConflictError);
        expect((await store.getNode('prod', instanceId(1)))?.lastAction).toBe('first');
      });

      it('refuses to update a node it does not know, rather than creating it', async () => {
        const update = store.updateNode('prod', instanceId(9), {}, { status: 'failed' }, NOW);

        await expect(update).rejects.toBeInstanceOf(ConflictError);
        expect(await store.getNode('prod', instanceId(9))).toBeUndefined();
      });

      it('keeps fields whose change is undefined and deletes only the fields listed for removal', async () => {
        await addNode(instanceId(1));
        await store.updateNode(
          'prod',
          instanceId(1),
          {},
          { lastError: 'timeout', lastAction: 'install', nextAttemptAt: NOW + 60_000 },
          NOW,
        );

        const updated = await store.updateNode(
          'prod',
          instanceId(1),
          {},
          { lastError: undefined, failures: 1 },
          NOW + 1,
          ['lastAction'],
        );

        expect(updated).toMatchObject({ lastError: 'timeout', nextAttemptAt: NOW + 60_000, failures: 1 });
        expect(updated).not.toHaveProperty('lastAction');
      });

      it('lets exactly one of several concurrent updates of the same version win', async () => {
        await addNode(instanceId(1));

        const updates = await Promise.allSettled(
          Array.from({ length: 8 }, (_, index) =>
            store.updateNode(
              'prod',
              instanceId(1),
              { status: 'idle', version: 1 },
              { status: 'failed', lastError: `e-${index}` },
              NOW,
            ),
          ),
        );

        const won = updates.flatMap((update) => (update.status === 'fulfilled' ? [update.value] : []));
        expect(won).toHaveLength(1);
        expect(
          updates.filter((update) => update.status === 'rejected' && update.reason instanceof ConflictError),
        ).toHaveLength(7);
        expect((await store.getNode('prod', instanceId(1)))?.lastError).toBe(won[0]?.lastError);
      });

      it('stores copies: changing a record handed in or read back leaves the stored node as it was', async () => {
        const agent = { serial: 'aa', notBefore: NOW, notAfter: NOW + DAY_MS };
        const added = (await addNode(instanceId(1)))!;
        await store.updateNode('prod', instanceId(1), {}, { agent }, NOW);

        added.ip = '10.9.9.9';
        agent.serial = 'changed by the caller';
        const read = (await store.getNode('prod', instanceId(1)))!;
        read.agent!.notAfter = 0;
        (await store.listNodes('prod'))[0]!.status = 'retired';
        (await store.getNodes('prod', [instanceId(1)]))[0]!.failures = 9;

        expect(await store.getNode('prod', instanceId(1))).toMatchObject({
          ip: '10.0.0.1',
          status: 'idle',
          failures: 0,
          agent: { serial: 'aa', notAfter: NOW + DAY_MS },
        });
      });
    });

    describe('lease', () => {
      it('holds the lease against another owner until it expires, then lets it be taken over', async () => {
        expect(await store.acquireLease('prod', 'certs', 'run-1', NOW, 60_000)).toBe(true);
        expect(await store.acquireLease('prod', 'certs', 'run-2', NOW + 1_000, 60_000)).toBe(false);
        expect(await store.acquireLease('prod', 'certs', 'run-2', NOW + 61_000, 60_000)).toBe(true);

        await store.releaseLease('prod', 'certs', 'run-1');
        expect(await store.acquireLease('prod', 'certs', 'run-3', NOW + 62_000, 60_000)).toBe(false);
        await store.releaseLease('prod', 'certs', 'run-2');
        expect(await store.acquireLease('prod', 'certs', 'run-3', NOW + 62_000, 60_000)).toBe(true);
      });

      it('counts the expiry in milliseconds: held up to its last millisecond, free the one after', async () => {
        await store.acquireLease('prod', 'certs', 'run-1', NOW, 60_000);

        const atExpiry = await store.acquireLease('prod', 'certs', 'run-2', NOW + 60_000, 60_000);
        const pastExpiry = await store.acquireLease('prod', 'certs', 'run-2', NOW + 60_001, 60_000);

        expect(atExpiry).toBe(false);
        expect(pastExpiry).toBe(true);
      });

      it('lets the holder renew its lease, which then holds until the new expiry', async () => {
        await store.acquireLease('prod', 'certs', 'run-1', NOW, 60_000);

        const renewed = await store.acquireLease('prod', 'certs', 'run-1', NOW + 50_000, 60_000);

        expect(renewed).toBe(true);
        expect(await store.acquireLease('prod', 'certs', 'run-2', NOW + 100_000, 60_000)).toBe(false);
        expect(await store.acquireLease('prod', 'certs', 'run-2', NOW + 110_001, 60_000)).toBe(true);
      });

      it('keeps one lease per cluster and kind', async () => {
        await store.acquireLease('prod', 'certs', 'run-1', NOW, 60_000);

        expect(await store.acquireLease('staging', 'certs', 'run-2', NOW, 60_000)).toBe(true);
        expect(await store.acquireLease('prod', 'token', 'run-2', NOW, 60_000)).toBe(true);
        expect(await store.acquireLease('prod', 'certs', 'run-2', NOW, 60_000)).toBe(false);
      });

      it('gives the lease to exactly one of several concurrent runs', async () => {
        const runs = await Promise.all(
          Array.from({ length: 8 }, (_, index) =>
            store.acquireLease('prod', 'certs', `run-${index}`, NOW, 60_000),
          ),
        );

        expect(runs.filter(Boolean)).toHaveLength(1);
      });
    });

    describe('rollouts', () => {
      it('writes the waves and attempts of a new rollout, readable by wave and by target', async () => {
        const [started, waves, attempts] = planned('r-1', [[instanceId(1), instanceId(2)], [instanceId(3)]]);

        await store.startRollout(started, waves, attempts);

        expect(await store.getRollout('prod', 'r-1')).toEqual(started);
        expect(await store.getWave('prod', 'r-1', 0)).toEqual(waves[0]);
        expect(await store.getWave('prod', 'r-1', 1)).toEqual(waves[1]);
        expect(await store.getWave('prod', 'r-1', 2)).toBeUndefined();
        expect(await store.getAttempt('prod', 'r-1', instanceId(3))).toEqual(attempts[2]);
        expect(await store.getAttempts('prod', 'r-1', [instanceId(3), instanceId(1)])).toEqual([
          attempts[2],
          attempts[0],
        ]);
        expect(await store.listAttempts('prod', 'r-1')).toEqual(attempts);
      });

      it('keeps one active rollout per cluster and frees the slot when it finishes', async () => {
        await start('r-1');
        await expect(start('r-2')).rejects.toBeInstanceOf(ConflictError);

        const active = await store.getActiveRollout('prod');
        expect(active?.rolloutId).toBe('r-1');
        await store.updateRollout(active!, { status: 'completed' }, NOW);

        expect(await store.getActiveRollout('prod')).toBeUndefined();
        await start('r-2');
        expect((await store.getActiveRollout('prod'))?.rolloutId).toBe('r-2');
      });

      it('leaves a rollout refused for another active one neither active nor listed', async () => {
        await start('r-1', [[instanceId(1)]]);

        const refused = start('r-2', [[instanceId(2)], [instanceId(3)]]);

        await expect(refused).rejects.toBeInstanceOf(ConflictError);
        expect((await store.getActiveRollout('prod'))?.rolloutId).toBe('r-1');
        expect(await store.getRollout('prod', 'r-2')).toBeUndefined();
        expect((await store.listRollouts('prod')).map((listed) => listed.rolloutId)).toEqual(['r-1']);
      });

      it('lets exactly one of several concurrent rollouts start', async () => {
        const starts = await Promise.allSettled(
          Array.from({ length: 4 }, (_, index) => start(`r-${index}`, [[instanceId(index)]])),
        );

        const started = starts.flatMap((outcome, index) =>
          outcome.status === 'fulfilled' ? [`r-${index}`] : [],
        );
        expect(started).toHaveLength(1);
        expect(
          starts.filter(
            (outcome) => outcome.status === 'rejected' && outcome.reason instanceof ConflictError,
          ),
        ).toHaveLength(3);
        expect((await store.getActiveRollout('prod'))?.rolloutId).toBe(started[0]);
        expect((await store.listRollouts('prod')).map((listed) => listed.rolloutId)).toEqual(started);
      });

      it("does not let one cluster's active rollout block another cluster", async () => {
        await start('r-1', undefined, 'prod');

        await start('r-2', undefined, 'staging');

        expect((await store.getActiveRollout('staging'))?.rolloutId).toBe('r-2');
      });

      it('refuses a rollout that gives a target two attempts, and writes none of it', async () => {
        const [started, waves, attempts] = planned('r-1', [[instanceId(1)], [instanceId(2), instanceId(1)]]);

        const refused = store.startRollout(started, waves, attempts);

        await expect(refused).rejects.toBeInstanceOf(ValidationError);
        expect(await store.getActiveRollout('prod')).toBeUndefined();
        expect(await store.getWave('prod', 'r-1', 0)).toBeUndefined();
        expect(await store.listAttempts('prod', 'r-1')).toEqual([]);
      });

      it("refuses a rollout id with '#', which would run into the keys of another rollout", async () => {
        const refused = start('r-1#ATTEMPT');

        await expect(refused).rejects.toBeInstanceOf(ValidationError);
        expect(await store.getActiveRollout('prod')).toBeUndefined();
      });

      it('lists every rollout of the cluster and nothing else, however many waves and attempts they hold', async () => {
        // 'r-1!b' sorts between 'r-1' and the waves and attempts of 'r-1'; 'r-10' right after them.
        for (const [rolloutId, targets] of [
          ['r-1', instanceIds(130)],
          ['r-1!b', [instanceId(1)]],
          ['r-10', instanceIds(3)],
        ] as const) {
          await start(rolloutId, inWavesOf(50, [...targets]));
          await finish(rolloutId);
        }
        await start('r-2', [instanceIds(120)]);
        await start('r-3', undefined, 'staging');

        const rollouts = await store.listRollouts('prod');

        expect(rollouts.map((listed) => [listed.rolloutId, listed.status])).toEqual([
          ['r-1', 'completed'],
          ['r-1!b', 'completed'],
          ['r-10', 'completed'],
          ['r-2', 'running'],
        ]);
        expect(rollouts.every((listed) => listed.plan === 'certificates')).toBe(true);
      });

      it('keeps the slot while the rollout advances, and frees it when it halts or is superseded', async () => {
        await start('r-1');
        const advanced = await store.updateRollout(rollout('r-1'), { currentWave: 1 }, NOW + 1);
        expect((await store.getActiveRollout('prod'))?.currentWave).toBe(1);

        await store.updateRollout(advanced, { status: 'halted', haltReason: 'node failed' }, NOW + 2);
        expect(await store.getActiveRollout('prod')).toBeUndefined();

        await start('r-2');
        await store.updateRollout(rollout('r-2'), { status: 'superseded' }, NOW + 3);
        expect(await store.getActiveRollout('prod')).toBeUndefined();
      });

      it('records each update with the next version and its time, and lists finished rollouts too', async () => {
        await start('r-2');
        const updated = await store.updateRollout(
          rollout('r-2'),
          { status: 'completed', currentWave: 2, waveCount: 2, waveOrder: { '0': 1, '1': 0 } },
          NOW + 5,
        );
        await start('r-1');

        const rollouts = await store.listRollouts('prod');

        expect(updated).toMatchObject({
          status: 'completed',
          currentWave: 2,
          waveCount: 2,
          waveOrder: { '0': 1, '1': 0 },
          version: 2,
          updatedAt: NOW + 5,
        });
        expect(await store.getRollout('prod', 'r-2')).toEqual(updated);
        expect(rollouts.map((listed) => [listed.rolloutId, listed.status])).toEqual([
          ['r-1', 'running'],
          ['r-2', 'completed'],
        ]);
      });

      it('refuses a rollout update based on a stale read', async () => {
        await start('r-1');
        const read = (await store.getRollout('prod', 'r-1'))!;
        await store.updateRollout(read, { currentWave: 1 }, NOW);

        await expect(store.updateRollout(read, { currentWave: 1 }, NOW)).rejects.toBeInstanceOf(
          ConflictError,
        );
        expect((await store.getRollout('prod', 'r-1'))?.version).toBe(2);
      });

      it('lets exactly one of two concurrent updates of the same read win', async () => {
        await start('r-1');
        const read = (await store.getRollout('prod', 'r-1'))!;

        const updates = await Promise.allSettled([
          store.updateRollout(read, { currentWave: 1 }, NOW),
          store.updateRollout(read, { status: 'halted' }, NOW),
        ]);

        expect(updates.filter((update) => update.status === 'fulfilled')).toHaveLength(1);
        expect(
          updates.filter((update) => update.status === 'rejected' && update.reason instanceof ConflictError),
        ).toHaveLength(1);
      });

      it('refuses to update a rollout it does not know', async () => {
        const update = store.updateRollout(rollout('r-9'), { currentWave: 1 }, NOW);

        await expect(update).rejects.toBeInstanceOf(ConflictError);
        expect(await store.getRollout('prod', 'r-9')).toBeUndefined();
      });

      it('stores copies: changing a rollout or wave handed in or read back leaves the stored one as it was', async () => {
        const [started, waves, attempts] = planned('r-1', [[instanceId(1)]]);
        await store.startRollout(started, waves, attempts);

        started.status = 'halted';
        (started.waveOrder as Record<string, number>)['0'] = 9;
        waves[0]!.targets.push(instanceId(2));
        const read = (await store.getRollout('prod', 'r-1'))!;
        (read.settings as Record<string, unknown>).mode = 'restart';
        (await store.listRollouts('prod'))[0]!.status = 'halted';
        (await store.getWave('prod', 'r-1', 0))!.targets.push(instanceId(3));

        const stored = await store.getRollout('prod', 'r-1');
        expect(stored).toMatchObject({ status: 'running', settings: { mode: 'reload' } });
        expect(stored?.waveOrder).toEqual({});
        expect((await store.getWave('prod', 'r-1', 0))?.targets).toEqual([instanceId(1)]);
      });

      it('keeps the rollout item small for a rollout of 20,000 targets in waves of 50', async () => {
        const targets = instanceIds(LARGE_ROLLOUT_TARGETS);
        const [started, waves, attempts] = planned('r-1', inWavesOf(50, targets));

        await store.startRollout(started, waves, attempts);

        const stored = await store.getRollout('prod', 'r-1');
        expect(stored?.waveCount).toBe(Math.ceil(LARGE_ROLLOUT_TARGETS / 50));
        expect(JSON.stringify(stored).length).toBeLessThan(2_048);
        const last = waves.at(-1)!;
        expect(await store.getWave('prod', 'r-1', last.wave)).toEqual(last);
        expect(await store.getAttempts('prod', 'r-1', last.targets)).toEqual(
          attempts.slice(-last.targets.length),
        );
      });
    });

    describe('waves', () => {
      it('adds a wave and its attempts under a new number', async () => {
        await start('r-1', [[instanceId(1)]]);
        const wave = waveOf('r-1', 1, [instanceId(2)]);

        await store.addWave(wave, [attemptOf(wave, instanceId(2))]);

        expect(await store.getWave('prod', 'r-1', 1)).toEqual(wave);
        expect(await store.getAttempt('prod', 'r-1', instanceId(2))).toEqual(attemptOf(wave, instanceId(2)));
        expect((await store.listAttempts('prod', 'r-1')).map((attempt) => attempt.target)).toEqual([
          instanceId(1),
          instanceId(2),
        ]);
      });

      it('refuses a wave number that is taken, and writes none of its attempts', async () => {
        await start('r-1', [[instanceId(1)]]);
        const late = waveOf('r-1', 0, [instanceId(2)]);

        const refused = store.addWave(late, [attemptOf(late, instanceId(2))]);

        await expect(refused).rejects.toBeInstanceOf(ConflictError);
        expect((await store.getWave('prod', 'r-1', 0))?.targets).toEqual([instanceId(1)]);
        expect(await store.getAttempt('prod', 'r-1', instanceId(2))).toBeUndefined();
      });

      it('gives a wave number to exactly one of several concurrent adds', async () => {
        await start('r-1', [[instanceId(0)]]);
        const waves = [1, 2, 3, 4].map((index) => waveOf('r-1', 1, [instanceId(index)]));

        const adds = await Promise.allSettled(
          waves.map((wave) => store.addWave(wave, [attemptOf(wave, wave.targets[0]!)])),
        );

        const winner = waves.find((_, index) => adds[index]?.status === 'fulfilled');
        expect(
          adds.filter((add) => add.status === 'rejected' && add.reason instanceof ConflictError),
        ).toHaveLength(3);
        expect(await store.getWave('prod', 'r-1', 1)).toEqual(winner);
        expect((await store.listAttempts('prod', 'r-1')).map((attempt) => attempt.target)).toEqual([
          instanceId(0),
          ...winner!.targets,
        ]);
      });

      it('keeps the attempt a target already has when a new wave lists it again', async () => {
        await start('r-1', [[instanceId(1)]]);
        await store.updateAttempt(
          attemptKey(instanceId(1)),
          { state: 'pending', token: '' },
          { state: 'sent', token: 't-1' },
          NOW,
        );
        const again = waveOf('r-1', 1, [instanceId(1)]);

        await store.addWave(again, [attemptOf(again, instanceId(1))]);

        expect(await store.getWave('prod', 'r-1', 1)).toEqual(again);
        expect(await store.getAttempt('prod', 'r-1', instanceId(1))).toMatchObject({
          wave: 0,
          state: 'sent',
          token: 't-1',
          version: 2,
        });
      });
    });

    describe('attempts', () => {
      it('moves a fresh attempt and then the next step: version + 1 and its time each, removals applied', async () => {
        await start('r-1', [[instanceId(1)]]);
        const carry = {
          agent: { serial: 'aa', pem: 'certificate' },
          chain: ['intermediate', 'root'],
          renewed: true,
        };

        const claimed = await store.updateAttempt(
          attemptKey(instanceId(1)),
          { state: 'pending', token: '' },
          {
            state: 'sent',
            token: 't-1',
            tries: 1,
            commandId: 'cmd-1',
            sentAt: NOW + 1,
            lastError: 'earlier',
          },
          NOW + 1,
        );
        const stepped = await store.updateAttempt(
          attemptKey(instanceId(1)),
          { state: 'sent', token: 't-1', version: 2 },
          { state: 'pending', step: 'install', carry, commandId: undefined },
          NOW + 2,
          ['lastError', 'sentAt'],
        );

        expect(claimed).toMatchObject({
          state: 'sent',
          token: 't-1',
          tries: 1,
          version: 2,
          updatedAt: NOW + 1,
        });
        expect(stepped).toMatchObject({
          state: 'pending',
          step: 'install',
          token: 't-1',
          commandId: 'cmd-1',
          carry,
          version: 3,
          updatedAt: NOW + 2,
        });
        expect(stepped).not.toHaveProperty('lastError');
        expect(stepped).not.toHaveProperty('sentAt');
        expect(await store.getAttempt('prod', 'r-1', instanceId(1))).toEqual(stepped);
      });

      it.each([
        ['state', { state: 'sent', token: '' }],
        ['token', { state: 'pending', token: 't-0' }],
      ] as const)('refuses to move an attempt whose %s is not the one expected', async (_, expected) => {
        await start('r-1', [[instanceId(1)]]);

        const refused = store.updateAttempt(attemptKey(instanceId(1)), expected, { state: 'done' }, NOW + 1);

        await expect(refused).rejects.toBeInstanceOf(ConflictError);
        expect(await store.getAttempt('prod', 'r-1', instanceId(1))).toMatchObject({
          state: 'pending',
          version: 1,
        });
      });

      it('refuses to move an attempt based on a stale version', async () => {
        await start('r-1', [[instanceId(1)]]);
        await store.updateAttempt(
          attemptKey(instanceId(1)),
          { state: 'pending', token: '' },
          { lastError: 'busy' },
          NOW,
        );

        const stale = store.updateAttempt(
          attemptKey(instanceId(1)),
          { state: 'pending', token: '', version: 1 },
          { state: 'sent', token: 't-1' },
          NOW + 1,
        );

        await expect(stale).rejects.toBeInstanceOf(ConflictError);
        expect(await store.getAttempt('prod', 'r-1', instanceId(1))).toMatchObject({
          state: 'pending',
          version: 2,
        });
      });

      it('refuses to move an attempt it does not know, rather than creating it', async () => {
        await start('r-1', [[instanceId(1)]]);

        const unknown = store.updateAttempt(
          attemptKey(instanceId(2)),
          { state: 'pending', token: '' },
          { state: 'sent' },
          NOW,
        );

        await expect(unknown).rejects.toBeInstanceOf(ConflictError);
        expect(await store.getAttempt('prod', 'r-1', instanceId(2))).toBeUndefined();
      });

      it('lets exactly one of several concurrent claims of an attempt win', async () => {
        await start('r-1', [[instanceId(1)]]);

        const claims = await Promise.allSettled(
          Array.from({ length: 8 }, (_, index) =>
            store.updateAttempt(
              attemptKey(instanceId(1)),
              { state: 'pending', token: '' },
              { state: 'sent', token: `t-${index}` },
              NOW,
            ),
          ),
        );

        const won = claims.flatMap((claim) => (claim.status === 'fulfilled' ? [claim.value] : []));
        expect(won).toHaveLength(1);
        expect(
          claims.filter((claim) => claim.status === 'rejected' && claim.reason instanceof ConflictError),
        ).toHaveLength(7);
        expect((await store.getAttempt('prod', 'r-1', instanceId(1)))?.token).toBe(won[0]?.token);
      });

      it('reads attempts in the order asked, more than one batch of 100, leaving out unknown targets', async () => {
        const targets = instanceIds(130);
        await start('r-1', inWavesOf(50, targets));
        await start('r-1', [[instanceId(500)]], 'staging');
        const wanted = [...targets].reverse();
        wanted.splice(60, 0, instanceId(500), 'i-ffffffffffffffff0');

        const attempts = await store.getAttempts('prod', 'r-1', wanted);

        expect(attempts.map((attempt) => attempt.target)).toEqual([...targets].reverse());
        expect(attempts.every((attempt) => attempt.cluster === 'prod' && attempt.rolloutId === 'r-1')).toBe(
          true,
        );
      });

      it('lists every attempt of a rollout by target, and none of its waves or of another rollout', async () => {
        await start('r-10', [instanceIds(3, 1000)]);
        await finish('r-10');
        const targets = instanceIds(130);
        await start('r-1', inWavesOf(50, [...targets].reverse()));

        const attempts = await store.listAttempts('prod', 'r-1');

        expect(attempts.map((attempt) => attempt.target)).toEqual(targets);
        expect(attempts.every((attempt) => attempt.rolloutId === 'r-1' && attempt.state === 'pending')).toBe(
          true,
        );
        expect(await store.listAttempts('prod', 'r-10')).toHaveLength(3);
      });

      it('stores copies: changing an attempt handed in or read back leaves the stored one as it was', async () => {
        const [started, waves, attempts] = planned('r-1', [[instanceId(1)]]);
        await store.startRollout(started, waves, attempts);
        const carry = { certificates: { agent: 'pem-1' } };
        const moved = await store.updateAttempt(
          attemptKey(instanceId(1)),
          { state: 'pending', token: '' },
          { carry },
          NOW,
        );

        attempts[0]!.state = 'done';
        carry.certificates.agent = 'changed by the caller';
        moved.step = 'changed by the caller';
        (moved.carry as typeof carry).certificates.agent = 'changed by the caller';
        (await store.getAttempt('prod', 'r-1', instanceId(1)))!.tries = 9;
        (await store.getAttempts('prod', 'r-1', [instanceId(1)]))[0]!.state = 'exhausted';
        (await store.listAttempts('prod', 'r-1'))[0]!.token = 't-9';

        expect(await store.getAttempt('prod', 'r-1', instanceId(1))).toMatchObject({
          state: 'pending',
          step: 'prepare',
          token: '',
          tries: 0,
          carry: { certificates: { agent: 'pem-1' } },
        });
      });
    });

    describe('audit', () => {
      it('returns audit entries in time order and hides those past retention', async () => {
        await store.audit({ cluster: 'prod', at: NOW + 2, id: 'b', action: 'second', actor: 't' });
        await store.audit({ cluster: 'prod', at: NOW + 1, id: 'a', action: 'first', actor: 't' });

        expect((await store.listAudit('prod', NOW)).map((entry) => entry.action)).toEqual([
          'first',
          'second',
        ]);
        expect(await store.listAudit('prod', NOW + 91 * DAY_MS)).toEqual([]);
      });

      it('orders entries of the same millisecond by id', async () => {
        await store.audit({ cluster: 'prod', at: NOW, id: '0002', action: 'second', actor: 't' });
        await store.audit({ cluster: 'prod', at: NOW, id: '0001', action: 'first', actor: 't' });

        const entries = await store.listAudit('prod', NOW);

        expect(entries.map((entry) => entry.action)).toEqual(['first', 'second']);
      });

      it('keeps an entry for 90 days from the second it was written', async () => {
        await store.audit({ cluster: 'prod', at: NOW + 999, id: 'a', action: 'kept', actor: 't' });

        const lastMoment = await store.listAudit('prod', NOW + 90 * DAY_MS - 1);
        const expired = await store.listAudit('prod', NOW + 90 * DAY_MS);

        expect(lastMoment.map((entry) => entry.action)).toEqual(['kept']);
        expect(expired).toEqual([]);
      });

      it("gives back an entry as written, without the store's expiry, and only for its cluster", async () => {
        const entry = {
          cluster: 'prod',
          at: NOW,
          id: 'a',
          action: 'rollout-started',
          actor: 'cli:alice',
          reason: 'scheduled renewal',
          rolloutId: 'r-1',
          details: { plan: 'certificates', kind: 'rotate', waves: 2, revokePrevious: false },
        };
        await store.audit(entry);

        expect(await store.listAudit('prod', NOW)).toEqual([entry]);
        expect(await store.listAudit('staging', NOW)).toEqual([]);
      });
    });
  });
}
