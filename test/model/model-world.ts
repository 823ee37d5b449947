import { ManualClock } from '../../local/clock';
import { RecordingLogger, RecordingTelemetry } from '../../local/world/recording';
import { normalizeSerial } from '../../shared/certificates/outputs';
import { CertificateRotation } from '../../shared/certificates/rotation';
import { ConflictError } from '../../shared/errors';
import { applyCommandStatus, type CommandStatusRuntime } from '../../shared/intake/command-status';
import { isFinished } from '../../shared/rollout/model';
import type { StateStore } from '../../shared/state/store';
import { CrashingStore } from './crashing-store';
import { CLUSTER_NAMES, CONFIGS, QUIESCE_STEP_MS, SECOND, START } from './fleets';
import { type CsrPool, ModelAuthority, ModelEvents } from './model-authority';
import { ModelCommands } from './model-commands';
import { ModelFleet } from './model-fleet';

export interface RunStats {
  serverInstalls: number;
  commands: number;
  crashes: number;
  /** Sends repeated only because the run that sent the first died before recording it. */
  resendsAfterCrash: number;
  rolloutsCompleted: number;
  rolloutsHalted: number;
  rolloutsSuperseded: number;
  /** Attempts of a wave whose join died before counting it, left behind by a finished rollout. */
  uncountedWaves: number;
}

export function noStats(): RunStats {
  return {
    serverInstalls: 0,
    commands: 0,
    crashes: 0,
    resendsAfterCrash: 0,
    rolloutsCompleted: 0,
    rolloutsHalted: 0,
    rolloutsSuperseded: 0,
    uncountedWaves: 0,
  };
}

const FAR_ENOUGH_MS = 10 * 60 * SECOND;

export class ModelWorld {
  readonly clock = new ManualClock(START);
  readonly violations: string[] = [];
  readonly stats: RunStats = noStats();
  readonly authority: ModelAuthority;
  readonly fleet: ModelFleet;
  readonly store: StateStore;
  readonly events = new ModelEvents();
  readonly telemetry = new RecordingTelemetry();
  readonly logger = new RecordingLogger();
  /** Terminated instances whose retire has not gone through yet; EC2 events are redelivered until it does. */
  readonly retirePending = new Set<string>();
  /** Clock time each store write takes, for runs whose deadline should fall mid-way. */
  msPerWrite = 0;
  readonly #rotations = new Map<string, CertificateRotation>();
  #owners = 0;

  constructor(pool: CsrPool) {
    this.authority = new ModelAuthority(this.clock, pool);
    this.fleet = new ModelFleet(this, pool);
    this.store = new CrashingStore(this);
    for (const [name, cluster] of CONFIGS) {
      this.#rotations.set(
        name,
        new CertificateRotation(
          {
            cluster,
            table: this.store,
            inventory: this.fleet,
            commands: this.fleet,
            authority: this.authority,
            events: this.events,
            telemetry: this.telemetry,
            logger: this.logger,
            clock: this.clock,
          },
          new ModelCommands(this.fleet, cluster),
        ),
      );
    }
  }

  rotation(cluster: string): CertificateRotation {
    return this.#rotations.get(cluster)!;
  }

  /** Each scheduled run is its own Lambda invocation, with its own request id as lease owner. */
  tick(cluster: string, budgetMs = FAR_ENOUGH_MS) {
    this.#owners += 1;
    return this.rotation(cluster).tick({
      deadline: this.clock.now() + budgetMs,
      owner: `request-${this.#owners}`,
      actor: 'schedule',
    });
  }

  /** The event path, exactly as the command-status handler routes it. */
  deliver(event: { commandId: string; status: string }) {
    const runtime = {
      commands: this.fleet,
      clusterNames: () => CLUSTER_NAMES,
      rotation: (name: string) => this.rotation(name),
      logger: this.logger,
    } as unknown as CommandStatusRuntime;
    return applyCommandStatus(runtime, event, this.clock.now() + FAR_ENOUGH_MS);
  }

  deadline(): number {
    return this.clock.now() + FAR_ENOUGH_MS;
  }

  async retire(id: string): Promise<void> {
    this.retirePending.add(id);
    await this.rotation(this.fleet.nodes.get(id)!.cluster).retire(id, 'ec2-terminated');
    this.retirePending.delete(id);
  }

  /**
   * Everything recovers (Vault unsealed, nodes online, every command answered and its event
   * delivered, time moving on) until no rollout runs and nothing is out.
   */
  async quiesce(maxRounds: number): Promise<void> {
    this.authority.sealed = false;
    this.fleet.throttleNextSends = 0;
    for (const node of this.fleet.nodes.values()) node.online = !node.terminated;
    for (let round = 0; round < maxRounds; round += 1) {
      for (const id of [...this.retirePending]) await this.retire(id);
      for (
        let inner = 0;
        inner < 50 && (this.fleet.running().length > 0 || this.fleet.undelivered.length > 0);
        inner += 1
      ) {
        for (const invocation of [...this.fleet.running()]) this.fleet.finish(invocation, 'success');
        for (const event of this.fleet.undelivered.splice(0)) await this.deliver(event);
      }
      this.clock.advance(QUIESCE_STEP_MS);
      this.fleet.expire();
      for (const cluster of CLUSTER_NAMES) await this.tick(cluster);
      if (!(await this.#idle())) continue;
      // A tick that finishes a rollout starts the next one only on the following run.
      for (const cluster of CLUSTER_NAMES) await this.tick(cluster);
      if (await this.#idle()) return;
    }
    const active = await Promise.all(CLUSTER_NAMES.map((cluster) => this.store.getActiveRollout(cluster)));
    throw new Error(
      `rollout did not terminate within ${maxRounds} quiesce rounds: active ${active
        .filter((rollout) => rollout !== undefined)
        .map(
          (rollout) =>
            `${rollout.cluster}/${rollout.rolloutId} wave ${rollout.currentWave}/${rollout.waveCount}`,
        )
        .join(', ')}; ${this.fleet.running().length} invocation(s) running`,
    );
  }

  async #idle(): Promise<boolean> {
    const active = await Promise.all(CLUSTER_NAMES.map((cluster) => this.store.getActiveRollout(cluster)));
    return (
      active.every((rollout) => rollout === undefined) &&
      this.fleet.running().length === 0 &&
      this.fleet.undelivered.length === 0
    );
  }

  /**
   * Once the world has quiesced: every node's table record matches what it runs (or it failed with
   * a reason), every rollout ended, no cluster holds another's node, replaced emergency serials are
   * revoked, no rotation is announced twice and no secret leaked; returns what broke.
   */
  async finalViolations(): Promise<string[]> {
    const broken = [...this.violations];
    for (const cluster of CLUSTER_NAMES) {
      const fakeNodes = new Map(this.fleet.nodesOf(cluster).map((node) => [node.instanceId, node]));
      const records = new Map((await this.store.listNodes(cluster)).map((node) => [node.instanceId, node]));
      for (const node of fakeNodes.values()) {
        const record = records.get(node.instanceId);
        if (node.terminated) {
          if (record !== undefined && record.status !== 'retired')
            broken.push(`${node.instanceId} is terminated but ${record.status} in the table`);
          continue;
        }
        if (record === undefined) {
          broken.push(`${cluster}: ${node.instanceId} never reached the table`);
        } else if (record.status === 'failed') {
          if (!record.lastError) broken.push(`${node.instanceId} failed without a reason`);
        } else if (record.status !== 'idle') {
          broken.push(`${node.instanceId} ended ${record.status}`);
        } else if (record.agent === undefined || record.cli === undefined) {
          broken.push(`${node.instanceId} ended idle without certificates`);
        } else if (
          node.installed === undefined ||
          normalizeSerial(record.agent.serial) !== node.installed.agent.serial ||
          normalizeSerial(record.cli.serial) !== node.installed.cli.serial
        ) {
          broken.push(
            `${node.instanceId}: the table says agent ${normalizeSerial(record.agent.serial)} / cli ${normalizeSerial(record.cli.serial)}, the node runs ${node.installed?.agent.serial ?? 'nothing'} / ${node.installed?.cli.serial ?? 'nothing'}`,
          );
        }
      }
      for (const record of records.values()) {
        if (!fakeNodes.has(record.instanceId))
          broken.push(`${cluster}'s table holds ${record.instanceId}, a node of another cluster`);
      }
      if ((await this.store.getActiveRollout(cluster)) !== undefined)
        broken.push(`${cluster} still has an active rollout`);
      for (const rollout of await this.store.listRollouts(cluster)) {
        if (rollout.status === 'running') broken.push(`${cluster}/${rollout.rolloutId} is still running`);
        if (rollout.status === 'completed') this.stats.rolloutsCompleted += 1;
        if (rollout.status === 'halted') this.stats.rolloutsHalted += 1;
        if (rollout.status === 'superseded') this.stats.rolloutsSuperseded += 1;
        const attempts = await this.store.listAttempts(cluster, rollout.rolloutId);
        for (const attempt of attempts) {
          if (attempt.cluster !== cluster || !fakeNodes.has(attempt.target))
            broken.push(
              `${cluster}/${rollout.rolloutId} has an attempt for ${attempt.target} of ${attempt.cluster}`,
            );
          // A halted rollout leaves the waves after the failed one untouched. So does a join that died
          // between writing its wave and counting it: the node waits for the next rollout instead.
          const neverTried = attempt.state === 'pending' && attempt.tries === 0;
          const uncounted = attempt.wave >= rollout.waveCount;
          if (neverTried && uncounted) this.stats.uncountedWaves += 1;
          const untouched = neverTried && (rollout.status === 'halted' || uncounted);
          if (
            (rollout.status === 'completed' || rollout.status === 'halted') &&
            !isFinished(attempt) &&
            !untouched
          )
            broken.push(
              `${cluster}/${rollout.rolloutId} ended ${rollout.status} with ${attempt.target} ${attempt.state}`,
            );
        }
        for (let wave = 0; wave < rollout.waveCount; wave += 1) {
          const record = await this.store.getWave(cluster, rollout.rolloutId, wave);
          for (const target of record?.targets ?? []) {
            if (!fakeNodes.has(target))
              broken.push(`${cluster}/${rollout.rolloutId} wave ${wave} holds ${target}`);
          }
        }
      }
    }
    const revoked = new Set(this.authority.revoked.map(normalizeSerial));
    for (const serial of this.fleet.replacedInEmergency) {
      if (!revoked.has(serial))
        broken.push(`serial ${serial} was replaced by an emergency install but never revoked`);
    }
    const rotated = new Set<string>();
    for (const event of this.events.published) {
      if (event.type !== 'CertificateRotated') continue;
      const serial = normalizeSerial(String(event.detail.serial));
      const key = `${String(event.detail.instanceId)}|${this.fleet.tokenOfSerial.get(serial) ?? `serial ${serial}`}`;
      if (rotated.has(key)) broken.push(`CertificateRotated twice for ${key}`);
      rotated.add(key);
    }
    const published = JSON.stringify(this.events.published) + JSON.stringify(this.logger.lines);
    if (published.includes('PRIVATE KEY')) broken.push('an event or log line carries private key material');
    return broken;
  }
}

/** Errors an action may end with that the system expects: a manual request refused while a rollout runs. */
export function isExpectedRefusal(error: unknown): boolean {
  return error instanceof ConflictError;
}
