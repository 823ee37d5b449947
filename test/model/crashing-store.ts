import type { AttemptRecord, RolloutRecord, WaveRecord } from '../../shared/rollout/model';
import type {
  AttemptChanges,
  AttemptExpectation,
  AttemptField,
  RolloutChanges,
} from '../../shared/rollout/store';
import type { AuditEntry, NodeRecord } from '../../shared/state/records';
import type { NewNode, NodeChanges, NodeExpectation, NodeField, StateStore } from '../../shared/state/store';
import { InMemoryStateStore } from '../helpers/in-memory-state-store';
import { assertAlive, currentActor, SimulatedCrash } from './crash';
import type { ModelWorld } from './model-world';

/**
 * The in-memory store behind a process that can die: the actor's Nth write throws SimulatedCrash
 * instead of happening, and so does every side effect it tries after that.
 */
export class CrashingStore implements StateStore {
  readonly #inner = new InMemoryStateStore();

  constructor(private readonly world: ModelWorld) {}

  #write(operation: string, payload: unknown): void {
    assertAlive();
    const actor = currentActor();
    if (actor !== undefined) {
      actor.writes += 1;
      if (actor.writes === actor.crashAtWrite || actor.dyingAfterSend === true) {
        actor.crashed = true;
        this.world.stats.crashes += 1;
        throw new SimulatedCrash(`crashed at write ${actor.writes} (${operation})`);
      }
    }
    if (JSON.stringify(payload).includes('PRIVATE KEY'))
      this.world.violations.push(`${operation} wrote private key material`);
    if (this.world.msPerWrite > 0) this.world.clock.advance(this.world.msPerWrite);
  }

  getNode(cluster: string, instanceId: string): Promise<NodeRecord | undefined> {
    return this.#inner.getNode(cluster, instanceId);
  }

  getNodes(cluster: string, instanceIds: readonly string[]): Promise<NodeRecord[]> {
    return this.#inner.getNodes(cluster, instanceIds);
  }

  listNodes(cluster: string): Promise<NodeRecord[]> {
    return this.#inner.listNodes(cluster);
  }

  addNode(node: NewNode, now: number): Promise<NodeRecord | undefined> {
    this.#write('addNode', node);
    return this.#inner.addNode(node, now);
  }

  updateNode(
    cluster: string,
    instanceId: string,
    expected: NodeExpectation,
    changes: NodeChanges,
    now: number,
    remove?: readonly NodeField[],
  ): Promise<NodeRecord> {
    this.#write('updateNode', changes);
    return this.#inner.updateNode(cluster, instanceId, expected, changes, now, remove);
  }

  acquireLease(cluster: string, kind: string, owner: string, now: number, ttlMs: number): Promise<boolean> {
    this.#write('acquireLease', owner);
    return this.#inner.acquireLease(cluster, kind, owner, now, ttlMs);
  }

  releaseLease(cluster: string, kind: string, owner: string): Promise<void> {
    this.#write('releaseLease', owner);
    return this.#inner.releaseLease(cluster, kind, owner);
  }

  startRollout(
    rollout: RolloutRecord,
    waves: readonly WaveRecord[],
    attempts: readonly AttemptRecord[],
  ): Promise<void> {
    this.#write('startRollout', { rollout, waves, attempts });
    return this.#inner.startRollout(rollout, waves, attempts);
  }

  getRollout(cluster: string, rolloutId: string): Promise<RolloutRecord | undefined> {
    return this.#inner.getRollout(cluster, rolloutId);
  }

  getActiveRollout(cluster: string): Promise<RolloutRecord | undefined> {
    return this.#inner.getActiveRollout(cluster);
  }

  listRollouts(cluster: string): Promise<RolloutRecord[]> {
    return this.#inner.listRollouts(cluster);
  }

  updateRollout(rollout: RolloutRecord, changes: RolloutChanges, now: number): Promise<RolloutRecord> {
    this.#write('updateRollout', changes);
    return this.#inner.updateRollout(rollout, changes, now);
  }

  getWave(cluster: string, rolloutId: string, wave: number): Promise<WaveRecord | undefined> {
    return this.#inner.getWave(cluster, rolloutId, wave);
  }

  addWave(wave: WaveRecord, attempts: readonly AttemptRecord[]): Promise<void> {
    this.#write('addWave', { wave, attempts });
    return this.#inner.addWave(wave, attempts);
  }

  getAttempt(cluster: string, rolloutId: string, target: string): Promise<AttemptRecord | undefined> {
    return this.#inner.getAttempt(cluster, rolloutId, target);
  }

  getAttempts(cluster: string, rolloutId: string, targets: readonly string[]): Promise<AttemptRecord[]> {
    return this.#inner.getAttempts(cluster, rolloutId, targets);
  }

  listAttempts(cluster: string, rolloutId: string): Promise<AttemptRecord[]> {
    return this.#inner.listAttempts(cluster, rolloutId);
  }

  async updateAttempt(
    attempt: Pick<AttemptRecord, 'cluster' | 'rolloutId' | 'target'>,
    expected: AttemptExpectation,
    changes: AttemptChanges,
    now: number,
    remove?: readonly AttemptField[],
  ): Promise<AttemptRecord> {
    this.#write('updateAttempt', changes);
    const updated = await this.#inner.updateAttempt(attempt, expected, changes, now, remove);
    if (changes.commandId !== undefined) this.world.fleet.recorded(changes.commandId, attempt.target);
    return updated;
  }

  audit(entry: AuditEntry): Promise<void> {
    this.#write('audit', entry);
    return this.#inner.audit(entry);
  }

  listAudit(cluster: string, now: number): Promise<AuditEntry[]> {
    return this.#inner.listAudit(cluster, now);
  }
}
