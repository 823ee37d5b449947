import { ConditionalCheckFailedException, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  BatchGetCommand,
  DeleteCommand,
  DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { ConflictError, TransientError } from '../errors';
import type { AuditEntry, NodeRecord, RolloutRecord } from './records';
import {
  AUDIT_RETENTION_SECONDS,
  type NewNode,
  type NodeChanges,
  type NodeExpectation,
  type NodeField,
  type RolloutChanges,
  type StateStore,
} from './store';

const BATCH_GET_LIMIT = 100;
/** UnprocessedKeys come back under load; retried with backoff this many times in all. */
const BATCH_GET_ATTEMPTS = 5;

const keys = {
  cluster: (cluster: string) => `CLUSTER#${cluster}`,
  node: (instanceId: string) => `NODE#${instanceId}`,
  lease: (kind: string) => `LEASE#${kind}`,
  rollout: (rolloutId: string) => `ROLLOUT#${rolloutId}`,
  activeRollout: 'ROLLOUT-ACTIVE',
  audit: (at: number, id: string) => `AUDIT#${new Date(at).toISOString()}#${id}`,
};

/**
 * The state store on DynamoDB (single-table design). Every state change is a conditional write. No
 * transactions: dynalite has none, and nothing here needs more than one item at a time.
 */
export class StateTable implements StateStore {
  readonly #documents: DynamoDBDocumentClient;

  constructor(
    client: DynamoDBClient,
    readonly tableName: string,
  ) {
    this.#documents = DynamoDBDocumentClient.from(client, {
      marshallOptions: { removeUndefinedValues: true, convertClassInstanceToMap: false },
    });
  }

  // ---- nodes ---------------------------------------------------------------------------------

  async getNode(cluster: string, instanceId: string): Promise<NodeRecord | undefined> {
    const { Item } = await this.#documents.send(
      new GetCommand({
        TableName: this.tableName,
        Key: { pk: keys.cluster(cluster), sk: keys.node(instanceId) },
        ConsistentRead: true,
      }),
    );
    return Item === undefined ? undefined : stripKeys<NodeRecord>(Item);
  }

  /**
   * Several nodes in one consistent BatchGetItem per 100 keys: a wave is re-read after every event of
   * it, and item-by-item reads would make that quadratic in requests. Missing nodes are left out.
   */
  async getNodes(cluster: string, instanceIds: readonly string[]): Promise<NodeRecord[]> {
    const found = new Map<string, NodeRecord>();
    for (let start = 0; start < instanceIds.length; start += BATCH_GET_LIMIT) {
      let keysToRead: Record<string, unknown>[] = instanceIds
        .slice(start, start + BATCH_GET_LIMIT)
        .map((id) => ({ pk: keys.cluster(cluster), sk: keys.node(id) }));
      for (let attempt = 0; keysToRead.length > 0; attempt += 1) {
        if (attempt >= BATCH_GET_ATTEMPTS) {
          throw new TransientError('the state table left node reads unprocessed', {
            context: { cluster, unprocessed: keysToRead.length },
          });
        }
        if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 50 * 2 ** attempt));
        const { Responses, UnprocessedKeys } = await this.#documents.send(
          new BatchGetCommand({
            RequestItems: { [this.tableName]: { Keys: keysToRead, ConsistentRead: true } },
          }),
        );
        for (const item of Responses?.[this.tableName] ?? []) {
          const node = stripKeys<NodeRecord>(item);
          found.set(node.instanceId, node);
        }
        keysToRead = UnprocessedKeys?.[this.tableName]?.Keys ?? [];
      }
    }
    return instanceIds.flatMap((id) => found.get(id) ?? []);
  }

  async listNodes(cluster: string): Promise<NodeRecord[]> {
    return this.#queryPrefix<NodeRecord>(cluster, 'NODE#');
  }

  /** Record a node seen in inventory for the first time; a node already known is left alone. */
  async addNode(node: NewNode, now: number): Promise<NodeRecord | undefined> {
    const record: NodeRecord = { ...node, status: 'idle', failures: 0, version: 1, updatedAt: now };
    try {
      await this.#documents.send(
        new PutCommand({
          TableName: this.tableName,
          Item: { pk: keys.cluster(node.cluster), sk: keys.node(node.instanceId), ...record },
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      );
      return record;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return undefined;
      throw error;
    }
  }

  /**
   * Change a node if and only if it still looks as expected; returns the new record. Fields listed in
   * `remove` are deleted. Throws ConflictError when another actor changed the node first.
   */
  async updateNode(
    cluster: string,
    instanceId: string,
    expected: NodeExpectation,
    changes: NodeChanges,
    now: number,
    remove: readonly NodeField[] = [],
  ): Promise<NodeRecord> {
    const names: Record<string, string> = { '#version': 'version', '#updatedAt': 'updatedAt' };
    const values: Record<string, unknown> = { ':one': 1, ':now': now };
    const sets = ['#version = #version + :one', '#updatedAt = :now'];
    for (const [field, value] of Object.entries(changes)) {
      if (value === undefined) continue;
      names[`#${field}`] = field;
      values[`:${field}`] = value;
      sets.push(`#${field} = :${field}`);
    }
    const removals = remove.map((field) => {
      names[`#${field}`] = field;
      return `#${field}`;
    });
    const conditions = ['attribute_exists(pk)'];
    if (expected.status !== undefined) {
      const statuses = typeof expected.status === 'string' ? [expected.status] : expected.status;
      names['#status'] = 'status';
      const placeholders = statuses.map((status, index) => {
        values[`:expectedStatus${index}`] = status;
        return `:expectedStatus${index}`;
      });
      conditions.push(`#status IN (${placeholders.join(', ')})`);
    }
    if (expected.attemptId === null) {
      names['#attemptId'] = 'attemptId';
      conditions.push('attribute_not_exists(#attemptId)');
    } else if (expected.attemptId !== undefined) {
      names['#attemptId'] = 'attemptId';
      values[':expectedAttemptId'] = expected.attemptId;
      conditions.push('#attemptId = :expectedAttemptId');
    }
    if (expected.version !== undefined) {
      values[':expectedVersion'] = expected.version;
      conditions.push('#version = :expectedVersion');
    }
    try {
      const { Attributes } = await this.#documents.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { pk: keys.cluster(cluster), sk: keys.node(instanceId) },
          UpdateExpression: `SET ${sets.join(', ')}${removals.length > 0 ? ` REMOVE ${removals.join(', ')}` : ''}`,
          ConditionExpression: conditions.join(' AND '),
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
          ReturnValues: 'ALL_NEW',
        }),
      );
      return stripKeys<NodeRecord>(Attributes ?? {});
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) {
        throw new ConflictError('node changed concurrently', { context: { cluster, instanceId } });
      }
      throw error;
    }
  }

  // ---- lease ---------------------------------------------------------------------------------

  /** Take or renew the cluster lease; false when another owner holds an unexpired one. */
  async acquireLease(
    cluster: string,
    kind: string,
    owner: string,
    now: number,
    ttlMs: number,
  ): Promise<boolean> {
    try {
      await this.#documents.send(
        new PutCommand({
          TableName: this.tableName,
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

  async releaseLease(cluster: string, kind: string, owner: string): Promise<void> {
    try {
      await this.#documents.send(
        new DeleteCommand({
          TableName: this.tableName,
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

  // ---- rollouts ------------------------------------------------------------------------------

  /**
   * Create a rollout and make it the cluster's active one. At most one rollout is active per cluster
   * (that is what keeps servers from reloading two at a time); ConflictError when one already is.
   */
  async startRollout(rollout: RolloutRecord): Promise<void> {
    try {
      await this.#documents.send(
        new PutCommand({
          TableName: this.tableName,
          Item: { pk: keys.cluster(rollout.cluster), sk: keys.activeRollout, rolloutId: rollout.rolloutId },
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      );
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) {
        throw new ConflictError('another rollout is active', { context: { cluster: rollout.cluster } });
      }
      throw error;
    }
    await this.#documents.send(
      new PutCommand({
        TableName: this.tableName,
        Item: { pk: keys.cluster(rollout.cluster), sk: keys.rollout(rollout.rolloutId), ...rollout },
        ConditionExpression: 'attribute_not_exists(pk)',
      }),
    );
  }

  async getRollout(cluster: string, rolloutId: string): Promise<RolloutRecord | undefined> {
    const { Item } = await this.#documents.send(
      new GetCommand({
        TableName: this.tableName,
        Key: { pk: keys.cluster(cluster), sk: keys.rollout(rolloutId) },
        ConsistentRead: true,
      }),
    );
    return Item === undefined ? undefined : stripKeys<RolloutRecord>(Item);
  }

  async getActiveRollout(cluster: string): Promise<RolloutRecord | undefined> {
    const { Item } = await this.#documents.send(
      new GetCommand({
        TableName: this.tableName,
        Key: { pk: keys.cluster(cluster), sk: keys.activeRollout },
        ConsistentRead: true,
      }),
    );
    if (Item === undefined) return undefined;
    const rollout = await this.getRollout(cluster, String(Item.rolloutId));
    // A pointer without its rollout is the trace of a crash between the two writes of startRollout.
    if (rollout === undefined) await this.#clearActivePointer(cluster, String(Item.rolloutId));
    return rollout;
  }

  async listRollouts(cluster: string): Promise<RolloutRecord[]> {
    return this.#queryPrefix<RolloutRecord>(cluster, 'ROLLOUT#');
  }

  /** Conditional on the version read; ConflictError when another invocation moved the rollout first. */
  async updateRollout(rollout: RolloutRecord, changes: RolloutChanges, now: number): Promise<RolloutRecord> {
    const next: RolloutRecord = { ...rollout, ...changes, version: rollout.version + 1, updatedAt: now };
    try {
      await this.#documents.send(
        new PutCommand({
          TableName: this.tableName,
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
    if (next.status !== 'running') await this.#clearActivePointer(rollout.cluster, rollout.rolloutId);
    return next;
  }

  async #clearActivePointer(cluster: string, rolloutId: string): Promise<void> {
    try {
      await this.#documents.send(
        new DeleteCommand({
          TableName: this.tableName,
          Key: { pk: keys.cluster(cluster), sk: keys.activeRollout },
          ConditionExpression: 'rolloutId = :rolloutId',
          ExpressionAttributeValues: { ':rolloutId': rolloutId },
        }),
      );
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
    }
  }

  // ---- audit ---------------------------------------------------------------------------------

  async audit(entry: AuditEntry): Promise<void> {
    await this.#documents.send(
      new PutCommand({
        TableName: this.tableName,
        Item: {
          pk: keys.cluster(entry.cluster),
          sk: keys.audit(entry.at, entry.id),
          ...entry,
          expiresAt: Math.floor(entry.at / 1000) + AUDIT_RETENTION_SECONDS,
        },
      }),
    );
  }

  /** Audit entries oldest first. Items past their TTL are filtered here because deletion is lazy. */
  async listAudit(cluster: string, now: number): Promise<AuditEntry[]> {
    const entries = await this.#queryPrefix<AuditEntry & { expiresAt: number }>(cluster, 'AUDIT#');
    return entries
      .filter((entry) => entry.expiresAt * 1000 > now)
      .map(({ expiresAt: _expiresAt, ...entry }) => entry);
  }

  async #queryPrefix<T>(cluster: string, prefix: string): Promise<T[]> {
    const items: T[] = [];
    let startKey: Record<string, unknown> | undefined;
    do {
      const page = await this.#documents.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
          ExpressionAttributeValues: { ':pk': keys.cluster(cluster), ':prefix': prefix },
          ExclusiveStartKey: startKey,
          ConsistentRead: true,
        }),
      );
      for (const item of page.Items ?? []) items.push(stripKeys<T>(item));
      startKey = page.LastEvaluatedKey;
    } while (startKey !== undefined);
    return items;
  }
}

function stripKeys<T>(item: Record<string, unknown>): T {
  const { pk: _pk, sk: _sk, ...rest } = item;
  return rest as T;
}
