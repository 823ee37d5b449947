import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStateTable, startDynamo } from '../../local/aws/dynamodb';
import { ConflictError } from '../../shared/errors';
import type { RolloutRecord } from '../../shared/state/records';
import { StateTable } from '../../shared/state/table';

const NOW = 1_800_000_000_000;
let dynamo: Awaited<ReturnType<typeof startDynamo>>;
let table: StateTable;

beforeAll(async () => {
  dynamo = await startDynamo();
  await createStateTable(dynamo.client(), 'state');
  table = new StateTable(dynamo.client(), 'state');
});

afterAll(async () => {
  await dynamo.stop();
});

const rollout = (cluster: string, rolloutId: string): RolloutRecord => ({
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

describe('state table on dynalite', () => {
  it('is ready for the first write once created, even while DynamoDB still reports it CREATING', async () => {
    const slow = await startDynamo({ tableCreationMs: 300 });
    try {
      await createStateTable(slow.client(), 'state');

      const fresh = new StateTable(slow.client(), 'state');
      expect(await fresh.acquireLease('e', 'certs', 'run-1', NOW, 60_000)).toBe(true);
    } finally {
      await slow.stop();
    }
  });

  it('adds a node once and leaves a known node alone', async () => {
    const first = await table.addNode(
      { cluster: 'a', instanceId: 'i-00000000000000001', role: 'server', ip: '10.0.0.1' },
      NOW,
    );
    const second = await table.addNode(
      { cluster: 'a', instanceId: 'i-00000000000000001', role: 'client', ip: '10.9.9.9' },
      NOW,
    );

    expect(first?.status).toBe('idle');
    expect(second).toBeUndefined();
    expect((await table.getNode('a', 'i-00000000000000001'))?.role).toBe('server');
  });

  it('reads a whole wave in wave order, more than one batch of 100, leaving out unknown nodes', async () => {
    const ids = Array.from({ length: 130 }, (_, index) => `i-${String(index).padStart(17, '0')}`);
    for (const id of ids) {
      await table.addNode({ cluster: 'wave', instanceId: id, role: 'client', ip: '10.0.0.2' }, NOW);
    }
    const wanted = [...ids].reverse().concat('i-ffffffffffffffff0');

    const nodes = await table.getNodes('wave', wanted);

    expect(nodes.map((node) => node.instanceId)).toEqual([...ids].reverse());
  });

  it('applies a transition only when status and attempt match, so a late event is a no-op', async () => {
    await table.addNode(
      { cluster: 'b', instanceId: 'i-00000000000000002', role: 'client', ip: '10.0.0.2' },
      NOW,
    );
    await table.updateNode(
      'b',
      'i-00000000000000002',
      { status: 'idle' },
      { status: 'preparing', attemptId: 'attempt-1' },
      NOW,
    );

    const late = table.updateNode(
      'b',
      'i-00000000000000002',
      { status: 'preparing', attemptId: 'attempt-0' },
      { status: 'failed' },
      NOW,
    );
    await expect(late).rejects.toBeInstanceOf(ConflictError);

    const applied = await table.updateNode(
      'b',
      'i-00000000000000002',
      { status: 'preparing', attemptId: 'attempt-1' },
      { status: 'idle' },
      NOW + 1,
      ['attemptId'],
    );
    expect(applied).toMatchObject({ status: 'idle', version: 3, updatedAt: NOW + 1 });
    expect(applied.attemptId).toBeUndefined();
  });

  it('lets exactly one of several concurrent claims win', async () => {
    await table.addNode(
      { cluster: 'c', instanceId: 'i-00000000000000003', role: 'client', ip: '10.0.0.3' },
      NOW,
    );

    const claims = await Promise.allSettled(
      Array.from({ length: 8 }, (_, index) =>
        table.updateNode(
          'c',
          'i-00000000000000003',
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

  it('holds the lease against another owner until it expires', async () => {
    expect(await table.acquireLease('d', 'certs', 'run-1', NOW, 60_000)).toBe(true);
    expect(await table.acquireLease('d', 'certs', 'run-2', NOW + 1_000, 60_000)).toBe(false);
    expect(await table.acquireLease('d', 'certs', 'run-2', NOW + 61_000, 60_000)).toBe(true);

    await table.releaseLease('d', 'certs', 'run-1');
    expect(await table.acquireLease('d', 'certs', 'run-3', NOW + 62_000, 60_000)).toBe(false);
    await table.releaseLease('d', 'certs', 'run-2');
    expect(await table.acquireLease('d', 'certs', 'run-3', NOW + 62_000, 60_000)).toBe(true);
  });

  it('keeps one active rollout per cluster and frees the slot when it finishes', async () => {
    await table.startRollout(rollout('e', 'r-1'));
    await expect(table.startRollout(rollout('e', 'r-2'))).rejects.toBeInstanceOf(ConflictError);

    const active = await table.getActiveRollout('e');
    expect(active?.rolloutId).toBe('r-1');
    await table.updateRollout(active!, { status: 'completed' }, NOW);

    expect(await table.getActiveRollout('e')).toBeUndefined();
    await table.startRollout(rollout('e', 'r-2'));
    expect((await table.getActiveRollout('e'))?.rolloutId).toBe('r-2');
  });

  it('refuses a rollout update based on a stale read', async () => {
    await table.startRollout(rollout('f', 'r-1'));
    const read = (await table.getRollout('f', 'r-1'))!;
    await table.updateRollout(read, { currentWave: 1 }, NOW);

    await expect(table.updateRollout(read, { currentWave: 1 }, NOW)).rejects.toBeInstanceOf(ConflictError);
  });

  it('returns audit entries in time order and hides those past retention', async () => {
    await table.audit({ cluster: 'g', at: NOW + 2, id: 'b', action: 'second', actor: 't' });
    await table.audit({ cluster: 'g', at: NOW + 1, id: 'a', action: 'first', actor: 't' });

    expect((await table.listAudit('g', NOW)).map((entry) => entry.action)).toEqual(['first', 'second']);
    expect(await table.listAudit('g', NOW + 91 * 86_400_000)).toEqual([]);
  });
});
