import { randomUUID } from 'node:crypto';
import type { Clock } from '../../shared/clock';
import type { CommandDocument } from '../../shared/documents';
import type { ManagedNode } from '../fleet';
import { agentAcceptsParameters } from './ssm-agent';

export const ACCOUNT = '123456789012';
export const REGION = 'us-east-1';

/** Behaviour a test or the demo can change at runtime. */
export interface SsmKnobs {
  /** Delay before a delivered command starts on a node. */
  startLatencyMs: number;
  /** GetCommandInvocation answers InvocationDoesNotExist for this long after SendCommand (eventual consistency). */
  invocationVisibleAfterMs: number;
  /** How long an offline node's invocation waits before it is reported Undeliverable. */
  undeliverableAfterMs: number;
  /**
   * When set, an offline node's invocation waits for the node instead (Pending), runs if the node comes
   * back within this time, and otherwise ends TimedOut / DeliveryTimedOut, as when the command's
   * total timeout expires before the agent picks it up.
   */
  deliveryTimeoutMs?: number;
  /** Drop this many of the next events (EventBridge delivery of AWS service events is best effort). */
  dropNextEvents: number;
  /**
   * Runs just before a delivered script starts on a node: tests use it to tamper with the node, or to
   * corrupt the delivered script by returning a replacement.
   */
  beforeRun?: (run: {
    documentName: string;
    instanceId: string;
    script: string;
  }) => Promise<string | undefined> | string | undefined;
}

export interface AwsEvent {
  version: '0';
  id: string;
  'detail-type': string;
  source: string;
  account: string;
  time: string;
  region: string;
  resources: string[];
  detail: Record<string, unknown>;
}

export interface Invocation {
  commandId: string;
  instanceId: string;
  status: string;
  statusDetails: string;
  responseCode: number;
  stdout: string;
  stderr: string;
  requestedAt: number;
  visibleAt: number;
  startedAt?: number;
  endedAt?: number;
}

export interface Command {
  commandId: string;
  documentName: string;
  comment: string;
  parameters: Record<string, string[]>;
  instanceIds: string[];
  requestedAt: number;
  timeoutSeconds: number;
  status: string;
}

export const iso = (ms: number) => new Date(ms).toISOString();

const instanceArn = (id: string) => `arn:aws:ec2:${REGION}:${ACCOUNT}:instance/${id}`;

/**
 * The registered documents, the commands sent and their invocations, and the runs on the nodes
 * that move each invocation (and with it its command) through SSM's statuses, emitting the
 * status-change events as they go.
 */
export class CommandStore {
  readonly documents = new Map<string, CommandDocument>();
  readonly commands = new Map<string, Command>();
  /** By `<command id>/<instance id>`. */
  readonly invocations = new Map<string, Invocation>();
  readonly #running = new Set<Promise<void>>();
  /**
   * Every agent a command reaches checks the same parameters against the same document, so one
   * answer per command stands for all of them (a wave of 50 packed installs is 50 checks of ~30 KB).
   */
  readonly #agentAccepts = new WeakMap<Command, boolean>();

  constructor(
    private readonly options: {
      clock: Clock;
      knobs: SsmKnobs;
      events?: (event: AwsEvent) => void;
    },
  ) {}

  /** Records a validated command with a Pending invocation per node and starts delivering it. */
  send(command: Command, nodes: readonly ManagedNode[], script: string, scriptTimeout: number): void {
    this.commands.set(command.commandId, command);
    for (const node of nodes) {
      this.invocations.set(`${command.commandId}/${node.instanceId}`, {
        commandId: command.commandId,
        instanceId: node.instanceId,
        status: 'Pending',
        statusDetails: 'Pending',
        responseCode: -1,
        stdout: '',
        stderr: '',
        requestedAt: command.requestedAt,
        visibleAt: command.requestedAt + this.options.knobs.invocationVisibleAfterMs,
      });
      const run = this.#execute(command, node, script, scriptTimeout).finally(() =>
        this.#running.delete(run),
      );
      this.#running.add(run);
    }
  }

  /** Resolves once no invocation is running; true when something was still running at the call. */
  async idle(): Promise<boolean> {
    const busy = this.#running.size > 0;
    while (this.#running.size > 0) await Promise.all([...this.#running]);
    return busy;
  }

  #emit(detailType: string, resources: string[], detail: Record<string, unknown>): void {
    const { knobs, clock } = this.options;
    if (knobs.dropNextEvents > 0) {
      knobs.dropNextEvents -= 1;
      return;
    }
    this.options.events?.({
      version: '0',
      id: randomUUID(),
      'detail-type': detailType,
      source: 'aws.ssm',
      account: ACCOUNT,
      time: iso(clock.now()).replace(/\.\d{3}Z$/, 'Z'),
      region: REGION,
      resources,
      detail,
    });
  }

  #setInvocation(invocation: Invocation, status: string, statusDetails: string): void {
    invocation.status = status;
    invocation.statusDetails = statusDetails;
    const command = this.commands.get(invocation.commandId)!;
    this.#emit('EC2 Command Invocation Status-change Notification', [instanceArn(invocation.instanceId)], {
      'command-id': command.commandId,
      'document-name': command.documentName,
      'instance-id': invocation.instanceId,
      'requested-date-time': iso(command.requestedAt),
      status,
    });
    const all = command.instanceIds.map((id) => this.invocations.get(`${command.commandId}/${id}`)!);
    const next = all.every((each) => ['Success', 'Failed', 'TimedOut', 'Cancelled'].includes(each.status))
      ? all.every((each) => each.status === 'Success')
        ? 'Success'
        : 'Failed'
      : all.some((each) => each.status !== 'Pending')
        ? 'InProgress'
        : 'Pending';
    if (next !== command.status) {
      command.status = next;
      this.#emit('EC2 Command Status-change Notification', command.instanceIds.map(instanceArn), {
        'command-id': command.commandId,
        'document-name': command.documentName,
        'expire-after': iso(command.requestedAt + command.timeoutSeconds * 1000),
        parameters: command.parameters,
        'requested-date-time': iso(command.requestedAt),
        status: next,
      });
    }
  }

  #agentAcceptsParameters(command: Command): boolean {
    let accepts = this.#agentAccepts.get(command);
    if (accepts === undefined) {
      accepts = agentAcceptsParameters(this.documents.get(command.documentName)!, command.parameters);
      this.#agentAccepts.set(command, accepts);
    }
    return accepts;
  }

  async #execute(command: Command, node: ManagedNode, script: string, scriptTimeout: number): Promise<void> {
    const { knobs, clock } = this.options;
    const invocation = this.invocations.get(`${command.commandId}/${node.instanceId}`)!;
    await sleep(knobs.startLatencyMs);
    if (node.pingStatus() === 'Online' && !this.#agentAcceptsParameters(command)) {
      // The agent fails the whole document before any step runs: no output, no exit code.
      invocation.startedAt = clock.now();
      invocation.endedAt = clock.now();
      this.#setInvocation(invocation, 'Failed', 'Failed');
      return;
    }
    if (node.pingStatus() !== 'Online' && knobs.deliveryTimeoutMs !== undefined) {
      const giveUpAt = Date.now() + knobs.deliveryTimeoutMs;
      while (node.pingStatus() !== 'Online' && Date.now() < giveUpAt) await sleep(20);
      if (node.pingStatus() !== 'Online') {
        invocation.endedAt = clock.now();
        this.#setInvocation(invocation, 'TimedOut', 'DeliveryTimedOut');
        return;
      }
    } else if (node.pingStatus() !== 'Online') {
      await sleep(knobs.undeliverableAfterMs);
      if (node.pingStatus() !== 'Online') {
        invocation.endedAt = clock.now();
        this.#setInvocation(invocation, 'Failed', 'Undeliverable');
        return;
      }
    }
    invocation.startedAt = clock.now();
    this.#setInvocation(invocation, 'InProgress', 'InProgress');
    const delivered =
      (await knobs.beforeRun?.({
        documentName: command.documentName,
        instanceId: node.instanceId,
        script,
      })) ?? script;
    const result = await node.runScript({
      script: delivered,
      documentName: command.documentName,
      parameters: command.parameters,
      commandId: command.commandId,
      timeoutSeconds: scriptTimeout,
    });
    invocation.stdout = result.stdout;
    invocation.stderr = result.stderr;
    invocation.responseCode = result.exitCode;
    invocation.endedAt = clock.now();
    if (result.exitCode === 0) this.#setInvocation(invocation, 'Success', 'Success');
    else if (result.exitCode === 137 || result.timedOut)
      this.#setInvocation(invocation, 'TimedOut', 'ExecutionTimedOut');
    else this.#setInvocation(invocation, 'Failed', 'Failed');
  }
}

function sleep(ms: number): Promise<void> {
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}
