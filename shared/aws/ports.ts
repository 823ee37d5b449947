import type { DocumentKind, DocumentParameters } from '../documents';

export type InvocationOutcome =
  | { state: 'running' }
  | { state: 'missing' }
  | { state: 'succeeded'; stdout: string }
  | { state: 'failed'; detail: string; stdout: string };

/** One command's invocations as a single listing reads them. */
export interface InvocationListing {
  /** The command's comment, which every invocation carries: its routing key, for a command of ours. */
  comment?: string;
  /** Each target's outcome, where its output came whole. */
  results: Map<string, InvocationOutcome>;
  /** Targets whose output the listing cut: each is read alone. */
  cut: string[];
}

export interface CommandGateway {
  /** Send one document to up to 50 instances; returns the command id. Parameters are validated first. */
  send<Kind extends DocumentKind>(
    kind: Kind,
    instanceIds: readonly string[],
    parameters: DocumentParameters<Kind>,
    comment: string,
  ): Promise<string>;
  invocation(commandId: string, instanceId: string): Promise<InvocationOutcome & { comment?: string }>;
  /**
   * One command's invocations listed (50 a call): the outcomes whose output came whole, the
   * targets to read alone and the comment.
   */
  invocations(commandId: string): Promise<InvocationListing>;
  /** The id of a command sent to `instanceId` with this comment no earlier than `since` (epoch ms). */
  findSent(instanceId: string, comment: string, since: number): Promise<string | undefined>;
}
