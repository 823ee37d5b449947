import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { DeleteCommand, PutCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { ConflictError } from '../../errors';
import type { AttemptRecord, RolloutRecord, WaveRecord } from '../../rollout/model';
import type { AttemptChanges, AttemptExpectation, AttemptField, RolloutChanges } from '../../rollout/store';
import {
  BATCH_WRITE_LIMIT,
  type Item,
  inBatches,
  keys,
  ROLLOUTS_FROM,
  ROLLOUTS_TO,
  type TableDocuments,
} from './documents';
import { readers } from './items';
import { checkAttempts, checkRollout } from './rollout-checks';
import { Update } from './update';

/** Items per page while listing rollouts; see listRollouts. */
const ROLLOUT_SCAN_PAGE = 100;

// ---- lease -----------------------------------------------------------------------------------

export async function acquireLease(
  table: TableDocuments,
  cluster: string,
  kind: string,
  owner: string,
  now: number,
  ttlMs: number,
): Promise<boolean> {
  try {
    await table.documents.send(
      new PutCommand({
        TableName: table.tableName,
        // heldUntil is in milliseconds; `expiresAt` is the table's TTL attribute, in epoch seconds.
        Item: { pk: keys.cluster(cluster), sk: keys.lease(kind), owner, heldUntil: now + ttlMs },
        ConditionExpression: 'attribute_not_exists(pk) OR heldUntil < :now OR #owner = :owner',
        ExpressionAttributeNames: { '#owner': 'owner' },
        ExpressionAttributeValues: { ':now': now, ':owner': owner },
      }),
    );
    return true;
  } catch (error) {
    if (error instanceof ConditionalCheckFailedException) return false;
    throw error;
  }
}

export async function releaseLease(
  table: TableDocuments,
  cluster: string,
  kind: string,
  owner: string,
): Promise<void> {
  try {
    await table.documents.send(
      new DeleteCommand({
        TableName: table.tableName,
        Key: { pk: keys.cluster(cluster), sk: keys.lease(kind) },
        ConditionExpression: '#owner = :owner',
        ExpressionAttributeNames: { '#owner': 'owner' },
        ExpressionAttributeValues: { ':owner': owner },
      }),
    );
  } catch (error) {
    if (!(error instanceof ConditionalCheckFailedException)) throw error;
  }
}

// ---- rollouts --------------------------------------------------------------------------------

/**
 * Waves and attempts first, then the active pointer, then the rollout. Until the rollout item
 * exists nothing reads the waves or attempts, so a loser of the pointer race, or a crash before
 * the last write, leaves items nobody acts on; a pointer without its rollout is repaired by
 * getActiveRollout.
 */
export async function startRollout(
  table: TableDocuments,
  rollout: RolloutRecord,
  waves: readonly WaveRecord[],
  attempts: readonly AttemptRecord[],
): Promise<void> {
  checkRollout(rollout, waves, attempts);
  const pk = keys.cluster(rollout.cluster);
  await table.batchPut([
    ...waves.map((wave) => ({ pk, sk: keys.wave(rollout.rolloutId, wave.wave), ...wave })),
    ...attempts.map((attempt) => ({ pk, sk: keys.attempt(rollout.rolloutId, attempt.target), ...attempt })),
  ]);
  const pointed = await table.putIfAbsent({ pk, sk: keys.activeRollout }, { rolloutId: rollout.rolloutId });
  if (!pointed) {
    throw new ConflictError('another rollout is active', { context: { cluster: rollout.cluster } });
  }
  await table.documents.send(
    new PutCommand({
      TableName: table.tableName,
      Item: { pk, sk: keys.rollout(rollout.rolloutId), ...rollout },
      ConditionExpression: 'attribute_not_exists(pk)',
    }),
  );
}

export async function getRollout(
  table: TableDocuments,
  cluster: string,
  rolloutId: string,
): Promise<RolloutRecord | undefined> {
  return table.get({ pk: keys.cluster(cluster), sk: keys.rollout(rolloutId) }, readers.rollout);
}

export async function getActiveRollout(
  table: TableDocuments,
  cluster: string,
): Promise<RolloutRecord | undefined> {
  const pointer = await table.get(
    { pk: keys.cluster(cluster), sk: keys.activeRollout },
    readers.activeRollout,
  );
  if (pointer === undefined) return undefined;
  const rollout = await getRollout(table, cluster, pointer.rolloutId);
  // A pointer without its rollout is the trace of a crash between the last two writes of startRollout.
  if (rollout === undefined) await clearActivePointer(table, cluster, pointer.rolloutId);
  return rollout;
}

/**
 * The rollout items only. A rollout's waves and attempts sort right after it (one item per target,
 * so megabytes for a large cluster), and this runs on the event path for late results: whenever a
 * page ends inside a rollout's waves or attempts, the next query starts past all of them, so each
 * rollout costs at most one small page however large it is.
 */
export async function listRollouts(table: TableDocuments, cluster: string): Promise<RolloutRecord[]> {
  const rollouts: RolloutRecord[] = [];
  let from = ROLLOUTS_FROM;
  let startKey: Item | undefined;
  for (;;) {
    const page = await table.documents.send(
      new QueryCommand({
        TableName: table.tableName,
        KeyConditionExpression: 'pk = :pk AND sk BETWEEN :from AND :to',
        ExpressionAttributeValues: { ':pk': keys.cluster(cluster), ':from': from, ':to': ROLLOUTS_TO },
        ExclusiveStartKey: startKey,
        Limit: ROLLOUT_SCAN_PAGE,
        ConsistentRead: true,
      }),
    );
    const items = page.Items ?? [];
    let skipPast: string | undefined;
    for (const item of items) {
      const rolloutSk = keys.rollout(String(item.rolloutId));
      if (item.sk === rolloutSk) {
        rollouts.push(readers.rollout.read(item));
        skipPast = undefined;
      } else {
        skipPast = rolloutSk;
      }
    }
    if (page.LastEvaluatedKey === undefined) return rollouts;
    if (skipPast === undefined) {
      startKey = page.LastEvaluatedKey;
    } else {
      // `ROLLOUT#<id>$` is the first sort key after every `ROLLOUT#<id>#…`, since '$' follows '#'.
      from = `${skipPast}$`;
      startKey = undefined;
    }
  }
}

export async function updateRollout(
  table: TableDocuments,
  rollout: RolloutRecord,
  changes: RolloutChanges,
  now: number,
): Promise<RolloutRecord> {
  const next: RolloutRecord = { ...rollout, ...changes, version: rollout.version + 1, updatedAt: now };
  try {
    await table.documents.send(
      new PutCommand({
        TableName: table.tableName,
        Item: { pk: keys.cluster(rollout.cluster), sk: keys.rollout(rollout.rolloutId), ...next },
        ConditionExpression: '#version = :version',
        ExpressionAttributeNames: { '#version': 'version' },
        ExpressionAttributeValues: { ':version': rollout.version },
      }),
    );
  } catch (error) {
    if (error instanceof ConditionalCheckFailedException) {
      throw new ConflictError('rollout changed concurrently', {
        context: { cluster: rollout.cluster, rolloutId: rollout.rolloutId },
      });
    }
    throw error;
  }
  if (next.status !== 'running') await clearActivePointer(table, rollout.cluster, rollout.rolloutId);
  return next;
}

async function clearActivePointer(table: TableDocuments, cluster: string, rolloutId: string): Promise<void> {
  try {
    await table.documents.send(
      new DeleteCommand({
        TableName: table.tableName,
        Key: { pk: keys.cluster(cluster), sk: keys.activeRollout },
        ConditionExpression: 'rolloutId = :rolloutId',
        ExpressionAttributeValues: { ':rolloutId': rolloutId },
      }),
    );
  } catch (error) {
    if (!(error instanceof ConditionalCheckFailedException)) throw error;
  }
}

// ---- waves and attempts ----------------------------------------------------------------------

export async function getWave(
  table: TableDocuments,
  cluster: string,
  rolloutId: string,
  wave: number,
): Promise<WaveRecord | undefined> {
  return table.get({ pk: keys.cluster(cluster), sk: keys.wave(rolloutId, wave) }, readers.wave);
}

/**
 * The wave claims its number first, its attempts follow. Attempts first would leave, when the
 * number turns out taken, attempts pointing at another target's wave: a retry would find them
 * and take the target as placed while no wave ever drives it. A crash after the wave only leaves
 * a wave whose targets have no attempts, which has nothing to wait for; the retry places the
 * target in the next wave.
 */
export async function addWave(
  table: TableDocuments,
  wave: WaveRecord,
  attempts: readonly AttemptRecord[],
): Promise<void> {
  checkAttempts(wave.cluster, wave.rolloutId, attempts);
  const pk = keys.cluster(wave.cluster);
  if (!(await table.putIfAbsent({ pk, sk: keys.wave(wave.rolloutId, wave.wave) }, wave))) {
    throw new ConflictError('the wave number is taken', {
      context: { cluster: wave.cluster, rolloutId: wave.rolloutId, wave: wave.wave },
    });
  }
  // A target the rollout already has (a concurrent add of the same target) keeps its attempt.
  await inBatches(attempts, BATCH_WRITE_LIMIT, async (batch) => {
    await Promise.all(
      batch.map((attempt) =>
        table.putIfAbsent({ pk, sk: keys.attempt(wave.rolloutId, attempt.target) }, attempt),
      ),
    );
  });
}

export async function getAttempt(
  table: TableDocuments,
  cluster: string,
  rolloutId: string,
  target: string,
): Promise<AttemptRecord | undefined> {
  return table.get({ pk: keys.cluster(cluster), sk: keys.attempt(rolloutId, target) }, readers.attempt);
}

export async function getAttempts(
  table: TableDocuments,
  cluster: string,
  rolloutId: string,
  targets: readonly string[],
): Promise<AttemptRecord[]> {
  const found = await table.batchGet(
    cluster,
    targets.map((target) => keys.attempt(rolloutId, target)),
    readers.attempt,
  );
  return targets.flatMap((target) => found.get(keys.attempt(rolloutId, target)) ?? []);
}

export async function listAttempts(
  table: TableDocuments,
  cluster: string,
  rolloutId: string,
): Promise<AttemptRecord[]> {
  return table.queryPrefix(cluster, keys.attempts(rolloutId), readers.attempt);
}

export async function updateAttempt(
  table: TableDocuments,
  attempt: Pick<AttemptRecord, 'cluster' | 'rolloutId' | 'target'>,
  expected: AttemptExpectation,
  changes: AttemptChanges,
  now: number,
  remove: readonly AttemptField[],
): Promise<AttemptRecord> {
  const update = new Update(changes, remove, now);
  // An equality holds for the empty token of a fresh attempt too: '' is stored as an attribute.
  update.condition(`${update.name('state')} = ${update.value('expectedState', expected.state)}`);
  update.condition(`${update.name('token')} = ${update.value('expectedToken', expected.token)}`);
  if (expected.version !== undefined) {
    update.condition(`${update.name('version')} = ${update.value('expectedVersion', expected.version)}`);
  }
  const { cluster, rolloutId, target } = attempt;
  return table.update(
    { pk: keys.cluster(cluster), sk: keys.attempt(rolloutId, target) },
    update,
    () => new ConflictError('attempt changed concurrently', { context: { cluster, rolloutId, target } }),
    readers.attempt,
  );
}
