import { z } from 'zod';
import { certificateSerial } from '../../certificates/outputs';
import { RotatorError } from '../../errors';
import type { AttemptRecord, RolloutRecord, WaveRecord } from '../../rollout/model';
import { describeIssues, patternString } from '../../validation';
import type { AuditEntry, NodeRecord } from '../records';
import { keys } from './documents';
import { ROLLOUT_ID } from './rollout-checks';

/**
 * A state-table item that fails its checks on the way back: a field of the wrong shape, or a record
 * filed under another item's key. Whoever wrote it was not this service (the table's resource policy
 * leaves writes to the functions' roles), so nothing is built from it: not retryable, and the read
 * fails loudly (the function's error alarm) rather than acting on the rest as if it were absent.
 * Names the item's key and the bad fields, never a stored value.
 */
export class CorruptItemError extends RotatorError {
  readonly issues: readonly string[];

  constructor(what: string, sortKey: string, issues: readonly string[], cluster: string) {
    super(`the state table's ${what} item ${sortKey} fails its checks: ${issues.join('; ')}`, {
      context: { cluster, sortKey },
    });
    this.issues = issues;
  }
}

/** How one kind of item is checked on its way out of the table. */
export interface ItemReader<T> {
  what: string;
  /** The record of a raw item (pk and sk included), or CorruptItemError. */
  read(item: Record<string, unknown>): T;
}

// Schemas of what this service writes. Unknown attributes are dropped, and none of ours goes
// unchecked: `Exact` below fails the build when a record type gains a field its schema lacks.

const epochMs = z.number().int().nonnegative();
const count = z.number().int().nonnegative();
/** Free text this service wrote (reasons, errors, actions); bounded, and printed only after stripping. */
const text = z.string().max(4096);
const label = z.string().min(1).max(128);
const clusterName = patternString('clusterName', 'a cluster name');
const instanceId = patternString('instanceId', 'an EC2 instance id');
const rolloutId = z.string().regex(ROLLOUT_ID);
const role = z.enum(['server', 'client']);
const scalar = z.union([z.string().max(4096), z.number(), z.boolean()]);

const certificateFacts = z.object({
  serial: certificateSerial,
  notBefore: epochMs,
  notAfter: epochMs,
});

const nodeItem = z.object({
  cluster: clusterName,
  instanceId,
  role,
  ip: z.union([z.ipv4(), z.ipv6()]),
  status: z.enum(['idle', 'failed', 'retired', 'refused']),
  agent: certificateFacts.optional(),
  cli: certificateFacts.optional(),
  ping: z.enum(['Online', 'ConnectionLost']).optional(),
  failures: count,
  nextAttemptAt: epochMs.optional(),
  lastError: text.optional(),
  lastAction: text.optional(),
  lastActionAt: epochMs.optional(),
  version: z.number().int().positive(),
  updatedAt: epochMs,
});

const auditItem = z.object({
  cluster: clusterName,
  at: epochMs,
  id: label,
  action: label,
  actor: text.min(1),
  reason: text.optional(),
  instanceId: instanceId.optional(),
  rolloutId: rolloutId.optional(),
  role: role.optional(),
  group: label.optional(),
  details: z.record(z.string(), scalar).optional(),
  expiresAt: z.number().int().positive(),
});

const rolloutItem = z
  .object({
    cluster: clusterName,
    rolloutId,
    plan: label,
    kind: label,
    settings: z.record(z.string(), scalar),
    reason: text,
    requestedBy: text,
    waveCount: count,
    currentWave: count,
    waveOrder: z.record(z.string().regex(/^[0-9]{1,6}$/), count),
    status: z.enum(['running', 'completed', 'halted', 'superseded']),
    haltReason: text.optional(),
    drains: z
      .array(z.object({ rolloutId, wave: count }))
      .readonly()
      .optional(),
    createdAt: epochMs,
    updatedAt: epochMs,
    version: z.number().int().positive(),
  })
  .refine((rollout) => rollout.currentWave <= rollout.waveCount, {
    path: ['currentWave'],
    message: 'must be at most waveCount',
  });

const waveItem = z.object({
  cluster: clusterName,
  rolloutId,
  wave: count,
  group: label,
  targets: z.array(label),
});

const attemptItem = z.object({
  cluster: clusterName,
  rolloutId,
  target: label,
  wave: count,
  group: label,
  state: z.enum(['pending', 'sent', 'done', 'failed', 'exhausted', 'abandoned']),
  step: label,
  // Empty until the first try is claimed.
  token: z.string().max(64),
  tries: count,
  commandId: label.optional(),
  sentAt: epochMs.optional(),
  nextAttemptAt: epochMs.optional(),
  lastError: text.optional(),
  // The plan that handed it on checks what it reads back (the certificate plan re-verifies the
  // certificates against Vault's chain before any install is built).
  carry: z.record(z.string(), z.unknown()).optional(),
  version: z.number().int().positive(),
  updatedAt: epochMs,
});

const pointerItem = z.object({ rolloutId });

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : never) : never;
// Both ways assignable, and the same field names: an optional field missing from a schema would
// otherwise pass the first check and be dropped from every record read.
type Exact<A, B> = Same<A, B> & Same<keyof A, keyof B>;
const schemasMatchRecords: [
  Exact<z.output<typeof nodeItem>, NodeRecord>,
  Exact<Omit<z.output<typeof auditItem>, 'expiresAt'>, AuditEntry>,
  Exact<z.output<typeof rolloutItem>, RolloutRecord>,
  Exact<z.output<typeof waveItem>, WaveRecord>,
  Exact<z.output<typeof attemptItem>, AttemptRecord>,
] = [true, true, true, true, true];
void schemasMatchRecords;

/**
 * A reader that parses an item against its schema and checks that the record names the key it is
 * filed under, so a node copied to another node's key (or a rollout's attempt to another rollout)
 * is refused too.
 */
function reader<T>(
  what: string,
  schema: z.ZodType<T>,
  expectedSortKey: (record: T) => string,
): ItemReader<T> {
  return {
    what,
    read(item) {
      const { pk, sk, ...rest } = item;
      const sortKey = typeof sk === 'string' ? sk.slice(0, 200) : '(no sort key)';
      const cluster = typeof pk === 'string' && pk.startsWith('CLUSTER#') ? pk.slice(8, 56) : '';
      const parsed = schema.safeParse(rest);
      if (!parsed.success)
        throw new CorruptItemError(what, sortKey, describeIssues(parsed.error.issues), cluster);
      const record = parsed.data as T & { cluster?: string };
      const issues: string[] = [];
      if (pk !== undefined && record.cluster !== undefined && pk !== `CLUSTER#${record.cluster}`) {
        issues.push('cluster: differs from the cluster of its key');
      }
      if (sk !== expectedSortKey(record)) issues.push('the record differs from the one its sort key names');
      if (issues.length > 0) throw new CorruptItemError(what, sortKey, issues, cluster);
      return parsed.data;
    },
  };
}

/** The reader of each kind of item the service reads back. */
export const readers = {
  node: reader<NodeRecord>('node', nodeItem, (node) => keys.node(node.instanceId)),
  audit: reader<AuditEntry & { expiresAt: number }>('audit', auditItem, (entry) =>
    keys.audit(entry.at, entry.id),
  ),
  rollout: reader<RolloutRecord>('rollout', rolloutItem, (rollout) => keys.rollout(rollout.rolloutId)),
  wave: reader<WaveRecord>('wave', waveItem, (wave) => keys.wave(wave.rolloutId, wave.wave)),
  attempt: reader<AttemptRecord>('attempt', attemptItem, (attempt) =>
    keys.attempt(attempt.rolloutId, attempt.target),
  ),
  activeRollout: reader<{ rolloutId: string }>(
    'active-rollout pointer',
    pointerItem,
    () => keys.activeRollout,
  ),
};
