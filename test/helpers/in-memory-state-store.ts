import { ConflictError } from '../../shared/errors';
import type { AttemptRecord, RolloutRecord, WaveRecord } from '../../shared/rollout/model';
import type {
  AttemptChanges,
  AttemptExpectation,
  AttemptField,
  RolloutChanges,
} from '../../shared/rollout/store';
import { checkAttempts, checkRollout } from '../../shared/state/dynamodb/rollout-checks';
import type { AuditEntry, NodeRecord } from '../../shared/state/records';
import {
  AUDIT_RETENTION_SECONDS,
  type NewNode,
  type NodeChanges,
  type NodeExpectation,
  type NodeField,
  type StateStore,
} from '../../shared/state/store';

interface Lease {
  owner: string;
  heldUntil: number;
}

type StoredAudit = AuditEntry & { expiresAt: number };

/**
 * The state store in process memory, for tests that exercise the engine rather than DynamoDB. It
 * keeps the DynamoDB store's semantics (the shared contract suite runs against both): each write
 * checks its condition and applies in one synchronous step, as a conditional write does, and only
 * copies cross its boundary, as records do over the wire.
 */
export class InMemoryStateStore implements StateStore {
  /** Per cluster; each map is read in key order, as a DynamoDB query returns its sort keys. */
  readonly #nodes = new Map<string, Map<string, NodeRecord>>();
  readonly #rollouts = new Map<string, Map<string, RolloutRecord>>();
  /** Per cluster and rollout (see rolloutKey): wave number → wave, and target → attempt. */
  readonly #waves = new Map<string, Map<number, WaveRecord>>();
  readonly #attempts = new Map<string, Map<string, AttemptRecord>>();
  /** Keyed by the audit item's sort key (ISO time, then id), which is what orders the trail. */
  readonly #audit = new Map<string, Map<string, StoredAudit>>();
  /** Cluster → lease kind → holder. */
  readonly #leases = new Map<string, Map<string, Lease>>();
  /** Cluster → id of its active rollout. */
  readonly #activeRollouts = new Map<string, string>();

  // ---- nodes ---------------------------------------------------------------------------------

  async getNode(cluster: string, instanceId: string): Promise<NodeRecord | undefined> {
    return copyOf(this.#nodes.get(cluster)?.get(instanceId));
  }

  async getNodes(cluster: string, instanceIds: readonly string[]): Promise<NodeRecord[]> {
    return pick(this.#nodes.get(cluster), instanceIds);
  }

  async listNodes(cluster: string): Promise<NodeRecord[]> {
    return inKeyOrder(this.#nodes.get(cluster));
  }

  async addNode(node: NewNode, now: number): Promise<NodeRecord | undefined> {
    const nodes = mapIn(this.#nodes, node.cluster);
    if (nodes.has(node.instanceId)) return undefined;
    const record: NodeRecord = {
      ...node,
      status: node.status ?? 'idle',
      failures: 0,
      version: 1,
      updatedAt: now,
    };
    nodes.set(node.instanceId, storedCopy(record));
    return storedCopy(record);
  }

  async updateNode(
    cluster: string,
    instanceId: string,
    expected: NodeExpectation,
    changes: NodeChanges,
    now: number,
    remove: readonly NodeField[] = [],
  ): Promise<NodeRecord> {
    const nodes = this.#nodes.get(cluster);
    const current = nodes?.get(instanceId);
    if (nodes === undefined || current === undefined || !nodeMatches(current, expected)) {
      throw new ConflictError('node changed concurrently', { context: { cluster, instanceId } });
    }
    return replace(nodes, instanceId, updated(current, changes, remove, now));
  }

  // ---- lease ---------------------------------------------------------------------------------

  async acquireLease(
    cluster: string,
    kind: string,
    owner: string,
    now: number,
    ttlMs: number,
  ): Promise<boolean> {
    const leases = mapIn(this.#leases, cluster);
    const held = leases.get(kind);
    if (held !== undefined && held.heldUntil >= now && held.owner !== owner) return false;
    leases.set(kind, { owner, heldUntil: now + ttlMs });
    return true;
  }

  async releaseLease(cluster: string, kind: string, owner: string): Promise<void> {
    const leases = this.#leases.get(cluster);
    if (leases?.get(kind)?.owner === owner) leases?.delete(kind);
  }

  // ---- rollouts ------------------------------------------------------------------------------

  async startRollout(
    rollout: RolloutRecord,
    waves: readonly WaveRecord[],
    attempts: readonly AttemptRecord[],
  ): Promise<void> {
    checkRollout(rollout, waves, attempts);
    // In DynamoDB's order: plain puts of the waves and attempts, then the pointer, then the rollout.
    const key = rolloutKey(rollout.cluster, rollout.rolloutId);
    const storedWaves = mapIn(this.#waves, key);
    for (const wave of waves) storedWaves.set(wave.wave, storedCopy(wave));
    const storedAttempts = mapIn(this.#attempts, key);
    for (const attempt of attempts) storedAttempts.set(attempt.target, storedCopy(attempt));
    if (this.#activeRollouts.has(rollout.cluster)) {
      throw new ConflictError('another rollout is active', { context: { cluster: rollout.cluster } });
    }
    this.#activeRollouts.set(rollout.cluster, rollout.rolloutId);
    const rollouts = mapIn(this.#rollouts, rollout.cluster);
    // As on DynamoDB, where the pointer is written first and the rollout only if its id is new.
    if (rollouts.has(rollout.rolloutId)) {
      throw new Error(`rollout ${rollout.rolloutId} of ${rollout.cluster} already exists`);
    }
    rollouts.set(rollout.rolloutId, storedCopy(rollout));
  }

  async getRollout(cluster: string, rolloutId: string): Promise<RolloutRecord | undefined> {
    return copyOf(this.#rollouts.get(cluster)?.get(rolloutId));
  }

  async getActiveRollout(cluster: string): Promise<RolloutRecord | undefined> {
    const rolloutId = this.#activeRollouts.get(cluster);
    return rolloutId === undefined ? undefined : this.getRollout(cluster, rolloutId);
  }

  async listRollouts(cluster: string): Promise<RolloutRecord[]> {
    return inKeyOrder(this.#rollouts.get(cluster));
  }

  async updateRollout(rollout: RolloutRecord, changes: RolloutChanges, now: number): Promise<RolloutRecord> {
    const rollouts = this.#rollouts.get(rollout.cluster);
    if (rollouts === undefined || rollouts.get(rollout.rolloutId)?.version !== rollout.version) {
      throw new ConflictError('rollout changed concurrently', {
        context: { cluster: rollout.cluster, rolloutId: rollout.rolloutId },
      });
    }
    // The whole record is replaced, as the DynamoDB store puts it: the caller's read plus the changes.
    const next = replace(rollouts, rollout.rolloutId, {
      ...rollout,
      ...changes,
      version: rollout.version + 1,
      updatedAt: now,
    });
    if (next.status !== 'running' && this.#activeRollouts.get(rollout.cluster) === rollout.rolloutId) {
      this.#activeRollouts.delete(rollout.cluster);
    }
    return next;
  }

  // ---- waves and attempts --------------------------------------------------------------------

  async getWave(cluster: string, rolloutId: string, wave: number): Promise<WaveRecord | undefined> {
    return copyOf(this.#waves.get(rolloutKey(cluster, rolloutId))?.get(wave));
  }

  async addWave(wave: WaveRecord, attempts: readonly AttemptRecord[]): Promise<void> {
    checkAttempts(wave.cluster, wave.rolloutId, attempts);
    const key = rolloutKey(wave.cluster, wave.rolloutId);
    const waves = mapIn(this.#waves, key);
    if (waves.has(wave.wave)) {
      throw new ConflictError('the wave number is taken', {
        context: { cluster: wave.cluster, rolloutId: wave.rolloutId, wave: wave.wave },
      });
    }
    waves.set(wave.wave, storedCopy(wave));
    const stored = mapIn(this.#attempts, key);
    for (const attempt of attempts) {
      if (!stored.has(attempt.target)) stored.set(attempt.target, storedCopy(attempt));
    }
  }

  async getAttempt(cluster: string, rolloutId: string, target: string): Promise<AttemptRecord | undefined> {
    return copyOf(this.#attempts.get(rolloutKey(cluster, rolloutId))?.get(target));
  }

  async getAttempts(
    cluster: string,
    rolloutId: string,
    targets: readonly string[],
  ): Promise<AttemptRecord[]> {
    return pick(this.#attempts.get(rolloutKey(cluster, rolloutId)), targets);
  }

  async listAttempts(cluster: string, rolloutId: string): Promise<AttemptRecord[]> {
    return inKeyOrder(this.#attempts.get(rolloutKey(cluster, rolloutId)));
  }

  async updateAttempt(
    attempt: Pick<AttemptRecord, 'cluster' | 'rolloutId' | 'target'>,
    expected: AttemptExpectation,
    changes: AttemptChanges,
    now: number,
    remove: readonly AttemptField[] = [],
  ): Promise<AttemptRecord> {
    const { cluster, rolloutId, target } = attempt;
    const attempts = this.#attempts.get(rolloutKey(cluster, rolloutId));
    const current = attempts?.get(target);
    if (
      attempts === undefined ||
      current === undefined ||
      current.state !== expected.state ||
      current.token !== expected.token ||
      (expected.version !== undefined && current.version !== expected.version)
    ) {
      throw new ConflictError('attempt changed concurrently', { context: { cluster, rolloutId, target } });
    }
    return replace(attempts, target, updated(current, changes, remove, now));
  }

  // ---- audit ---------------------------------------------------------------------------------

  async audit(entry: AuditEntry): Promise<void> {
    const expiresAt = Math.floor(entry.at / 1000) + AUDIT_RETENTION_SECONDS;
    const sortKey = `${new Date(entry.at).toISOString()}#${entry.id}`;
    mapIn(this.#audit, entry.cluster).set(sortKey, storedCopy({ ...entry, expiresAt }));
  }

  async listAudit(cluster: string, now: number): Promise<AuditEntry[]> {
    return inKeyOrder(this.#audit.get(cluster))
      .filter((entry) => entry.expiresAt * 1000 > now)
      .map(({ expiresAt: _expiresAt, ...entry }) => entry);
  }
}

function nodeMatches(node: NodeRecord, expected: NodeExpectation): boolean {
  if (expected.status !== undefined) {
    const statuses: readonly string[] =
      typeof expected.status === 'string' ? [expected.status] : expected.status;
    if (!statuses.includes(node.status)) return false;
  }
  return expected.version === undefined || node.version === expected.version;
}

/** A record after a conditional update: defined changes set, listed fields removed, version + 1. */
function updated<T extends { version: number; updatedAt: number }>(
  current: T,
  changes: object,
  remove: readonly string[],
  now: number,
): T {
  const next: Record<string, unknown> = { ...current, version: current.version + 1, updatedAt: now };
  for (const [field, value] of Object.entries(changes)) {
    if (value !== undefined) next[field] = value;
  }
  for (const field of remove) delete next[field];
  return next as T;
}

function rolloutKey(cluster: string, rolloutId: string): string {
  return `${cluster}\u0000${rolloutId}`;
}

function mapIn<K, V>(byOwner: Map<string, Map<K, V>>, owner: string): Map<K, V> {
  let items = byOwner.get(owner);
  if (items === undefined) {
    items = new Map();
    byOwner.set(owner, items);
  }
  return items;
}

/** Store a copy of `record` under `key` and hand back another. */
function replace<K, T>(items: Map<K, T>, key: K, record: T): T {
  const stored = storedCopy(record);
  items.set(key, stored);
  return storedCopy(stored);
}

function copyOf<T>(record: T | undefined): T | undefined {
  return record === undefined ? undefined : storedCopy(record);
}

/** Copies of the records asked for, in the order asked; unknown keys are left out. */
function pick<T>(items: Map<string, T> | undefined, wanted: readonly string[]): T[] {
  return wanted.flatMap((key) => {
    const item = items?.get(key);
    return item === undefined ? [] : [storedCopy(item)];
  });
}

function inKeyOrder<K extends string | number, T>(items: Map<K, T> | undefined): T[] {
  return [...(items ?? new Map<K, T>())]
    .sort(([left], [right]) => (left < right ? -1 : left > right ? 1 : 0))
    .map(([, item]) => storedCopy(item));
}

/**
 * A deep copy without undefined values, which is what a record looks like after a round trip
 * through DynamoDB (the document client drops them), so both stores hand back the same shapes.
 */
function storedCopy<T>(value: T): T {
  if (Array.isArray(value)) {
    return value.filter((item) => item !== undefined).map((item) => storedCopy(item)) as T;
  }
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value)
        .filter(([, item]) => item !== undefined)
        .map(([key, item]) => [key, storedCopy(item)]),
    ) as T;
  }
  return value;
}
