import { PutCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { ConflictError } from '../../errors';
import type { AuditEntry, NodeRecord } from '../records';
import {
  AUDIT_RETENTION_SECONDS,
  type NewNode,
  type NodeChanges,
  type NodeExpectation,
  type NodeField,
} from '../store';
import { type Item, keys, type TableDocuments } from './documents';
import { readers } from './items';
import { Update } from './update';

// ---- nodes -----------------------------------------------------------------------------------

export async function getNode(
  table: TableDocuments,
  cluster: string,
  instanceId: string,
): Promise<NodeRecord | undefined> {
  return table.get({ pk: keys.cluster(cluster), sk: keys.node(instanceId) }, readers.node);
}

/**
 * Several nodes in consistent BatchGetItems: a wave is re-read after every event of it, and
 * item-by-item reads would make that quadratic in requests.
 */
export async function getNodes(
  table: TableDocuments,
  cluster: string,
  instanceIds: readonly string[],
): Promise<NodeRecord[]> {
  const found = await table.batchGet(
    cluster,
    instanceIds.map((id) => keys.node(id)),
    readers.node,
  );
  return instanceIds.flatMap((id) => found.get(keys.node(id)) ?? []);
}

export async function listNodes(table: TableDocuments, cluster: string): Promise<NodeRecord[]> {
  return table.queryPrefix(cluster, 'NODE#', readers.node);
}

/** Record a node seen in inventory for the first time; a node already known is left alone. */
export async function addNode(
  table: TableDocuments,
  node: NewNode,
  now: number,
): Promise<NodeRecord | undefined> {
  const record: NodeRecord = {
    ...node,
    status: node.status ?? 'idle',
    failures: 0,
    version: 1,
    updatedAt: now,
  };
  const added = await table.putIfAbsent(
    { pk: keys.cluster(node.cluster), sk: keys.node(node.instanceId) },
    record,
  );
  return added ? record : undefined;
}

export async function updateNode(
  table: TableDocuments,
  cluster: string,
  instanceId: string,
  expected: NodeExpectation,
  changes: NodeChanges,
  now: number,
  remove: readonly NodeField[],
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
  return table.update(
    { pk: keys.cluster(cluster), sk: keys.node(instanceId) },
    update,
    () => new ConflictError('node changed concurrently', { context: { cluster, instanceId } }),
    readers.node,
  );
}

// ---- audit -----------------------------------------------------------------------------------

export async function audit(table: TableDocuments, entry: AuditEntry): Promise<void> {
  await table.documents.send(
    new PutCommand({
      TableName: table.tableName,
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
export async function listAudit(table: TableDocuments, cluster: string, now: number): Promise<AuditEntry[]> {
  const entries = await table.queryPrefix(cluster, 'AUDIT#', readers.audit);
  return entries
    .filter((entry) => entry.expiresAt * 1000 > now)
    .map(({ expiresAt: _expiresAt, ...entry }) => entry);
}

/** A time window of the audit trail; either end open. */
export interface AuditWindow {
  from?: number;
  to?: number;
  /** Items a page (DynamoDB's own 1 MB limit applies too); the query goes on page after page. */
  pageSize?: number;
}

/**
 * Audit entries within the window, oldest first: one key-range query on the sort key (its time
 * prefix sorts as time does), read page after page, so a narrow window reads only its own items.
 */
export async function listAuditWindow(
  table: TableDocuments,
  cluster: string,
  window: AuditWindow,
  now: number,
): Promise<AuditEntry[]> {
  const from = window.from === undefined ? 'AUDIT#' : `AUDIT#${new Date(window.from).toISOString()}`;
  // `$` sorts after `#`: an end past every id at that millisecond, or past every audit item.
  const to = window.to === undefined ? 'AUDIT$' : `AUDIT#${new Date(window.to).toISOString()}$`;
  const entries: AuditEntry[] = [];
  let startKey: Item | undefined;
  do {
    const page = await table.documents.send(
      new QueryCommand({
        TableName: table.tableName,
        KeyConditionExpression: 'pk = :pk AND sk BETWEEN :from AND :to',
        ExpressionAttributeValues: { ':pk': keys.cluster(cluster), ':from': from, ':to': to },
        ExclusiveStartKey: startKey,
        ConsistentRead: true,
        ...(window.pageSize === undefined ? {} : { Limit: window.pageSize }),
      }),
    );
    for (const item of page.Items ?? []) {
      const { expiresAt, ...entry } = readers.audit.read(item);
      if (expiresAt * 1000 > now) entries.push(entry);
    }
    startKey = page.LastEvaluatedKey;
  } while (startKey !== undefined);
  return entries;
}
