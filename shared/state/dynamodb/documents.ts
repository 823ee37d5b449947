import { ConditionalCheckFailedException, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  BatchGetCommand,
  BatchWriteCommand,
  DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { type ConflictError, TransientError } from '../../errors';
import type { ItemReader } from './items';
import type { Update } from './update';

export type Item = Record<string, unknown>;
export type Key = { pk: string; sk: string };

const BATCH_GET_LIMIT = 100;
export const BATCH_WRITE_LIMIT = 25;
/** UnprocessedKeys/UnprocessedItems come back under load; retried with backoff this many times in all. */
const BATCH_ATTEMPTS = 8;
/** Batches of one large rollout written at once: fast on a new table without throttling it for long. */
const BATCH_WRITES_IN_FLIGHT = 8;

export const keys = {
  cluster: (cluster: string) => `CLUSTER#${cluster}`,
  node: (instanceId: string) => `NODE#${instanceId}`,
  lease: (kind: string) => `LEASE#${kind}`,
  rollout: (rolloutId: string) => `ROLLOUT#${rolloutId}`,
  activeRollout: 'ROLLOUT-ACTIVE',
  // Zero-padded so the waves of a rollout sort in wave order.
  wave: (rolloutId: string, wave: number) => `ROLLOUT#${rolloutId}#WAVE#${String(wave).padStart(6, '0')}`,
  attempts: (rolloutId: string) => `ROLLOUT#${rolloutId}#ATTEMPT#`,
  attempt: (rolloutId: string, target: string) => `ROLLOUT#${rolloutId}#ATTEMPT#${target}`,
  audit: (at: number, id: string) => `AUDIT#${new Date(at).toISOString()}#${id}`,
};
/** Every rollout, wave and attempt sort key lies in [ROLLOUT#, ROLLOUT$); the active pointer does not. */
export const ROLLOUTS_FROM = 'ROLLOUT#';
export const ROLLOUTS_TO = 'ROLLOUT$';

/**
 * The state table through the document client: the reads and writes that the node, audit and
 * rollout items share. Records go in without their pk and sk, and come out through the reader of
 * their kind, which checks every field and the key before anything acts on them.
 */
export class TableDocuments {
  readonly documents: DynamoDBDocumentClient;

  constructor(
    client: DynamoDBClient,
    readonly tableName: string,
  ) {
    this.documents = DynamoDBDocumentClient.from(client, {
      marshallOptions: { removeUndefinedValues: true, convertClassInstanceToMap: false },
    });
  }

  async get<T>(key: Key, reader: ItemReader<T>): Promise<T | undefined> {
    const { Item } = await this.documents.send(
      new GetCommand({ TableName: this.tableName, Key: key, ConsistentRead: true }),
    );
    return Item === undefined ? undefined : reader.read(Item);
  }

  /** False (and nothing written) when the item exists. */
  async putIfAbsent(key: Key, record: object): Promise<boolean> {
    try {
      await this.documents.send(
        new PutCommand({
          TableName: this.tableName,
          Item: { ...record, ...key },
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }

  async update<T>(
    key: Key,
    update: Update,
    conflict: () => ConflictError,
    reader: ItemReader<T>,
  ): Promise<T> {
    try {
      const { Attributes } = await this.documents.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: key,
          ...update.expressions(),
          ReturnValues: 'ALL_NEW',
        }),
      );
      return reader.read(Attributes ?? {});
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) throw conflict();
      throw error;
    }
  }

  /**
   * Consistent BatchGetItems of 100 keys, keyed by sort key; missing items are left out. A key
   * asked for twice is read once (DynamoDB refuses a batch with duplicate keys).
   */
  async batchGet<T>(
    cluster: string,
    sortKeys: readonly string[],
    reader: ItemReader<T>,
  ): Promise<Map<string, T>> {
    const found = new Map<string, T>();
    const pk = keys.cluster(cluster);
    await inBatches([...new Set(sortKeys)], BATCH_GET_LIMIT, async (batch) => {
      let keysToRead: Item[] = batch.map((sk) => ({ pk, sk }));
      for (let attempt = 0; keysToRead.length > 0; attempt += 1) {
        if (attempt >= BATCH_ATTEMPTS) {
          throw new TransientError(`the state table left ${reader.what} reads unprocessed`, {
            context: { cluster, unprocessed: keysToRead.length },
          });
        }
        if (attempt > 0) await backoff(attempt);
        const { Responses, UnprocessedKeys } = await this.documents.send(
          new BatchGetCommand({
            RequestItems: { [this.tableName]: { Keys: keysToRead, ConsistentRead: true } },
          }),
        );
        for (const item of Responses?.[this.tableName] ?? []) found.set(String(item.sk), reader.read(item));
        keysToRead = UnprocessedKeys?.[this.tableName]?.Keys ?? [];
      }
    });
    return found;
  }

  /** Plain puts in BatchWriteItems of 25, a few at a time, retrying what DynamoDB leaves unprocessed. */
  async batchPut(items: readonly Item[]): Promise<void> {
    const batches: Item[][] = [];
    for (let start = 0; start < items.length; start += BATCH_WRITE_LIMIT) {
      batches.push(items.slice(start, start + BATCH_WRITE_LIMIT));
    }
    await inBatches(batches, BATCH_WRITES_IN_FLIGHT, async (group) => {
      await Promise.all(group.map((batch) => this.#batchWrite(batch)));
    });
  }

  async #batchWrite(batch: readonly Item[]): Promise<void> {
    let requests = batch.map((item) => ({ PutRequest: { Item: item } }));
    for (let attempt = 0; requests.length > 0; attempt += 1) {
      if (attempt >= BATCH_ATTEMPTS) {
        throw new TransientError('the state table left writes unprocessed', {
          context: { unprocessed: requests.length },
        });
      }
      if (attempt > 0) await backoff(attempt);
      const { UnprocessedItems } = await this.documents.send(
        new BatchWriteCommand({ RequestItems: { [this.tableName]: requests } }),
      );
      requests = (UnprocessedItems?.[this.tableName] ?? []).flatMap((request) =>
        request.PutRequest?.Item === undefined ? [] : [{ PutRequest: { Item: request.PutRequest.Item } }],
      );
    }
  }

  async queryPrefix<T>(cluster: string, prefix: string, reader: ItemReader<T>): Promise<T[]> {
    const items: T[] = [];
    let startKey: Item | undefined;
    do {
      const page = await this.documents.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
          ExpressionAttributeValues: { ':pk': keys.cluster(cluster), ':prefix': prefix },
          ExclusiveStartKey: startKey,
          ConsistentRead: true,
        }),
      );
      for (const item of page.Items ?? []) items.push(reader.read(item));
      startKey = page.LastEvaluatedKey;
    } while (startKey !== undefined);
    return items;
  }
}

/** Run `work` on consecutive slices of `size`, one slice after the other. */
export async function inBatches<T>(
  items: readonly T[],
  size: number,
  work: (batch: T[]) => Promise<void>,
): Promise<void> {
  for (let start = 0; start < items.length; start += size) await work(items.slice(start, start + size));
}

function backoff(attempt: number): Promise<void> {
  const ceiling = Math.min(2_000, 50 * 2 ** attempt);
  return new Promise((resolve) => setTimeout(resolve, ceiling / 2 + Math.random() * (ceiling / 2)));
}
