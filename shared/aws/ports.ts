import type { DocumentKind, DocumentParameters } from '../documents';

export type InvocationOutcome =
  | { state: 'running' }
  | { state: 'missing' }
  | { state: 'succeeded'; stdout: string }
  | { state: 'failed'; detail: string; stdout: string };

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
   * Each instance's outcome of one command whose output came whole in the list (50 a call); a
   * gateway without it is read one invocation at a time.
   */
  invocations?(commandId: string): Promise<Map<string, InvocationOutcome>>;
  /** The id of a command sent to `instanceId` with this comment no earlier than `since` (epoch ms). */
  findSent(instanceId: string, comment: string, since: number): Promise<string | undefined>;
}
