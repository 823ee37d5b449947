import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { AttemptRecord, RolloutRecord, WaveRecord } from '../rollout/model';
import type { AttemptChanges, AttemptExpectation, AttemptField, RolloutChanges } from '../rollout/store';
import { TableDocuments } from './dynamodb/documents';
import * as nodes from './dynamodb/nodes';
import * as rollouts from './dynamodb/rollouts';
import type { AuditEntry, NodeRecord } from './records';
import type { NewNode, NodeChanges, NodeExpectation, NodeField, StateStore } from './store';

/**
 * The state store on DynamoDB (single-table design). Every state change is a conditional write. No
 * transactions (dynalite has none): writes that span items are ordered so that a crash between two
 * of them leaves nothing a reader acts on.
 *
 * The items live in dynamodb/: node and audit items in nodes.ts; leases, rollouts, waves and
 * attempts in rollouts.ts; the keys and the reads and writes they share in documents.ts.
 */
export class StateTable implements StateStore {
  readonly #table: TableDocuments;

  constructor(
    client: DynamoDBClient,
    readonly tableName: string,
  ) {
    this.#table = new TableDocuments(client, tableName);
  }

  // ---- nodes ---------------------------------------------------------------------------------

  async getNode(cluster: string, instanceId: string): Promise<NodeRecord | undefined> {
    return nodes.getNode(this.#table, cluster, instanceId);
  }

  async getNodes(cluster: string, instanceIds: readonly string[]): Promise<NodeRecord[]> {
    return nodes.getNodes(this.#table, cluster, instanceIds);
  }

  async listNodes(cluster: string): Promise<NodeRecord[]> {
    return nodes.listNodes(this.#table, cluster);
  }

  async addNode(node: NewNode, now: number): Promise<NodeRecord | undefined> {
    return nodes.addNode(this.#table, node, now);
  }

  async updateNode(
    cluster: string,
    instanceId: string,
    expected: NodeExpectation,
    changes: NodeChanges,
    now: number,
    remove: readonly NodeField[] = [],
  ): Promise<NodeRecord> {
    return nodes.updateNode(this.#table, cluster, instanceId, expected, changes, now, remove);
  }

  // ---- audit ---------------------------------------------------------------------------------

  async audit(entry: AuditEntry): Promise<void> {
    await nodes.audit(this.#table, entry);
  }

  async listAudit(cluster: string, now: number): Promise<AuditEntry[]> {
    return nodes.listAudit(this.#table, cluster, now);
  }

  /** The entries of a time window, oldest first, read a page at a time (the CLI's history). */
  async listAuditWindow(cluster: string, window: nodes.AuditWindow, now: number): Promise<AuditEntry[]> {
    return nodes.listAuditWindow(this.#table, cluster, window, now);
  }

  // ---- lease ---------------------------------------------------------------------------------

  async acquireLease(
    cluster: string,
    kind: string,
    owner: string,
    now: number,
    ttlMs: number,
  ): Promise<boolean> {
    return rollouts.acquireLease(this.#table, cluster, kind, owner, now, ttlMs);
  }

  async releaseLease(cluster: string, kind: string, owner: string): Promise<void> {
    await rollouts.releaseLease(this.#table, cluster, kind, owner);
  }

  // ---- rollouts ------------------------------------------------------------------------------

  async startRollout(
    rollout: RolloutRecord,
    waves: readonly WaveRecord[],
    attempts: readonly AttemptRecord[],
  ): Promise<void> {
    await rollouts.startRollout(this.#table, rollout, waves, attempts);
  }

  async getRollout(cluster: string, rolloutId: string): Promise<RolloutRecord | undefined> {
    return rollouts.getRollout(this.#table, cluster, rolloutId);
  }

  async getActiveRollout(cluster: string): Promise<RolloutRecord | undefined> {
    return rollouts.getActiveRollout(this.#table, cluster);
  }

  async listRollouts(cluster: string): Promise<RolloutRecord[]> {
    return rollouts.listRollouts(this.#table, cluster);
  }

  async updateRollout(rollout: RolloutRecord, changes: RolloutChanges, now: number): Promise<RolloutRecord> {
    return rollouts.updateRollout(this.#table, rollout, changes, now);
  }

  // ---- waves and attempts --------------------------------------------------------------------

  async getWave(cluster: string, rolloutId: string, wave: number): Promise<WaveRecord | undefined> {
    return rollouts.getWave(this.#table, cluster, rolloutId, wave);
  }

  async addWave(wave: WaveRecord, attempts: readonly AttemptRecord[]): Promise<void> {
    await rollouts.addWave(this.#table, wave, attempts);
  }

  async getAttempt(cluster: string, rolloutId: string, target: string): Promise<AttemptRecord | undefined> {
    return rollouts.getAttempt(this.#table, cluster, rolloutId, target);
  }

  async getAttempts(
    cluster: string,
    rolloutId: string,
    targets: readonly string[],
  ): Promise<AttemptRecord[]> {
    return rollouts.getAttempts(this.#table, cluster, rolloutId, targets);
  }

  async listAttempts(cluster: string, rolloutId: string): Promise<AttemptRecord[]> {
    return rollouts.listAttempts(this.#table, cluster, rolloutId);
  }

  async updateAttempt(
    attempt: Pick<AttemptRecord, 'cluster' | 'rolloutId' | 'target'>,
    expected: AttemptExpectation,
    changes: AttemptChanges,
    now: number,
    remove: readonly AttemptField[] = [],
  ): Promise<AttemptRecord> {
    return rollouts.updateAttempt(this.#table, attempt, expected, changes, now, remove);
  }
}
