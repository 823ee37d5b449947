import { beforeEach, describe, expect, it } from 'vitest';
import { ConflictError } from '../../shared/errors';
import type { RolloutRecord } from '../../shared/state/records';
import type { StateStore } from '../../shared/state/store';

const NOW = 1_800_000_000_000;
const DAY_MS = 86_400_000;

const rollout = (rolloutId: string, cluster = 'prod'): RolloutRecord => ({
  cluster,
  rolloutId,
  kind: 'rotate',
  mode: 'reload',
  revokePrevious: false,
  reason: 'test',
  requestedBy: 'test',
  waves: [{ role: 'server', instanceIds: ['i-00000000000000001'] }],
  currentWave: 0,
  status: 'running',
  createdAt: NOW,
  updatedAt: NOW,
  version: 1,
});

const instanceId = (index: number) => `i-${String(index).padStart(17, '0')}`;

/**
 * What the rotation engine relies on from its state store, run against every implementation so a
 * test double cannot drift from the DynamoDB store. `makeStore` gives an empty store for each test.
 */
export function describeStateStore(name: string, makeStore: () => Promise<StateStore>): void {
  describe(`state store contract: ${name}`, () => {
    let store: StateStore;
    const addNode = (id: string, cluster = 'prod', role: 'server' | 'client' = 'client') =>
      store.addNode({ cluster, instanceId: id, role, ip: '10.0.0.1' }, NOW);

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
        const ids = Array.from({ length: 130 }, (_, index) => instanceId(index));
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
        await store.startRollout(rollout('r-1'));
        await store.audit({ cluster: 'prod', at: NOW, id: 'a', action: 'started', actor: 't' });

        const nodes = await store.listNodes('prod');

        expect(nodes.map((node) => node.instanceId)).toEqual([instanceId(1), instanceId(2)]);
        expect(await store.getNode('staging', instanceId(1))).toBeUndefined();
      });

      it('applies a transition only when status and attempt match, so a late event is a no-op', async () => {
        await addNode(instanceId(1));
        await store.updateNode(
          'prod',
          instanceId(1),
          { status: 'idle' },
          { status: 'preparing', attemptId: 'attempt-1' },
          NOW,
        );

        const late = store.updateNode(
          'prod',
          instanceId(1),
          { status: 'preparing', attemptId: 'attempt-0' },
          { status: 'failed' },
          NOW,
        );
        await expect(late).rejects.toBeInstanceOf(ConflictError);

        const applied = await store.updateNode(
          'prod',
          instanceId(1),
          { status: 'preparing', attemptId: 'attempt-1' },
          { status: 'idle' },
          NOW + 1,
          ['attemptId'],
        );
        expect(applied).toMatchObject({ status: 'idle', version: 3, updatedAt: NOW + 1 });
        expect(applied.attemptId).toBeUndefined();
        expect(await store.getNode('prod', instanceId(1))).toEqual(applied);
      });

      it('accepts any of several expected statuses and refuses a status outside them', async () => {
        await addNode(instanceId(1));

        const accepted = await store.updateNode(
          'prod',
          instanceId(1),
          { status: ['failed', 'idle'] },
          { status: 'preparing' },
          NOW,
        );
        const refused = store.updateNode(
          'prod',
          instanceId(1),
          { status: ['failed', 'idle'] },
          { status: 'preparing' },
          NOW,
        );

        expect(accepted.status).toBe('preparing');
        await expect(refused).rejects.toBeInstanceOf(ConflictError);
      });

      it('claims a node for an attempt only while it has none in flight', async () => {
        await addNode(instanceId(1));
        await store.updateNode('prod', instanceId(1), { attemptId: null }, { attemptId: 'attempt-1' }, NOW);

        const second = store.updateNode(
          'prod',
          instanceId(1),
          { attemptId: null },
          { attemptId: 'attempt-2' },
          NOW,
        );

        await expect(second).rejects.toBeInstanceOf(ConflictError);
        expect((await store.getNode('prod', instanceId(1)))?.attemptId).toBe('attempt-1');
      });

      it('refuses an update based on a stale version', async () => {
        await addNode(instanceId(1));
        await store.updateNode('prod', instanceId(1), { version: 1 }, { lastAction: 'first' }, NOW);

        const stale = store.updateNode('prod', instanceId(1), { version: 1 }, { lastAction: 'second' }, NOW);

        await expect(stale).rejects.toBeInstanceOf(ConflictError);
        expect((await store.getNode('prod', instanceId(1)))?.lastAction).toBe('first');
      });

      it('refuses to update a node it does not know, rather than creating it', async () => {
        const update = store.updateNode('prod', instanceId(9), {}, { status: 'preparing' }, NOW);

        await expect(update).rejects.toBeInstanceOf(ConflictError);
        expect(await store.getNode('prod', instanceId(9))).toBeUndefined();
      });

      it('keeps fields whose change is undefined and deletes only the fields listed for removal', async () => {
        await addNode(instanceId(1));
        await store.updateNode(
          'prod',
          instanceId(1),
          {},
          { lastError: 'timeout', commandId: 'cmd-1', nextAttemptAt: NOW + 60_000 },
          NOW,
        );

        const updated = await store.updateNode(
          'prod',
          instanceId(1),
          {},
          { lastError: undefined, failures: 1 },
          NOW + 1,
          ['commandId'],
        );

        expect(updated).toMatchObject({ lastError: 'timeout', nextAttemptAt: NOW + 60_000, failures: 1 });
        expect(updated).not.toHaveProperty('commandId');
      });

      it('lets exactly one of several concurrent claims win', async () => {
        await addNode(instanceId(1));

        const claims = await Promise.allSettled(
          Array.from({ length: 8 }, (_, index) =>
            store.updateNode(
              'prod',
              instanceId(1),
              { status: 'idle', version: 1 },
              { status: 'preparing', attemptId: `a-${index}` },
              NOW,
            ),
          ),
        );

        expect(claims.filter((claim) => claim.status === 'fulfilled')).toHaveLength(1);
        expect(
          claims.filter((claim) => claim.status === 'rejected' && claim.reason instanceof ConflictError),
        ).toHaveLength(7);
      });

      it('stores copies: changing a record handed in or read back leaves the stored node as it was', async () => {
        const signed = {
          agentCertificatePem: 'agent',
          cliCertificatePem: 'cli',
          chainPem: 'chain',
          caBundlePem: 'ca',
          agent: { serial: 'aa', notBefore: NOW, notAfter: NOW + DAY_MS },
          cli: { serial: 'bb', notBefore: NOW, notAfter: NOW + DAY_MS },
        };
        const added = (await addNode(instanceId(1)))!;
        await store.updateNode('prod', instanceId(1), {}, { signed }, NOW);

        added.ip = '10.9.9.9';
        signed.agent.serial = 'changed by the caller';
        const read = (await store.getNode('prod', instanceId(1)))!;
        read.signed!.cli.serial = 'changed by a reader';
        (await store.listNodes('prod'))[0]!.status = 'retired';
        (await store.getNodes('prod', [instanceId(1)]))[0]!.failures = 9;

        expect(await store.getNode('prod', instanceId(1))).toMatchObject({
          ip: '10.0.0.1',
          status: 'idle',
          failures: 0,
          signed: { agent: { serial: 'aa' }, cli: { serial: 'bb' } },
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
      it('keeps one active rollout per cluster and frees the slot when it finishes', async () => {
        await store.startRollout(rollout('r-1'));
        await expect(store.startRollout(rollout('r-2'))).rejects.toBeInstanceOf(ConflictError);

        const active = await store.getActiveRollout('prod');
        expect(active?.rolloutId).toBe('r-1');
        await store.updateRollout(active!, { status: 'completed' }, NOW);

        expect(await store.getActiveRollout('prod')).toBeUndefined();
        await store.startRollout(rollout('r-2'));
        expect((await store.getActiveRollout('prod'))?.rolloutId).toBe('r-2');
      });

      it('lets exactly one of several concurrent rollouts start', async () => {
        const starts = await Promise.allSettled(
          Array.from({ length: 4 }, (_, index) => store.startRollout(rollout(`r-${index}`))),
        );

        const started = starts.flatMap((start, index) =>
          start.status === 'fulfilled' ? [`r-${index}`] : [],
        );
        expect(started).toHaveLength(1);
        expect(
          starts.filter((start) => start.status === 'rejected' && start.reason instanceof ConflictError),
        ).toHaveLength(3);
        expect((await store.getActiveRollout('prod'))?.rolloutId).toBe(started[0]);
      });

      it("does not let one cluster's active rollout block another cluster", async () => {
        await store.startRollout(rollout('r-1', 'prod'));

        await store.startRollout(rollout('r-2', 'staging'));

        expect((await store.getActiveRollout('staging'))?.rolloutId).toBe('r-2');
      });

      it('keeps the slot while the rollout advances, and frees it when it halts or is superseded', async () => {
        await store.startRollout(rollout('r-1'));
        const advanced = await store.updateRollout(rollout('r-1'), { currentWave: 1 }, NOW + 1);
        expect((await store.getActiveRollout('prod'))?.currentWave).toBe(1);

        await store.updateRollout(advanced, { status: 'halted', haltReason: 'node failed' }, NOW + 2);
        expect(await store.getActiveRollout('prod')).toBeUndefined();

        await store.startRollout(rollout('r-2'));
        await store.updateRollout(rollout('r-2'), { status: 'superseded' }, NOW + 3);
        expect(await store.getActiveRollout('prod')).toBeUndefined();
      });

      it('records each update with the next version and its time, and lists finished rollouts too', async () => {
        await store.startRollout(rollout('r-2'));
        const updated = await store.updateRollout(rollout('r-2'), { status: 'completed' }, NOW + 5);
        await store.startRollout(rollout('r-1'));

        const rollouts = await store.listRollouts('prod');

        expect(updated).toMatchObject({ status: 'completed', version: 2, updatedAt: NOW + 5 });
        expect(await store.getRollout('prod', 'r-2')).toEqual(updated);
        expect(rollouts.map((listed) => [listed.rolloutId, listed.status])).toEqual([
          ['r-1', 'running'],
          ['r-2', 'completed'],
        ]);
      });

      it('refuses a rollout update based on a stale read', async () => {
        await store.startRollout(rollout('r-1'));
        const read = (await store.getRollout('prod', 'r-1'))!;
        await store.updateRollout(read, { currentWave: 1 }, NOW);

        await expect(store.updateRollout(read, { currentWave: 1 }, NOW)).rejects.toBeInstanceOf(
          ConflictError,
        );
        expect((await store.getRollout('prod', 'r-1'))?.version).toBe(2);
      });

      it('lets exactly one of two concurrent updates of the same read win', async () => {
        await store.startRollout(rollout('r-1'));
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

      it('stores copies: changing a rollout handed in or read back leaves the stored one as it was', async () => {
        const started = rollout('r-1');
        await store.startRollout(started);

        started.waves[0]!.instanceIds.push(instanceId(2));
        const read = (await store.getRollout('prod', 'r-1'))!;
        read.waves.push({ role: 'client', instanceIds: [instanceId(3)] });
        (await store.listRollouts('prod'))[0]!.status = 'halted';

        expect(await store.getRollout('prod', 'r-1')).toMatchObject({
          status: 'running',
          waves: [{ role: 'server', instanceIds: [instanceId(1)] }],
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
          details: { kind: 'rotate', waves: 2, revokePrevious: false },
        };
        await store.audit(entry);

        expect(await store.listAudit('prod', NOW)).toEqual([entry]);
        expect(await store.listAudit('staging', NOW)).toEqual([]);
      });
    });
  });
}
