import { ConditionalCheckFailedException, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  BatchGetCommand,
  BatchWriteCommand,
  DeleteCommand,
  DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { ConflictError, TransientError, ValidationError } from '../errors';
import type { AttemptRecord, RolloutRecord, WaveRecord } from '../rollout/model';
import type { AttemptChanges, AttemptExpectation, AttemptField, RolloutChanges } from '../rollout/store';
import type { AuditEntry, NodeRecord } from './records';
import {
  AUDIT_RETENTION_SECONDS,
  type NewNode,
  type NodeChanges,
  type NodeExpectation,
  type NodeField,
  type StateStore,
} from './store';

type Item = Record<string, unknown>;
type Key = { pk: string; sk: string };

const BATCH_GET_LIMIT = 100;
const BATCH_WRITE_LIMIT = 25;
/** UnprocessedKeys/UnprocessedItems come back under load; retried with backoff this many times in all. */
const BATCH_ATTEMPTS = 8;
/** Batches of one large rollout written at once: fast on a new table without throttling it for long. */
const BATCH_WRITES_IN_FLIGHT = 8;
/** Items per page while listing rollouts; see listRollouts. */
const ROLLOUT_SCAN_PAGE = 100;

const keys = {
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
const ROLLOUTS_FROM = 'ROLLOUT#';
const ROLLOUTS_TO = 'ROLLOUT$';

/**
 * The state store on DynamoDB (single-table design). Every state change is a conditional write. No
 * transactions (dynalite has none): writes that span items are ordered so that a crash between two
 * of them leaves nothing a reader acts on.
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
    return this.#get<NodeRecord>({ pk: keys.cluster(cluster), sk: keys.node(instanceId) });
  }

  /**
   * Several nodes in consistent BatchGetItems: a wave is re-read after every event of it, and
   * item-by-item reads would make that quadratic in requests.
   */
  async getNodes(cluster: string, instanceIds: readonly string[]): Promise<NodeRecord[]> {
    const found = await this.#batchGet<NodeRecord>(
      cluster,
      instanceIds.map((id) => keys.node(id)),
      'node',
    );
    return instanceIds.flatMap((id) => found.get(keys.node(id)) ?? []);
  }

  async listNodes(cluster: string): Promise<NodeRecord[]> {
    return this.#queryPrefix<NodeRecord>(cluster, 'NODE#');
  }

  /** Record a node seen in inventory for the first time; a node already known is left alone. */
  async addNode(node: NewNode, now: number): Promise<NodeRecord | undefined> {
    const record: NodeRecord = { ...node, status: 'idle', failures: 0, version: 1, updatedAt: now };
    const added = await this.#putIfAbsent(
      { pk: keys.cluster(node.cluster), sk: keys.node(node.instanceId) },
      record,
    );
    return added ? record : undefined;
  }

  async updateNode(
    cluster: string,
    instanceId: string,
    expected: NodeExpectation,
    changes: NodeChanges,
    now: number,
    remove: readonly NodeField[] = [],
  ): Promise<NodeRecord> {
    const update = new Update(changes, remove, now);
    if (expected.status !== undefined) {
      const statuses = typeof expected.status === 'string' ? [expected.status] : expected.status;
      const placeholders = statuses.map((status, index) => update.value(`expectedStatus${index}`, status));
      update.condition(`${update.name('status')} IN (${placeholders.join(', ')})`);
    }
    if (expected.version !== undefined) {
      update.condition(`${update.name('version')} = ${update.value('expectedVersion', expected.version)}`);
    }
    return this.#update<NodeRecord>({ pk: keys.cluster(cluster), sk: keys.node(instanceId) }, update, () => {
      return new ConflictError('node changed concurrently', { context: { cluster, instanceId } });
    });
  }

  // ---- lease ---------------------------------------------------------------------------------

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
   * Waves and attempts first, then the active pointer, then the rollout. Until the rollout item
   * exists nothing reads the waves or attempts, so a loser of the pointer race, or a crash before
   * the last write, leaves items nobody acts on; a pointer without its rollout is repaired by
   * getActiveRollout.
   */
  async startRollout(
    rollout: RolloutRecord,
    waves: readonly WaveRecord[],
    attempts: readonly AttemptRecord[],
  ): Promise<void> {
    checkRollout(rollout, waves, attempts);
    const pk = keys.cluster(rollout.cluster);
    await this.#batchPut([
      ...waves.map((wave) => ({ pk, sk: keys.wave(rollout.rolloutId, wave.wave), ...wave })),
      ...attempts.map((attempt) => ({ pk, sk: keys.attempt(rollout.rolloutId, attempt.target), ...attempt })),
    ]);
    const pointed = await this.#putIfAbsent({ pk, sk: keys.activeRollout }, { rolloutId: rollout.rolloutId });
    if (!pointed) {
      throw new ConflictError('another rollout is active', { context: { cluster: rollout.cluster } });
    }
    await this.#documents.send(
      new PutCommand({
        TableName: this.tableName,
        Item: { pk, sk: keys.rollout(rollout.rolloutId), ...rollout },
        ConditionExpression: 'attribute_not_exists(pk)',
      }),
    );
  }

  async getRollout(cluster: string, rolloutId: string): Promise<RolloutRecord | undefined> {
    return this.#get<RolloutRecord>({ pk: keys.cluster(cluster), sk: keys.rollout(rolloutId) });
  }

  async getActiveRollout(cluster: string): Promise<RolloutRecord | undefined> {
    const pointer = await this.#get<{ rolloutId: string }>({
      pk: keys.cluster(cluster),
      sk: keys.activeRollout,
    });
    if (pointer === undefined) return undefined;
    const rollout = await this.getRollout(cluster, pointer.rolloutId);
    // A pointer without its rollout is the trace of a crash between the last two writes of startRollout.
    if (rollout === undefined) await this.#clearActivePointer(cluster, pointer.rolloutId);
    return rollout;
  }

  /**
   * The rollout items only. A rollout's waves and attempts sort right after it (one item per target,
   * so megabytes for a large cluster), and this runs on the event path for late results: whenever a
   * page ends inside a rollout's waves or attempts, the next query starts past all of them, so each
   * rollout costs at most one small page however large it is.
   */
  async listRollouts(cluster: string): Promise<RolloutRecord[]> {
    const rollouts: RolloutRecord[] = [];
    let from = ROLLOUTS_FROM;
    let startKey: Item | undefined;
    for (;;) {
      const page = await this.#documents.send(
        new QueryCommand({
          TableName: this.tableName,
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
          rollouts.push(stripKeys<RolloutRecord>(item));
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

  // ---- waves and attempts --------------------------------------------------------------------

  async getWave(cluster: string, rolloutId: string, wave: number): Promise<WaveRecord | undefined> {
    return this.#get<WaveRecord>({ pk: keys.cluster(cluster), sk: keys.wave(rolloutId, wave) });
  }

  /**
   * The wave claims its number first, its attempts follow. Attempts first would leave, when the
   * number turns out taken, attempts pointing at another target's wave: a retry would find them
   * and take the target as placed while no wave ever drives it. A crash after the wave only leaves
   * a wave whose targets have no attempts, which has nothing to wait for; the retry places the
   * target in the next wave.
   */
  async addWave(wave: WaveRecord, attempts: readonly AttemptRecord[]): Promise<void> {
    checkAttempts(wave.cluster, wave.rolloutId, attempts);
    const pk = keys.cluster(wave.cluster);
    if (!(await this.#putIfAbsent({ pk, sk: keys.wave(wave.rolloutId, wave.wave) }, wave))) {
      throw new ConflictError('the wave number is taken', {
        context: { cluster: wave.cluster, rolloutId: wave.rolloutId, wave: wave.wave },
      });
    }
    // A target the rollout already has (a concurrent add of the same target) keeps its attempt.
    await inBatches(attempts, BATCH_WRITE_LIMIT, async (batch) => {
      await Promise.all(
        batch.map((attempt) =>
          this.#putIfAbsent({ pk, sk: keys.attempt(wave.rolloutId, attempt.target) }, attempt),
        ),
      );
    });
  }

  async getAttempt(cluster: string, rolloutId: string, target: string): Promise<AttemptRecord | undefined> {
    return this.#get<AttemptRecord>({ pk: keys.cluster(cluster), sk: keys.attempt(rolloutId, target) });
  }

  async getAttempts(
    cluster: string,
    rolloutId: string,
    targets: readonly string[],
  ): Promise<AttemptRecord[]> {
    const found = await this.#batchGet<AttemptRecord>(
      cluster,
      targets.map((target) => keys.attempt(rolloutId, target)),
      'attempt',
    );
    return targets.flatMap((target) => found.get(keys.attempt(rolloutId, target)) ?? []);
  }

  async listAttempts(cluster: string, rolloutId: string): Promise<AttemptRecord[]> {
    return this.#queryPrefix<AttemptRecord>(cluster, keys.attempts(rolloutId));
  }

  async updateAttempt(
    attempt: Pick<AttemptRecord, 'cluster' | 'rolloutId' | 'target'>,
    expected: AttemptExpectation,
    changes: AttemptChanges,
    now: number,
    remove: readonly AttemptField[] = [],
  ): Promise<AttemptRecord> {
    const update = new Update(changes, remove, now);
    // An equality holds for the empty token of a fresh attempt too: '' is stored as an attribute.
    update.condition(`${update.name('state')} = ${update.value('expectedState', expected.state)}`);
    update.condition(`${update.name('token')} = ${update.value('expectedToken', expected.token)}`);
    if (expected.version !== undefined) {
      update.condition(`${update.name('version')} = ${update.value('expectedVersion', expected.version)}`);
    }
    const { cluster, rolloutId, target } = attempt;
    return this.#update<AttemptRecord>(
      { pk: keys.cluster(cluster), sk: keys.attempt(rolloutId, target) },
      update,
      () => new ConflictError('attempt changed concurrently', { context: { cluster, rolloutId, target } }),
    );
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

  // ---- helpers -------------------------------------------------------------------------------

  async #get<T>(key: Key): Promise<T | undefined> {
    const { Item } = await this.#documents.send(
      new GetCommand({ TableName: this.tableName, Key: key, ConsistentRead: true }),
    );
    return Item === undefined ? undefined : stripKeys<T>(Item);
  }

  /** False (and nothing written) when the item exists. */
  async #putIfAbsent(key: Key, record: object): Promise<boolean> {
    try {
      await this.#documents.send(
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

  async #update<T>(key: Key, update: Update, conflict: () => ConflictError): Promise<T> {
    try {
      const { Attributes } = await this.#documents.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: key,
          ...update.expressions(),
          ReturnValues: 'ALL_NEW',
        }),
      );
      return stripKeys<T>(Attributes ?? {});
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) throw conflict();
      throw error;
    }
  }

  /**
   * Consistent BatchGetItems of 100 keys, keyed by sort key; missing items are left out. A key
   * asked for twice is read once (DynamoDB refuses a batch with duplicate keys).
   */
  async #batchGet<T>(cluster: string, sortKeys: readonly string[], what: string): Promise<Map<string, T>> {
    const found = new Map<string, T>();
    const pk = keys.cluster(cluster);
    await inBatches([...new Set(sortKeys)], BATCH_GET_LIMIT, async (batch) => {
      let keysToRead: Item[] = batch.map((sk) => ({ pk, sk }));
      for (let attempt = 0; keysToRead.length > 0; attempt += 1) {
        if (attempt >= BATCH_ATTEMPTS) {
          throw new TransientError(`the state table left ${what} reads unprocessed`, {
            context: { cluster, unprocessed: keysToRead.length },
          });
        }
        if (attempt > 0) await backoff(attempt);
        const { Responses, UnprocessedKeys } = await this.#documents.send(
          new BatchGetCommand({
            RequestItems: { [this.tableName]: { Keys: keysToRead, ConsistentRead: true } },
          }),
        );
        for (const item of Responses?.[this.tableName] ?? []) found.set(String(item.sk), stripKeys<T>(item));
        keysToRead = UnprocessedKeys?.[this.tableName]?.Keys ?? [];
      }
    });
    return found;
  }

  /** Plain puts in BatchWriteItems of 25, a few at a time, retrying what DynamoDB leaves unprocessed. */
  async #batchPut(items: readonly Item[]): Promise<void> {
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
      const { UnprocessedItems } = await this.#documents.send(
        new BatchWriteCommand({ RequestItems: { [this.tableName]: requests } }),
      );
      requests = (UnprocessedItems?.[this.tableName] ?? []).flatMap((request) =>
        request.PutRequest?.Item === undefined ? [] : [{ PutRequest: { Item: request.PutRequest.Item } }],
      );
    }
  }

  async #queryPrefix<T>(cluster: string, prefix: string): Promise<T[]> {
    const items: T[] = [];
    let startKey: Item | undefined;
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

/**
 * A conditional UpdateItem: SET of the defined changes, REMOVE of the listed fields, version + 1 and
 * updatedAt, on the condition that the item exists and every added condition holds.
 */
class Update {
  readonly #names: Record<string, string> = {};
  readonly #values: Record<string, unknown> = {};
  readonly #sets: string[] = [];
  readonly #removals: string[] = [];
  readonly #conditions = ['attribute_exists(pk)'];

  constructor(changes: object, remove: readonly string[], now: number) {
    this.#sets.push(`${this.name('version')} = ${this.name('version')} + ${this.value('one', 1)}`);
    this.#sets.push(`${this.name('updatedAt')} = ${this.value('now', now)}`);
    for (const [field, value] of Object.entries(changes)) {
      // DynamoDB refuses an update that both sets and removes a path; removal wins, as in memory.
      if (value === undefined || remove.includes(field)) continue;
      this.#sets.push(`${this.name(field)} = ${this.value(`set_${field}`, value)}`);
    }
    for (const field of remove) this.#removals.push(this.name(field));
  }

  name(field: string): string {
    this.#names[`#${field}`] = field;
    return `#${field}`;
  }

  value(placeholder: string, value: unknown): string {
    this.#values[`:${placeholder}`] = value;
    return `:${placeholder}`;
  }

  condition(expression: string): void {
    this.#conditions.push(expression);
  }

  expressions() {
    const removal = this.#removals.length > 0 ? ` REMOVE ${this.#removals.join(', ')}` : '';
    return {
      UpdateExpression: `SET ${this.#sets.join(', ')}${removal}`,
      ConditionExpression: this.#conditions.join(' AND '),
      ExpressionAttributeNames: this.#names,
      ExpressionAttributeValues: this.#values,
    };
  }
}

/**
 * What the table cannot store as asked, refused before anything is written: a `#` in a rollout id
 * would let its keys run into another rollout's, a wave or attempt of another rollout would be
 * filed under this one, and a target or wave listed twice is one item written twice (a
 * BatchWriteItem refuses it outright, after earlier batches went through). Exported so the
 * in-memory store refuses the same input.
 */
export function checkRollout(
  rollout: RolloutRecord,
  waves: readonly WaveRecord[],
  attempts: readonly AttemptRecord[],
): void {
  const issues: string[] = [];
  if (rollout.rolloutId.includes('#')) issues.push(`rollout id ${rollout.rolloutId} contains '#'`);
  if (waves.some((wave) => wave.cluster !== rollout.cluster || wave.rolloutId !== rollout.rolloutId)) {
    issues.push('a wave belongs to another rollout');
  }
  const numbers = waves.map((wave) => wave.wave);
  for (const wave of duplicates(numbers)) issues.push(`wave ${wave} is listed twice`);
  if (issues.length > 0)
    throw new ValidationError('rollout refused', issues, { context: { cluster: rollout.cluster } });
  checkAttempts(rollout.cluster, rollout.rolloutId, attempts);
}

/** As checkRollout, for the attempts of a wave added later. */
export function checkAttempts(cluster: string, rolloutId: string, attempts: readonly AttemptRecord[]): void {
  const issues: string[] = [];
  if (attempts.some((attempt) => attempt.cluster !== cluster || attempt.rolloutId !== rolloutId)) {
    issues.push('an attempt belongs to another rollout');
  }
  for (const target of duplicates(attempts.map((attempt) => attempt.target))) {
    issues.push(`target ${target} has two attempts`);
  }
  if (issues.length > 0)
    throw new ValidationError('attempts refused', issues, { context: { cluster, rolloutId } });
}

function duplicates<T>(values: readonly T[]): T[] {
  const seen = new Set<T>();
  const twice = new Set<T>();
  for (const value of values) (seen.has(value) ? twice : seen).add(value);
  return [...twice];
}

/** Run `work` on consecutive slices of `size`, one slice after the other. */
async function inBatches<T>(
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

function stripKeys<T>(item: Item): T {
  const { pk: _pk, sk: _sk, ...rest } = item;
  return rest as T;
}
