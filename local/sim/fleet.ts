import type { Clock } from '../../shared/clock';
import type { CommandRun, Fleet, ManagedNode, PingStatus, ScriptResult } from '../fleet';
import {
  type BatchCertificate,
  type ParsedInstall,
  type PendingKey,
  parseInstall,
  pendingKey,
  refusal,
} from './node-certificates';

/** A uniform range of how long a step takes on a node. */
export interface LatencyRange {
  minMs: number;
  maxMs: number;
}

export interface SimulatedFleetOptions {
  servers: number;
  clients: number;
  clusterName: string;
  region: string;
  /** The SSM document names, so a node knows which step a command is. */
  documents: { prepare: string; install: string; gossip: string };
  clock: Clock;
  /** How long prepare and install take on a node (default 1–3 s and 3–8 s). */
  latency?: { prepare?: LatencyRange; install?: LatencyRange };
  /** Share of nodes whose SSM agent is not online (ConnectionLost), chosen once at launch. */
  offlineShare?: number;
  /** Share of install runs that fail as a reload that did not come up does (restored, exit 1). */
  installFailureShare?: number;
  /** Seeds the choice of latencies, offline nodes and failures, so a run can be repeated. */
  seed?: number;
  clusterTagKey?: string;
  roleTagKey?: string;
}

export const DEFAULT_LATENCY = {
  prepare: { minMs: 1_000, maxMs: 3_000 },
  install: { minMs: 3_000, maxMs: 8_000 },
} as const;

interface Installed {
  agent: BatchCertificate;
  cli: BatchCertificate;
}

/** The fleet's shared state: the random source and the installs parsed once per command. */
interface FleetContext {
  options: SimulatedFleetOptions;
  random: () => number;
  parsed(commandId: string, parameters: CommandRun['parameters']): Promise<ParsedInstall | string>;
  installed(instanceId: string, at: number): void;
  /** A node holds a pending key (prepared, not yet installed): it is in flight. */
  inFlight(instanceId: string, holding: boolean): void;
}

/**
 * A managed node answered in-process, the way kwok or nomad-nodesim stand in for nodes: it makes
 * real P-256 keys and CSRs in prepare and, in install, checks the certificates it is sent as
 * install.sh does (the pair for its pending keys, the chain up to a root of the CA bundle, its
 * role's name, the validity) before it "installs" them. What it does not do is the node path
 * itself (files, modes, reload, the served certificate): the sandboxed fleet proves that.
 */
export class SimulatedNode implements ManagedNode {
  readonly computerName: string;
  readonly ipAddress: string;
  readonly tags: Readonly<Record<string, string>>;
  #online: boolean;
  #pending: { attemptId: string; agent: PendingKey; cli: PendingKey } | undefined;
  #installed: Installed | undefined;

  constructor(
    readonly instanceId: string,
    readonly role: 'server' | 'client',
    index: number,
    online: boolean,
    private readonly context: FleetContext,
  ) {
    const { clusterTagKey = 'nomad-cluster', roleTagKey = 'nomad-role', clusterName } = context.options;
    this.computerName = `sim-${role}-${index}`;
    this.ipAddress = `127.1.${Math.floor(index / 250)}.${(index % 250) + 1}`;
    this.tags = { [clusterTagKey]: clusterName, [roleTagKey]: role };
    this.#online = online;
  }

  pingStatus(): PingStatus {
    return this.#online ? 'Online' : 'ConnectionLost';
  }

  setOnline(online: boolean): void {
    this.#online = online;
  }

  /** The agent certificate serial the node would serve now (openssl's form), if any. */
  servedSerial(): string | undefined {
    return this.#installed === undefined ? undefined : this.#installed.agent.serial;
  }

  async runScript(run: CommandRun): Promise<ScriptResult> {
    const { documents, latency } = this.context.options;
    const parameter = (name: string) => run.parameters[name]?.[0] ?? '';
    if (run.documentName === documents.prepare) {
      await this.#take(latency?.prepare ?? DEFAULT_LATENCY.prepare);
      return this.#prepare(parameter('attemptId'));
    }
    if (run.documentName === documents.install) {
      await this.#take(latency?.install ?? DEFAULT_LATENCY.install);
      return this.#install(run, parameter);
    }
    return answer(1, { ok: false, stage: 'gossip', reason: 'not-simulated' });
  }

  async #prepare(attemptId: string): Promise<ScriptResult> {
    if (this.#pending?.attemptId !== attemptId) {
      this.#pending = {
        attemptId,
        agent: pendingKey('nomad-rotator-agent'),
        cli: pendingKey('nomad-rotator-cli'),
      };
      this.context.inFlight(this.instanceId, true);
    }
    const current = (certificate: BatchCertificate | undefined) =>
      certificate === undefined
        ? null
        : {
            serial: certificate.serial,
            notAfter: certificate.notAfter,
          };
    return answer(0, {
      ok: true,
      stage: 'prepare',
      attemptId,
      agentCsr: this.#pending.agent.csrDerBase64,
      cliCsr: this.#pending.cli.csrDerBase64,
      current: { agent: current(this.#installed?.agent), cli: current(this.#installed?.cli) },
    });
  }

  async #install(run: CommandRun, parameter: (name: string) => string): Promise<ScriptResult> {
    const attemptId = parameter('attemptId');
    const refuse = (reason: string) =>
      answer(1, { ok: false, stage: 'install', attemptId, reason, touched: false });
    const install = await this.context.parsed(run.commandId, run.parameters);
    if (typeof install === 'string') return refuse(install);
    // The pending keys of this attempt, else (a re-run after success) the keys the node runs on.
    const pending = this.#pending?.attemptId === attemptId ? this.#pending : undefined;
    const keys = pending ?? this.#installed;
    const agent = keys && install.byPublicKey.get(keys.agent.publicKeyId);
    const cli = keys && install.byPublicKey.get(keys.cli.publicKeyId);
    if (agent === undefined || cli === undefined) return refuse('no-certificate-for-this-node');
    const now = this.context.options.clock.now();
    const minimumValiditySeconds = Number(parameter('minimumValiditySeconds'));
    const region = parameter('region');
    const agentRefusal = refusal(agent, install, {
      dnsName: `${parameter('role')}.${region}.nomad`,
      minimumValiditySeconds,
      now,
    });
    if (agentRefusal !== undefined) return refuse(agentRefusal);
    const cliRefusal = refusal(cli, install, {
      dnsName: `cli.${region}.nomad`,
      minimumValiditySeconds,
      now,
    });
    if (cliRefusal !== undefined) return refuse(cliRefusal);
    const unchanged = this.#installed?.agent.publicKeyId === agent.publicKeyId;
    if (!unchanged && this.context.random() < (this.context.options.installFailureShare ?? 0)) {
      return answer(1, {
        ok: false,
        stage: 'install',
        attemptId,
        reason: 'installed-set-not-served',
        touched: true,
        restored: true,
        servedSerial: this.servedSerial() ?? '',
      });
    }
    if (!unchanged) {
      this.#installed = { agent, cli };
      this.#pending = undefined;
      this.context.inFlight(this.instanceId, false);
      this.context.installed(this.instanceId, now);
    }
    const facts = ({ serial, notBefore, notAfter }: BatchCertificate) => ({ serial, notBefore, notAfter });
    return answer(0, {
      ok: true,
      stage: 'install',
      attemptId,
      changed: !unchanged,
      action: unchanged ? 'none' : parameter('mode'),
      servedSerial: agent.serial,
      agent: facts(agent),
      cli: facts(cli),
    });
  }

  #take(range: LatencyRange): Promise<void> {
    const ms = range.minMs + this.context.random() * (range.maxMs - range.minMs);
    return new Promise((resolve) => setTimeout(resolve, ms));
  }
}

/** Installs parsed per command: a command's nodes share its one batch of certificates. */
const PARSED_COMMANDS_KEPT = 256;

export interface SimulatedFleet extends Fleet {
  nodes(): readonly SimulatedNode[];
  node(instanceId: string): SimulatedNode | undefined;
  /** When each node installed a new set, in order: the rollout's progress over time. */
  readonly installs: readonly { instanceId: string; at: number }[];
  /** The most nodes that held a pending key at once: how many a rollout had in flight. */
  peakInFlight(): number;
}

export function createSimulatedFleet(options: SimulatedFleetOptions): SimulatedFleet {
  const random = seededRandom(options.seed ?? 1);
  const parsed = new Map<string, Promise<ParsedInstall | string>>();
  const installs: { instanceId: string; at: number }[] = [];
  const holding = new Set<string>();
  let peak = 0;
  const context: FleetContext = {
    options,
    random,
    parsed: (commandId, parameters) => {
      let install = parsed.get(commandId);
      if (install === undefined) {
        install = parseInstall({
          certificates: parameters.certificates?.[0] ?? '',
          chain: parameters.chain?.[0] ?? '',
          caBundle: parameters.caBundle?.[0] ?? '',
        });
        parsed.set(commandId, install);
        if (parsed.size > PARSED_COMMANDS_KEPT) parsed.delete(parsed.keys().next().value!);
      }
      return install;
    },
    installed: (instanceId, at) => installs.push({ instanceId, at }),
    inFlight: (instanceId, pending) => {
      if (pending) holding.add(instanceId);
      else holding.delete(instanceId);
      peak = Math.max(peak, holding.size);
    },
  };
  const roles = [
    ...Array.from({ length: options.servers }, () => 'server' as const),
    ...Array.from({ length: options.clients }, () => 'client' as const),
  ];
  const nodes = roles.map(
    (role, index) =>
      new SimulatedNode(
        `i-0f${index.toString(16).padStart(15, '0')}`,
        role,
        index + 1,
        random() >= (options.offlineShare ?? 0),
        context,
      ),
  );
  const byId = new Map(nodes.map((node) => [node.instanceId, node]));
  return {
    nodes: () => nodes,
    node: (instanceId) => byId.get(instanceId),
    installs,
    peakInFlight: () => peak,
  };
}

function answer(exitCode: number, line: Record<string, unknown>): ScriptResult {
  return { exitCode, stdout: `${JSON.stringify(line)}\n`, stderr: '', timedOut: false };
}

/** mulberry32: small, fast and good enough to pick latencies and failures repeatably. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let value = state;
    value = Math.imul(value ^ (value >>> 15), value | 1);
    value ^= value + Math.imul(value ^ (value >>> 7), value | 61);
    return ((value ^ (value >>> 14)) >>> 0) / 4_294_967_296;
  };
}
