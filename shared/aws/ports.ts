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
  /** The id of a command sent to `instanceId` with this comment no earlier than `since` (epoch ms). */
  findSent(instanceId: string, comment: string, since: number): Promise<string | undefined>;
}
