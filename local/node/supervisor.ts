import { type ChildProcess, fork } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ReadyMessage } from './standin-config';

export type UnitState = 'active' | 'inactive' | 'failed';

export interface UnitStatus {
  state: UnitState;
  /** The main process (the agent). */
  pid?: number;
  /** Every process of the running unit, main process first. */
  processes: number[];
  lastExitCode?: number | null;
}

export interface UnitDefinition {
  /** The bundled stand-in script and its config file. */
  program: string;
  configFile: string;
  /** Restart=on-failure delay, as RestartSec. */
  restartDelayMs: number;
}

/**
 * systemd's default start limit, which the packaged unit keeps: more than StartLimitBurst=5 starts
 * within StartLimitIntervalSec=10s, automatic restarts included, and the unit is refused further
 * starts (result `start-limit-hit`) until the interval has passed or `systemctl reset-failed`.
 */
const START_LIMIT_BURST = 5;
const START_LIMIT_INTERVAL_MS = 10_000;
const START_LIMIT_HIT = [
  'Job for nomad.service failed.',
  'nomad.service: Start request repeated too quickly.',
  'See "systemctl status nomad.service" and "journalctl -xeu nomad.service" for details.',
].join('\n');

/** Why the unit last stopped or failed, as systemd's Result property names it. */
type UnitResult = 'success' | 'exit-code' | 'start-limit-hit';

interface Unit {
  definition: UnitDefinition;
  state: UnitState;
  child?: ChildProcess;
  /** Processes the agent started and reported (a server's serf agent), as systemd's cgroup holds them. */
  helpers: number[];
  lastExitCode?: number | null;
  restartTimer?: NodeJS.Timeout;
  stopping: boolean;
  result: UnitResult;
  /**
   * Automatic restarts since the unit was defined (NRestarts). systemd counts a restart when it
   * queues it, so the one the start limit then refuses is counted too.
   */
  restarts: number;
  /** systemd's start rate limiter: when the current interval began, and the starts counted in it. */
  limitBegin: number;
  limitCount: number;
}

interface Answer {
  exitCode: number;
  output: string;
  /** `show`: the unit's properties as systemctl prints them. */
  properties?: Record<string, string>;
}

/**
 * systemd's part in the local world: one `nomad` unit per node, driven by the systemctl shim over a
 * loopback endpoint. Like the packaged unit (Type=notify, ExecReload=kill -HUP, Restart=on-failure),
 * `start` returns once the agent is ready, `reload` only sends the signal, and an agent that exits
 * with an error is started again after RestartSec.
 */
export class Supervisor {
  readonly #units = new Map<string, Unit>();
  readonly #server: Server;

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(): Promise<Supervisor> {
    const supervisor = new Supervisor(createServer());
    supervisor.#server.on('request', (request, response) => {
      const match = /^\/nodes\/([^/]+)\/([a-z-]+)$/.exec(request.url ?? '');
      const answer = match
        ? supervisor.command(match[1]!, match[2]!)
        : Promise.resolve({ exitCode: 1, output: 'bad request' });
      void answer.then((body) => {
        response.writeHead(200, { 'content-type': 'application/json' });
        response.end(JSON.stringify(body));
      });
    });
    await new Promise<void>((resolve) => supervisor.#server.listen(0, '127.0.0.1', resolve));
    return supervisor;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  define(nodeId: string, definition: UnitDefinition): void {
    this.#units.set(nodeId, {
      definition,
      state: 'inactive',
      stopping: false,
      helpers: [],
      result: 'success',
      restarts: 0,
      limitBegin: 0,
      limitCount: 0,
    });
  }

  state(nodeId: string): UnitStatus {
    const unit = this.#unit(nodeId);
    const pid = unit.child?.pid;
    return {
      state: unit.state,
      ...(pid ? { pid } : {}),
      processes: pid ? [pid, ...unit.helpers] : [],
      lastExitCode: unit.lastExitCode,
    };
  }

  async command(nodeId: string, action: string): Promise<Answer> {
    const unit = this.#units.get(nodeId);
    if (unit === undefined) return { exitCode: 5, output: 'Unit nomad.service not found.' };
    switch (action) {
      case 'is-active':
        return { exitCode: unit.state === 'active' ? 0 : 3, output: unit.state };
      case 'start':
        return unit.state === 'active' ? { exitCode: 0, output: '' } : this.#start(unit);
      case 'stop':
        await this.#stop(unit);
        return { exitCode: 0, output: '' };
      case 'restart':
        await this.#stop(unit);
        return this.#start(unit);
      case 'show':
        return { exitCode: 0, output: '', properties: this.#properties(unit) };
      case 'reset-failed':
        unit.limitBegin = 0;
        unit.limitCount = 0;
        unit.result = 'success';
        if (unit.state === 'failed' && unit.child === undefined && unit.restartTimer === undefined) {
          unit.state = 'inactive';
        }
        return { exitCode: 0, output: '' };
      case 'reload':
        if (unit.state !== 'active' || unit.child === undefined) {
          return { exitCode: 1, output: 'nomad.service is not active, cannot reload.' };
        }
        unit.child.kill('SIGHUP');
        return { exitCode: 0, output: '' };
      default:
        return { exitCode: 1, output: `unsupported action ${action}` };
    }
  }

  /** Stop every unit; used when the world shuts down. */
  async stopAll(): Promise<void> {
    await Promise.all([...this.#units.values()].map((unit) => this.#stop(unit)));
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #properties(unit: Unit): Record<string, string> {
    const running = unit.child?.pid !== undefined;
    const subState = running
      ? 'running'
      : unit.restartTimer !== undefined
        ? 'auto-restart'
        : unit.state === 'failed'
          ? 'failed'
          : 'dead';
    return {
      MainPID: String(unit.child?.pid ?? 0),
      ActiveState: unit.state,
      SubState: subState,
      Result: unit.result,
      NRestarts: String(unit.restarts),
    };
  }

  /** systemd's ratelimit: a new interval begins once the last one is over; within one, `burst` starts. */
  #startAllowed(unit: Unit): boolean {
    const now = Date.now();
    if (unit.limitBegin === 0 || now - unit.limitBegin > START_LIMIT_INTERVAL_MS) {
      unit.limitBegin = now;
      unit.limitCount = 0;
    }
    if (unit.limitCount >= START_LIMIT_BURST) return false;
    unit.limitCount += 1;
    return true;
  }

  #start(unit: Unit): Promise<Answer> {
    clearTimeout(unit.restartTimer);
    unit.restartTimer = undefined;
    unit.stopping = false;
    if (!this.#startAllowed(unit)) {
      unit.state = 'failed';
      unit.result = 'start-limit-hit';
      return Promise.resolve({ exitCode: 1, output: START_LIMIT_HIT });
    }
    return new Promise((resolve) => {
      const child = fork(unit.definition.program, [unit.definition.configFile], {
        stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
      });
      unit.child = child;
      let ready = false;
      child.once('message', (message: ReadyMessage) => {
        ready = true;
        unit.helpers = message.processes;
        unit.state = 'active';
        resolve({ exitCode: 0, output: '' });
      });
      child.once('exit', (code) => {
        unit.child = undefined;
        unit.helpers = [];
        unit.lastExitCode = code;
        if (unit.stopping) {
          unit.state = 'inactive';
          unit.result = 'success';
        } else {
          unit.state = 'failed';
          unit.result = 'exit-code';
          unit.restartTimer = setTimeout(() => {
            unit.restarts += 1;
            void this.#start(unit);
          }, unit.definition.restartDelayMs);
        }
        if (!ready)
          resolve({
            exitCode: 1,
            output: 'Job for nomad.service failed because the control process exited with error code.',
          });
      });
    });
  }

  async #stop(unit: Unit): Promise<void> {
    clearTimeout(unit.restartTimer);
    unit.restartTimer = undefined;
    unit.stopping = true;
    const child = unit.child;
    if (child === undefined) {
      unit.state = 'inactive';
      return;
    }
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGINT');
    });
  }

  #unit(nodeId: string): Unit {
    const unit = this.#units.get(nodeId);
    if (unit === undefined) throw new Error(`no unit for ${nodeId}`);
    return unit;
  }
}
