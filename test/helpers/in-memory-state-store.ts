import { ConflictError } from '../../shared/errors';
import type { AuditEntry, NodeRecord, RolloutRecord } from '../../shared/state/records';
import {
  AUDIT_RETENTION_SECONDS,
  type NewNode,
  type NodeChanges,
  type NodeExpectation,
  type NodeField,
  type RolloutChanges,
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
  /** Keyed by the audit item's sort key (ISO time, then id), which is what orders the trail. */
  readonly #audit = new Map<string, Map<string, StoredAudit>>();
  /** Cluster → lease kind → holder. */
  readonly #leases = new Map<string, Map<string, Lease>>();
  /** Cluster → id of its active rollout. */
  readonly #activeRollouts = new Map<string, string>();

  async getNode(cluster: string, instanceId: string): Promise<NodeRecord | undefined> {
    const node = this.#nodes.get(cluster)?.get(instanceId);
    return node === undefined ? undefined : storedCopy(node);
  }

  async getNodes(cluster: string, instanceIds: readonly string[]): Promise<NodeRecord[]> {
    const nodes = this.#nodes.get(cluster);
    return instanceIds.flatMap((id) => {
      const node = nodes?.get(id);
      return node === undefined ? [] : [storedCopy(node)];
    });
  }

  async listNodes(cluster: string): Promise<NodeRecord[]> {
    return inKeyOrder(this.#nodes.get(cluster));
  }

  async addNode(node: NewNode, now: number): Promise<NodeRecord | undefined> {
    const nodes = clusterMap(this.#nodes, node.cluster);
    if (nodes.has(node.instanceId)) return undefined;
    const record: NodeRecord = { ...node, status: 'idle', failures: 0, version: 1, updatedAt: now };
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
    if (nodes === undefined || current === undefined || !matches(current, expected)) {
      throw new ConflictError('node changed concurrently', { context: { cluster, instanceId } });
    }
    const next: Record<string, unknown> = { ...current, version: current.version + 1, updatedAt: now };
    for (const [field, value] of Object.entries(changes)) {
      if (value !== undefined) next[field] = value;
    }
    for (const field of remove) delete next[field];
    const stored = storedCopy(next as unknown as NodeRecord);
    nodes.set(instanceId, stored);
    return storedCopy(stored);
  }

  async acquireLease(
    cluster: string,
    kind: string,
    owner: string,
    now: number,
    ttlMs: number,
  ): Promise<boolean> {
    const leases = clusterMap(this.#leases, cluster);
    const held = leases.get(kind);
    if (held !== undefined && held.heldUntil >= now && held.owner !== owner) return false;
    leases.set(kind, { owner, heldUntil: now + ttlMs });
    return true;
  }

  async releaseLease(cluster: string, kind: string, owner: string): Promise<void> {
    const leases = this.#leases.get(cluster);
    if (leases?.get(kind)?.owner === owner) leases?.delete(kind);
  }

  async startRollout(rollout: RolloutRecord): Promise<void> {
    if (this.#activeRollouts.has(rollout.cluster)) {
      throw new ConflictError('another rollout is active', { context: { cluster: rollout.cluster } });
    }
    this.#activeRollouts.set(rollout.cluster, rollout.rolloutId);
    const rollouts = clusterMap(this.#rollouts, rollout.cluster);
    // As on DynamoDB, where the pointer is written first and the rollout only if its id is new.
    if (rollouts.has(rollout.rolloutId)) {
      throw new Error(`rollout ${rollout.rolloutId} of ${rollout.cluster} already exists`);
    }
    rollouts.set(rollout.rolloutId, storedCopy(rollout));
  }

  async getRollout(cluster: string, rolloutId: string): Promise<RolloutRecord | undefined> {
    const rollout = this.#rollouts.get(cluster)?.get(rolloutId);
    return rollout === undefined ? undefined : storedCopy(rollout);
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
    const next = storedCopy({ ...rollout, ...changes, version: rollout.version + 1, updatedAt: now });
    rollouts.set(rollout.rolloutId, next);
    if (next.status !== 'running' && this.#activeRollouts.get(rollout.cluster) === rollout.rolloutId) {
      this.#activeRollouts.delete(rollout.cluster);
    }
    return storedCopy(next);
  }

  async audit(entry: AuditEntry): Promise<void> {
    const expiresAt = Math.floor(entry.at / 1000) + AUDIT_RETENTION_SECONDS;
    const sortKey = `${new Date(entry.at).toISOString()}#${entry.id}`;
    clusterMap(this.#audit, entry.cluster).set(sortKey, storedCopy({ ...entry, expiresAt }));
  }

  async listAudit(cluster: string, now: number): Promise<AuditEntry[]> {
    return inKeyOrder(this.#audit.get(cluster))
      .filter((entry) => entry.expiresAt * 1000 > now)
      .map(({ expiresAt: _expiresAt, ...entry }) => entry);
  }
}

function matches(node: NodeRecord, expected: NodeExpectation): boolean {
  if (expected.status !== undefined) {
    const statuses: readonly string[] =
      typeof expected.status === 'string' ? [expected.status] : expected.status;
    if (!statuses.includes(node.status)) return false;
  }
  if (expected.attemptId === null && node.attemptId !== undefined) return false;
  if (typeof expected.attemptId === 'string' && node.attemptId !== expected.attemptId) return false;
  return expected.version === undefined || node.version === expected.version;
}

function clusterMap<T>(byCluster: Map<string, Map<string, T>>, cluster: string): Map<string, T> {
  let items = byCluster.get(cluster);
  if (items === undefined) {
    items = new Map();
    byCluster.set(cluster, items);
  }
  return items;
}

function inKeyOrder<T>(items: Map<string, T> | undefined): T[] {
  return [...(items ?? new Map<string, T>())]
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
