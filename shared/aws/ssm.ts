import {
  GetCommandInvocationCommand,
  InvocationDoesNotExist,
  ListCommandInvocationsCommand,
  SendCommandCommand,
  type SSMClient,
} from '@aws-sdk/client-ssm';
import { type DocumentKind, type DocumentParameters, validateDocumentParameters } from '../documents';
import { ValidationError } from '../errors';
import { matchesPattern } from '../patterns';
import type { CommandGateway, InvocationListing, InvocationOutcome } from './ports';

const RUNNING_STATUSES = new Set(['Pending', 'InProgress', 'Delayed']);
const MAX_TARGETS = 50;
const MAX_COMMENT = 100;
const CLOCK_SKEW_MS = 5 * 60_000;
/** Where the agent starts stderr in a plugin's Output, and how it marks a cut (amazon-ssm-agent iohandler). */
const ERROR_TITLE = '\n----------ERROR-------\n';
const TRUNCATION_MARKS = ['---Output truncated---', '---Error truncated----', '--output truncated--'];

export type DocumentNames = Record<DocumentKind, string>;

/** A one-step document's stdout from a listed plugin Output (stderr follows the agent's title); undefined when cut. */
function wholeStdout(plugins: readonly { Output?: string }[]): string | undefined {
  if (plugins.length !== 1) return undefined;
  const output = plugins[0]!.Output ?? '';
  const titleAt = output.indexOf(ERROR_TITLE);
  const stdout = titleAt === -1 ? output : output.slice(0, titleAt);
  return TRUNCATION_MARKS.some((mark) => stdout.includes(mark)) ? undefined : stdout;
}

/** An invocation's SSM status and stdout as the outcome the rotator judges. */
function outcomeOf(status: string, stdout: string, statusDetails: string | undefined): InvocationOutcome {
  if (RUNNING_STATUSES.has(status)) return { state: 'running' };
  if (status === 'Success') return { state: 'succeeded', stdout };
  return { state: 'failed', detail: statusDetails ?? status, stdout };
}

/** Run Command through SSM: validated parameters, one command per batch, outcomes per invocation. */
export class SsmCommandGateway implements CommandGateway {
  constructor(
    private readonly ssm: SSMClient,
    private readonly documents: DocumentNames,
    private readonly deliveryTimeoutSeconds = 600,
  ) {}

  async send<Kind extends DocumentKind>(
    kind: Kind,
    instanceIds: readonly string[],
    parameters: DocumentParameters<Kind>,
    comment: string,
  ): Promise<string> {
    const issues: string[] = [];
    if (instanceIds.length === 0 || instanceIds.length > MAX_TARGETS)
      issues.push(`instanceIds: 1 to ${MAX_TARGETS} allowed`);
    for (const id of instanceIds)
      if (!matchesPattern('instanceId', id)) issues.push(`instanceIds: ${id} is not an instance id`);
    if (comment.length > MAX_COMMENT) issues.push(`comment: at most ${MAX_COMMENT} characters`);
    if (issues.length > 0) throw new ValidationError(`invalid ${kind} command`, issues);
    const { Command } = await this.ssm.send(
      new SendCommandCommand({
        DocumentName: this.documents[kind],
        InstanceIds: [...instanceIds],
        Parameters: validateDocumentParameters(kind, parameters),
        Comment: comment,
        TimeoutSeconds: this.deliveryTimeoutSeconds,
        // Each node stands alone: one node's failure must not stop the others of the batch.
        MaxErrors: '100%',
        MaxConcurrency: '50',
      }),
    );
    if (!Command?.CommandId) throw new Error('SendCommand returned no command id');
    return Command.CommandId;
  }

  async findSent(instanceId: string, comment: string, since: number): Promise<string | undefined> {
    // SendCommand's RequestedDateTime is SSM's clock, ours may be a little ahead of it.
    const after = new Date(since - CLOCK_SKEW_MS).toISOString().replace(/\.\d{3}Z$/, 'Z');
    let nextToken: string | undefined;
    do {
      const page = await this.ssm.send(
        new ListCommandInvocationsCommand({
          InstanceId: instanceId,
          Filters: [{ key: 'InvokedAfter', value: after }],
          MaxResults: 50,
          NextToken: nextToken,
        }),
      );
      const match = page.CommandInvocations?.find((invocation) => invocation.Comment === comment);
      if (match?.CommandId) return match.CommandId;
      nextToken = page.NextToken;
    } while (nextToken !== undefined);
    return undefined;
  }

  /**
   * ListCommandInvocations with details, 50 a page: one call for a whole batch instead of one
   * GetCommandInvocation per node, and the comment with it. Its Output holds at most 2,500
   * characters of stdout, then stderr after the agent's error title; a stdout cut short (or a
   * document of several steps) is named as cut instead, so that the caller reads that node alone and
   * never judges a truncated line.
   */
  async invocations(commandId: string): Promise<InvocationListing> {
    const listing: InvocationListing = { results: new Map(), cut: [] };
    let nextToken: string | undefined;
    do {
      const page = await this.ssm.send(
        new ListCommandInvocationsCommand({
          CommandId: commandId,
          Details: true,
          MaxResults: 50,
          NextToken: nextToken,
        }),
      );
      for (const invocation of page.CommandInvocations ?? []) {
        if (invocation.InstanceId === undefined) continue;
        listing.comment ??= invocation.Comment;
        const status = invocation.Status ?? 'Pending';
        const stdout = RUNNING_STATUSES.has(status) ? '' : wholeStdout(invocation.CommandPlugins ?? []);
        if (stdout === undefined) listing.cut.push(invocation.InstanceId);
        else listing.results.set(invocation.InstanceId, outcomeOf(status, stdout, invocation.StatusDetails));
      }
      nextToken = page.NextToken;
    } while (nextToken !== undefined);
    return listing;
  }

  async invocation(commandId: string, instanceId: string): Promise<InvocationOutcome & { comment?: string }> {
    try {
      const result = await this.ssm.send(
        new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: instanceId }),
      );
      const status = result.Status ?? 'Pending';
      return {
        ...outcomeOf(status, result.StandardOutputContent ?? '', result.StatusDetails),
        comment: result.Comment,
      };
    } catch (error) {
      // Right after SendCommand, and for unknown ids, SSM answers InvocationDoesNotExist.
      if (error instanceof InvocationDoesNotExist) return { state: 'missing' };
      throw error;
    }
  }
}
