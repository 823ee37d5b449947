import type { AuditEntry, NodeRecord, NodeStatus, RolloutRecord } from './records';

/** How long audit entries are kept; stores keep the expiry with each entry, in epoch seconds. */
export const AUDIT_RETENTION_SECONDS = 90 * 86_400;

/** What a conditional node update expects to find; any mismatch means another actor got there first. */
export interface NodeExpectation {
  status?: NodeStatus | readonly NodeStatus[];
  /** null: the node must have no attempt in flight. */
  attemptId?: string | null;
  version?: number;
}

export type NodeChanges = Partial<Omit<NodeRecord, 'cluster' | 'instanceId' | 'version' | 'updatedAt'>>;
export type NodeField = keyof NodeChanges;
/** A node as inventory first reports it; the store sets its status, failures and version. */
export type NewNode = Omit<NodeRecord, 'version' | 'updatedAt' | 'failures' | 'status'>;
export type RolloutChanges = Partial<Pick<RolloutRecord, 'currentWave' | 'status' | 'haltReason' | 'waves'>>;

/**
 * The rotator's state, as the engine, the handlers and the CLI use it. Every state change is
 * conditional, so a duplicate, late or out-of-order event turns into a ConflictError the caller can
 * drop. Records handed in or out are the caller's own: changing one never changes what is stored.
 */
export interface StateStore {
  getNode(cluster: string, instanceId: string): Promise<NodeRecord | undefined>;
  /** Several nodes in the order asked for; unknown nodes are left out. */
  getNodes(cluster: string, instanceIds: readonly string[]): Promise<NodeRecord[]>;
  /** The cluster's nodes, by instance id. */
  listNodes(cluster: string): Promise<NodeRecord[]>;
  /** Record a node seen in inventory for the first time; undefined (and no change) when it is known. */
  addNode(node: NewNode, now: number): Promise<NodeRecord | undefined>;
  /**
   * Change a node if and only if it still looks as expected; returns the new record with its version
   * one higher. Changes set to undefined are left alone; fields listed in `remove` are deleted.
   * ConflictError when the node is unknown or another actor changed it first.
   */
  updateNode(
    cluster: string,
    instanceId: string,
    expected: NodeExpectation,
    changes: NodeChanges,
    now: number,
    remove?: readonly NodeField[],
  ): Promise<NodeRecord>;
  /**
   * Take or renew the cluster lease of this kind until `now + ttlMs`; false while another owner holds
   * one that has not expired yet (an expired lease is taken over).
   */
  acquireLease(cluster: string, kind: string, owner: string, now: number, ttlMs: number): Promise<boolean>;
  /** Give the lease up; nothing happens when someone else holds it now. */
  releaseLease(cluster: string, kind: string, owner: string): Promise<void>;
  /**
   * Create a rollout and make it the cluster's active one. At most one rollout is active per cluster
   * (that is what keeps servers from reloading two at a time); ConflictError when one already is.
   */
  startRollout(rollout: RolloutRecord): Promise<void>;
  getRollout(cluster: string, rolloutId: string): Promise<RolloutRecord | undefined>;
  getActiveRollout(cluster: string): Promise<RolloutRecord | undefined>;
  /** Every rollout of the cluster, finished ones too, by rollout id. */
  listRollouts(cluster: string): Promise<RolloutRecord[]>;
  /**
   * Conditional on the version read; ConflictError when another invocation moved the rollout first.
   * A rollout that stops running frees the cluster's active slot.
   */
  updateRollout(rollout: RolloutRecord, changes: RolloutChanges, now: number): Promise<RolloutRecord>;
  audit(entry: AuditEntry): Promise<void>;
  /** Audit entries oldest first (same instant: by id), without those past their 90-day retention. */
  listAudit(cluster: string, now: number): Promise<AuditEntry[]>;
}
