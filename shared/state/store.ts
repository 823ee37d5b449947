import type { RolloutStore } from '../rollout/store';
import type { AuditEntry, NodeRecord, NodeStatus } from './records';

/** How long audit entries are kept; stores keep the expiry with each entry, in epoch seconds. */
export const AUDIT_RETENTION_SECONDS = 90 * 86_400;

/** What a conditional node update expects to find; any mismatch means another actor got there first. */
export interface NodeExpectation {
  status?: NodeStatus | readonly NodeStatus[];
  version?: number;
}

export type NodeChanges = Partial<Omit<NodeRecord, 'cluster' | 'instanceId' | 'version' | 'updatedAt'>>;
export type NodeField = keyof NodeChanges;
/**
 * A node as inventory first reports it; the store sets its failures and version, and its status to
 * `idle` unless it arrives refused.
 */
export type NewNode = Omit<NodeRecord, 'version' | 'updatedAt' | 'failures' | 'status'> & {
  status?: Extract<NodeStatus, 'idle' | 'refused'>;
};

/** The nodes of every cluster: inventory facts and what the certificate plan recorded for each. */
export interface NodeStore {
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
}

/** Who did what and why, kept 90 days. */
export interface AuditLog {
  audit(entry: AuditEntry): Promise<void>;
  /** Audit entries oldest first (same instant: by id), without those past their 90-day retention. */
  listAudit(cluster: string, now: number): Promise<AuditEntry[]>;
}

/**
 * The rotator's state, as the engine, the plans, the handlers and the CLI use it. Every state change
 * is conditional, so a duplicate, late or out-of-order event turns into a ConflictError the caller
 * can drop. Records handed in or out are the caller's own: changing one never changes what is stored.
 */
export interface StateStore extends NodeStore, RolloutStore, AuditLog {}
