import { PutCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStateTable, startDynamo } from '../../local/aws/dynamodb';
import type { RolloutRecord } from '../../shared/state/records';
import { StateTable } from '../../shared/state/table';
import { describeStateStore } from '../contract/state-store.contract';

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
    const next: RolloutRecord = {
      cluster: 'prod',
      rolloutId: 'r-1',
      kind: 'rotate',
      mode: 'reload',
      revokePrevious: false,
      reason: 'test',
      requestedBy: 'test',
      waves: [],
      currentWave: 0,
      status: 'running',
      createdAt: NOW,
      updatedAt: NOW,
      version: 1,
    };
    await table.startRollout(next);

    expect(active).toBeUndefined();
    expect((await table.getActiveRollout('prod'))?.rolloutId).toBe('r-1');
  });
});
