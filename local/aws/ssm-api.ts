import { randomUUID } from 'node:crypto';
import type { Clock } from '../../shared/clock';
import type { CommandDocument } from '../../shared/documents';
import type { Fleet } from '../fleet';
import { AwsServiceError, type Operation } from './json-protocol';
import { agentStepTimeout, keepPrefix, pluginOutput, STDERR_LIMIT, STDOUT_LIMIT } from './ssm-agent';
import { ACCOUNT, type Command, type CommandStore, iso } from './ssm-commands';

const DOCUMENT_SIZE_LIMIT = 64 * 1024;
const LIST_INVOCATIONS_PAGE = 50;
const INSTANCE_ID = /^(i-(\w{8}|\w{17})|mi-\w{17})$/;

/** A command as SendCommand and ListCommands return it. */
export const describeCommand = (command: Command) => ({
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

/** The SSM operations the product calls, with the service's validation and paging. */
export function ssmOperations({
  store,
  fleet,
  clock,
}: {
  store: CommandStore;
  fleet: Fleet;
  clock: Clock;
}): Record<string, Operation> {
  const { documents, commands, invocations } = store;

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
      const node = INSTANCE_ID.test(id) ? fleet.node(id) : undefined;
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
    store.send(command, nodes, script, scriptTimeout);
    return { Command: describeCommand(command) };
  };

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
    // Asking for an id that is no managed node fails the whole request, as SSM documents.
    const unknown = filters
      .filter(({ Key }) => Key === 'InstanceIds')
      .flatMap(({ Values }) => Values)
      .filter((id) => fleet.node(id) === undefined);
    if (unknown.length > 0)
      throw new AwsServiceError(
        'InvalidInstanceId',
        `Instances [${unknown.join(', ')}] are not managed nodes`,
      );
    const matching = fleet.nodes().filter((node) =>
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
    const invokedAfter = invokedAfterFilter(input.Filters);
    const matching = [...invocations.values()]
      .filter((invocation) => (input.CommandId ? invocation.commandId === input.CommandId : true))
      .filter((invocation) => (input.InstanceId ? invocation.instanceId === input.InstanceId : true))
      .filter((invocation) => invokedAfter === undefined || invocation.requestedAt >= invokedAfter);
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

  return {
    SendCommand: sendCommand,
    GetCommandInvocation: getCommandInvocation,
    ListCommandInvocations: listCommandInvocations,
    ListCommands: listCommands,
    DescribeInstanceInformation: describeInstanceInformation,
  };
}

/**
 * The one CommandFilter the product sends: `InvokedAfter` with an ISO 8601 UTC time such as
 * 2026-12-02T12:00:00Z. Other keys and malformed values are refused, as SSM refuses them.
 */
function invokedAfterFilter(filters: unknown): number | undefined {
  if (filters === undefined) return undefined;
  const list = Array.isArray(filters) ? (filters as { key?: unknown; value?: unknown }[]) : [];
  let after: number | undefined;
  for (const filter of list) {
    const at = typeof filter.value === 'string' ? Date.parse(filter.value) : Number.NaN;
    if (
      filter.key !== 'InvokedAfter' ||
      !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/.test(String(filter.value)) ||
      Number.isNaN(at)
    )
      throw new AwsServiceError(
        'InvalidFilterKey',
        `The filter ${JSON.stringify(filter)} is not supported here.`,
      );
    after = at;
  }
  if (list.length === 0) throw new AwsServiceError('ValidationException', 'Filters must not be empty');
  return after;
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
