import { randomUUID } from 'node:crypto';
import { SSMClient } from '@aws-sdk/client-ssm';
import { RE2JS } from 're2js';
import { type Clock, systemClock } from '../../shared/clock';
import type { CommandDocument } from '../../shared/documents';
import type { Fleet, ManagedNode } from '../fleet';
import { AwsServiceError, JsonProtocolServer } from './json-protocol';

const ACCOUNT = '123456789012';
const REGION = 'us-east-1';
const STDOUT_LIMIT = 24_000;
const STDERR_LIMIT = 8_000;
const DOCUMENT_SIZE_LIMIT = 64 * 1024;
/** ListCommandInvocations with Details: each plugin's Output is cut to this many characters. */
const DETAILS_OUTPUT_LIMIT = 2_500;
const LIST_INVOCATIONS_PAGE = 50;
/** The agent's markers in a plugin's outputs (agent/framework/processor/executer/iohandler). */
const ERROR_TITLE = '\n----------ERROR-------\n';
const OUTPUT_TRUNCATED = '\n---Output truncated---';
const ERROR_TRUNCATED = '\n---Error truncated----';
const CONTENT_TRUNCATED = '--output truncated--';
/** The agent clamps a step's timeoutSeconds to this range and uses 3600 outside it. */
const STEP_TIMEOUT_MIN = 5;
const STEP_TIMEOUT_MAX = 172_800;
const STEP_TIMEOUT_DEFAULT = 3_600;
const INSTANCE_ID = /^(i-(\w{8}|\w{17})|mi-\w{17})$/;

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

interface Invocation {
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

interface Command {
  commandId: string;
  documentName: string;
  comment: string;
  parameters: Record<string, string[]>;
  instanceIds: string[];
  requestedAt: number;
  timeoutSeconds: number;
  status: string;
}

export type SsmEmulator = Awaited<ReturnType<typeof startSsmEmulator>>;

/**
 * SSM Run Command and inventory for the local world, spoken over the AWS JSON 1.1 protocol so the
 * product's real SSMClient calls it. Commands run on the fleet's managed nodes (real bash, real
 * openssl); statuses, limits, truncation and events follow what SSM documents (SSM API reference, and the agent's source for what it does on the node).
 */
export async function startSsmEmulator(options: {
  fleet: Fleet;
  clock?: Clock;
  events?: (event: AwsEvent) => void;
  knobs?: Partial<SsmKnobs>;
}) {
  const clock = options.clock ?? systemClock;
  const knobs: SsmKnobs = {
    startLatencyMs: 0,
    invocationVisibleAfterMs: 0,
    undeliverableAfterMs: 200,
    dropNextEvents: 0,
    ...options.knobs,
  };
  const documents = new Map<string, CommandDocument>();
  const commands = new Map<string, Command>();
  const invocations = new Map<string, Invocation>();
  const running = new Set<Promise<void>>();
  const iso = (ms: number) => new Date(ms).toISOString();

  const emit = (detailType: string, resources: string[], detail: Record<string, unknown>) => {
    if (knobs.dropNextEvents > 0) {
      knobs.dropNextEvents -= 1;
      return;
    }
    options.events?.({
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
  };
  const instanceArn = (id: string) => `arn:aws:ec2:${REGION}:${ACCOUNT}:instance/${id}`;

  const setInvocation = (invocation: Invocation, status: string, statusDetails: string) => {
    invocation.status = status;
    invocation.statusDetails = statusDetails;
    const command = commands.get(invocation.commandId)!;
    emit('EC2 Command Invocation Status-change Notification', [instanceArn(invocation.instanceId)], {
      'command-id': command.commandId,
      'document-name': command.documentName,
      'instance-id': invocation.instanceId,
      'requested-date-time': iso(command.requestedAt),
      status,
    });
    const all = command.instanceIds.map((id) => invocations.get(`${command.commandId}/${id}`)!);
    const next = all.every((each) => ['Success', 'Failed', 'TimedOut', 'Cancelled'].includes(each.status))
      ? all.every((each) => each.status === 'Success')
        ? 'Success'
        : 'Failed'
      : all.some((each) => each.status !== 'Pending')
        ? 'InProgress'
        : 'Pending';
    if (next !== command.status) {
      command.status = next;
      emit('EC2 Command Status-change Notification', command.instanceIds.map(instanceArn), {
        'command-id': command.commandId,
        'document-name': command.documentName,
        'expire-after': iso(command.requestedAt + command.timeoutSeconds * 1000),
        parameters: command.parameters,
        'requested-date-time': iso(command.requestedAt),
        status: next,
      });
    }
  };

  const execute = async (command: Command, node: ManagedNode, script: string, scriptTimeout: number) => {
    const invocation = invocations.get(`${command.commandId}/${node.instanceId}`)!;
    await sleep(knobs.startLatencyMs);
    if (
      node.pingStatus() === 'Online' &&
      !agentAcceptsParameters(documents.get(command.documentName)!, command.parameters)
    ) {
      // The agent fails the whole document before any step runs: no output, no exit code.
      invocation.startedAt = clock.now();
      invocation.endedAt = clock.now();
      setInvocation(invocation, 'Failed', 'Failed');
      return;
    }
    if (node.pingStatus() !== 'Online' && knobs.deliveryTimeoutMs !== undefined) {
      const giveUpAt = Date.now() + knobs.deliveryTimeoutMs;
      while (node.pingStatus() !== 'Online' && Date.now() < giveUpAt) await sleep(20);
      if (node.pingStatus() !== 'Online') {
        invocation.endedAt = clock.now();
        setInvocation(invocation, 'TimedOut', 'DeliveryTimedOut');
        return;
      }
    } else if (node.pingStatus() !== 'Online') {
      await sleep(knobs.undeliverableAfterMs);
      if (node.pingStatus() !== 'Online') {
        invocation.endedAt = clock.now();
        setInvocation(invocation, 'Failed', 'Undeliverable');
        return;
      }
    }
    invocation.startedAt = clock.now();
    setInvocation(invocation, 'InProgress', 'InProgress');
    const delivered =
      (await knobs.beforeRun?.({
        documentName: command.documentName,
        instanceId: node.instanceId,
        script,
      })) ?? script;
    const result = await node.runScript({
      script: delivered,
      commandId: command.commandId,
      timeoutSeconds: scriptTimeout,
    });
    invocation.stdout = result.stdout;
    invocation.stderr = result.stderr;
    invocation.responseCode = result.exitCode;
    invocation.endedAt = clock.now();
    if (result.exitCode === 0) setInvocation(invocation, 'Success', 'Success');
    else if (result.exitCode === 137 || result.timedOut)
      setInvocation(invocation, 'TimedOut', 'ExecutionTimedOut');
    else setInvocation(invocation, 'Failed', 'Failed');
  };

  const sendCommand = (input: Record<string, unknown>) => {
    const documentName = String(input.DocumentName ?? '');
    const document = documents.get(documentName);
    if (document === undefined)
      throw new AwsServiceError('InvalidDocument', `Document ${documentName} does not exist`);
    const instanceIds = (input.InstanceIds as string[] | undefined) ?? [];
    if (instanceIds.length === 0 || instanceIds.length > 50) {
      throw new AwsServiceError('ValidationException', 'instanceIds must contain between 1 and 50 items');
    }
    if (new Set(instanceIds).size !== instanceIds.length)
      throw new AwsServiceError('DuplicateInstanceId', 'Duplicate instance id');
    const nodes = instanceIds.map((id) => {
      const node = INSTANCE_ID.test(id) ? options.fleet.node(id) : undefined;
      if (node === undefined)
        throw new AwsServiceError(
          'InvalidInstanceId',
          `Instances [[${id}]] not in a valid state for account ${ACCOUNT}`,
        );
      return node;
    });
    const comment = String(input.Comment ?? '');
    if (comment.length > 100)
      throw new AwsServiceError('ValidationException', 'comment must be at most 100 characters');
    const timeoutSeconds = Number(input.TimeoutSeconds ?? 3600);
    if (!(timeoutSeconds >= 30 && timeoutSeconds <= 2_592_000)) {
      throw new AwsServiceError('ValidationException', 'timeoutSeconds must be between 30 and 2592000');
    }
    const parameters = validateParameters(document, (input.Parameters as Record<string, string[]>) ?? {});
    if (JSON.stringify(document).length + JSON.stringify(parameters).length > DOCUMENT_SIZE_LIMIT) {
      throw new AwsServiceError('MaxDocumentSizeExceeded', 'The size limit of a document is 64 KB');
    }
    const step = document.mainSteps[0];
    const substitute = (text: string) =>
      text.replace(/\{\{\s*(\w+)\s*\}\}/g, (_, name: string) => parameters[name]?.join(',') ?? '');
    const script = step.inputs.runCommand.map(substitute).join('\n');
    const scriptTimeout = agentStepTimeout(substitute(step.inputs.timeoutSeconds));
    const now = clock.now();
    const command: Command = {
      commandId: randomUUID(),
      documentName,
      comment,
      parameters,
      instanceIds,
      requestedAt: now,
      timeoutSeconds,
      status: 'Pending',
    };
    commands.set(command.commandId, command);
    for (const node of nodes) {
      invocations.set(`${command.commandId}/${node.instanceId}`, {
        commandId: command.commandId,
        instanceId: node.instanceId,
        status: 'Pending',
        statusDetails: 'Pending',
        responseCode: -1,
        stdout: '',
        stderr: '',
        requestedAt: now,
        visibleAt: now + knobs.invocationVisibleAfterMs,
      });
      const run = execute(command, node, script, scriptTimeout).finally(() => running.delete(run));
      running.add(run);
    }
    return { Command: describeCommand(command) };
  };

  const describeCommand = (command: Command) => ({
    CommandId: command.commandId,
    DocumentName: command.documentName,
    Comment: command.comment,
    Parameters: command.parameters,
    InstanceIds: command.instanceIds,
    RequestedDateTime: command.requestedAt / 1000,
    ExpiresAfter: (command.requestedAt + command.timeoutSeconds * 1000) / 1000,
    Status: command.status,
    TargetCount: command.instanceIds.length,
    TimeoutSeconds: command.timeoutSeconds,
  });

  const getCommandInvocation = (input: Record<string, unknown>) => {
    const invocation = invocations.get(`${input.CommandId}/${input.InstanceId}`);
    if (invocation === undefined || clock.now() < invocation.visibleAt) {
      throw new AwsServiceError('InvocationDoesNotExist', 'An error occurred (InvocationDoesNotExist)');
    }
    const command = commands.get(invocation.commandId)!;
    const finished = invocation.endedAt !== undefined;
    return {
      CommandId: command.commandId,
      InstanceId: invocation.instanceId,
      Comment: command.comment,
      DocumentName: command.documentName,
      PluginName: command.documentName ? documents.get(command.documentName)?.mainSteps[0].name : undefined,
      ResponseCode: invocation.responseCode,
      Status: invocation.status,
      StatusDetails: invocation.statusDetails,
      StandardOutputContent: finished ? keepPrefix(invocation.stdout, STDOUT_LIMIT) : '',
      StandardErrorContent: finished ? keepPrefix(invocation.stderr, STDERR_LIMIT) : '',
      ExecutionStartDateTime: invocation.startedAt ? iso(invocation.startedAt) : '',
      ExecutionEndDateTime: invocation.endedAt ? iso(invocation.endedAt) : '',
    };
  };

  const describeInstanceInformation = (input: Record<string, unknown>) => {
    const filters = (input.Filters as { Key: string; Values: string[] }[] | undefined) ?? [];
    const maxResults = Number(input.MaxResults ?? 50);
    if (maxResults < 5 || maxResults > 50)
      throw new AwsServiceError('ValidationException', 'MaxResults must be between 5 and 50');
    const matching = options.fleet.nodes().filter((node) =>
      filters.every(({ Key, Values }) => {
        if (Key.startsWith('tag:')) return Values.includes(node.tags[Key.slice(4)] ?? '\u0000');
        if (Key === 'PingStatus') return Values.includes(node.pingStatus());
        if (Key === 'InstanceIds') return Values.includes(node.instanceId);
        throw new AwsServiceError('InvalidInstanceInformationFilterValue', `unsupported filter key ${Key}`);
      }),
    );
    const start = Number(input.NextToken ?? 0);
    const page = matching.slice(start, start + maxResults);
    return {
      InstanceInformationList: page.map((node) => ({
        InstanceId: node.instanceId,
        PingStatus: node.pingStatus(),
        LastPingDateTime: clock.now() / 1000,
        AgentVersion: '3.3.1000.0',
        IsLatestVersion: true,
        PlatformType: 'Linux',
        PlatformName: 'Debian GNU/Linux',
        ResourceType: 'EC2Instance',
        IPAddress: node.ipAddress,
        ComputerName: node.computerName,
      })),
      ...(start + maxResults < matching.length ? { NextToken: String(start + maxResults) } : {}),
    };
  };

  const listCommandInvocations = (input: Record<string, unknown>) => {
    const maxResults = Number(input.MaxResults ?? LIST_INVOCATIONS_PAGE);
    if (!(maxResults >= 1 && maxResults <= LIST_INVOCATIONS_PAGE))
      throw new AwsServiceError(
        'ValidationException',
        `MaxResults must be between 1 and ${LIST_INVOCATIONS_PAGE}`,
      );
    const matching = [...invocations.values()]
      .filter((invocation) => (input.CommandId ? invocation.commandId === input.CommandId : true))
      .filter((invocation) => (input.InstanceId ? invocation.instanceId === input.InstanceId : true));
    const start = Number(input.NextToken ?? 0);
    const page = matching.slice(start, start + maxResults);
    return {
      CommandInvocations: page.map((invocation) => {
        const command = commands.get(invocation.commandId)!;
        return {
          CommandId: invocation.commandId,
          InstanceId: invocation.instanceId,
          DocumentName: command.documentName,
          Comment: command.comment,
          Status: invocation.status,
          StatusDetails: invocation.statusDetails,
          RequestedDateTime: invocation.requestedAt / 1000,
          ...(input.Details
            ? {
                CommandPlugins: [
                  {
                    Name: documents.get(command.documentName)?.mainSteps[0].name,
                    Status: invocation.status,
                    StatusDetails: invocation.statusDetails,
                    ResponseCode: invocation.responseCode,
                    Output: pluginOutput(invocation),
                    ...(invocation.startedAt ? { ResponseStartDateTime: invocation.startedAt / 1000 } : {}),
                    ...(invocation.endedAt ? { ResponseFinishDateTime: invocation.endedAt / 1000 } : {}),
                  },
                ],
              }
            : {}),
        };
      }),
      ...(start + maxResults < matching.length ? { NextToken: String(start + maxResults) } : {}),
    };
  };

  const listCommands = (input: Record<string, unknown>) => ({
    Commands: [...commands.values()]
      .filter((command) => (input.CommandId ? command.commandId === input.CommandId : true))
      .map(describeCommand),
  });

  const server = await JsonProtocolServer.start('AmazonSSM', {
    SendCommand: sendCommand,
    GetCommandInvocation: getCommandInvocation,
    ListCommandInvocations: listCommandInvocations,
    ListCommands: listCommands,
    DescribeInstanceInformation: describeInstanceInformation,
  });

  return {
    endpoint: server.endpoint,
    knobs,
    calls: server.calls,
    limiter: server.limiter,
    /** Every command sent, with its parameters, as ListCommands would show them (for secret scans). */
    history: () => [...commands.values()].map(describeCommand),
    client: (config: { maxAttempts?: number } = {}) =>
      new SSMClient({
        endpoint: server.endpoint,
        region: REGION,
        credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
        maxAttempts: config.maxAttempts ?? 3,
      }),
    registerDocument: (name: string, document: CommandDocument) => documents.set(name, document),
    /** Resolves once no invocation is running; true when something was still running at the call. */
    idle: async (): Promise<boolean> => {
      const busy = running.size > 0;
      while (running.size > 0) await Promise.all([...running]);
      return busy;
    },
    stop: async () => {
      while (running.size > 0) await Promise.all([...running]);
      await server.stop();
    },
  };
}

/** SSM checks every value against the parameter's allowedPattern as a full match (Java `matches`). */
function validateParameters(
  document: CommandDocument,
  given: Record<string, string[]>,
): Record<string, string[]> {
  const result: Record<string, string[]> = {};
  for (const name of Object.keys(given)) {
    if (!(name in document.parameters))
      throw new AwsServiceError('InvalidParameters', `Parameter "${name}" is not defined in the document.`);
  }
  for (const [name, spec] of Object.entries(document.parameters)) {
    const values = given[name] ?? (spec.default === undefined ? undefined : [spec.default]);
    if (values === undefined)
      throw new AwsServiceError('InvalidParameters', `Required parameter "${name}" is missing.`);
    const pattern = new RegExp(`^(?:${spec.allowedPattern})$`);
    for (const value of values) {
      if (typeof value !== 'string' || !pattern.test(value)) {
        throw new AwsServiceError(
          'InvalidParameters',
          `Parameter "${name}" "failed to satisfy constraint: Member must satisfy regular expression pattern: ${spec.allowedPattern}"`,
        );
      }
    }
    result[name] = values;
  }
  return result;
}

/**
 * The agent compiles every parameter's allowedPattern with Go's regexp (RE2) and checks each value
 * against it before the document runs (allowedregexparamvalidator.go). One pattern RE2 cannot compile,
 * such as a repeat count above 1000, fails the whole document.
 */
function agentAcceptsParameters(document: CommandDocument, parameters: Record<string, string[]>): boolean {
  for (const [name, spec] of Object.entries(document.parameters)) {
    let pattern: RE2JS;
    try {
      pattern = RE2JS.compile(spec.allowedPattern);
    } catch {
      return false;
    }
    for (const value of parameters[name] ?? []) if (!pattern.matcher(value).find()) return false;
  }
  return true;
}

/** The agent's step timeout: timeoutSeconds clamped to 5–172800 s, 3600 when outside or not a number. */
function agentStepTimeout(text: string): number {
  const seconds = Number(text);
  return Number.isInteger(seconds) && seconds >= STEP_TIMEOUT_MIN && seconds <= STEP_TIMEOUT_MAX
    ? seconds
    : STEP_TIMEOUT_DEFAULT;
}

/** The agent keeps the head of a long output, ending it with a marker, within the limit. */
function keepPrefix(output: string, limit: number): string {
  return output.length < limit
    ? output
    : `${output.slice(0, limit - CONTENT_TRUNCATED.length)}${CONTENT_TRUNCATED}`;
}

/**
 * A plugin's Output in ListCommandInvocations, as the agent composes it within 2,500 characters:
 * stdout, then (if any) the error title and stderr; when they do not fit, the longer part or both
 * are cut and marked.
 */
function pluginOutput(invocation: { stdout: string; stderr: string; endedAt?: number }): string {
  if (invocation.endedAt === undefined) return '';
  const { stdout, stderr } = invocation;
  const title = stderr === '' ? '' : ERROR_TITLE;
  const space = DETAILS_OUTPUT_LIMIT - title.length;
  if (stdout.length + stderr.length < space) return `${stdout}${title}${stderr}`;
  if (stdout.length > space / 2 && stderr.length > space / 2) {
    const half = Math.floor((space - ERROR_TRUNCATED.length - OUTPUT_TRUNCATED.length) / 2);
    return `${stdout.slice(0, half)}${OUTPUT_TRUNCATED}${title}${stderr.slice(0, half)}${ERROR_TRUNCATED}`;
  }
  if (stdout.length <= space / 2) {
    return `${stdout}${title}${stderr.slice(0, space - ERROR_TRUNCATED.length - stdout.length)}${ERROR_TRUNCATED}`;
  }
  return `${stdout.slice(0, space - OUTPUT_TRUNCATED.length - stderr.length)}${OUTPUT_TRUNCATED}${title}${stderr}`;
}

function sleep(ms: number): Promise<void> {
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}
