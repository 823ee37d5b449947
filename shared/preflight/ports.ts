import type { InventoryNode } from '../certificates/ports';
import type { ClusterConfig } from '../config';
import { RotatorError } from '../errors';

/**
 * The caller may not read the rotator's token: the stack's resource policy lets only its functions
 * read it, so an operator role is refused by design and the token's own checks cannot run.
 */
export class TokenUnreadableError extends RotatorError {}

/** What the doctor asks Vault, each call over the cluster's pinned TLS. */
export interface VaultProbe {
  health(): Promise<{ initialized: boolean; sealed: boolean; standby: boolean }>;
  /** lookup-self with the rotator's token: its remaining TTL in seconds (0 for a token that never expires). */
  tokenTtlSeconds(): Promise<number>;
  /** sys/capabilities-self with the rotator's token, for each path. */
  capabilities(paths: readonly string[]): Promise<Record<string, readonly string[]>>;
  /** When the mount's issuing CA expires, in ms. */
  issuerNotAfter(): Promise<number>;
}

export interface StoredDocument {
  /** The default version's content, parsed. */
  content: unknown;
  version: string;
  status: string;
}

export interface DocumentReader {
  /** The document's default version; undefined when no document has the name. */
  get(name: string): Promise<StoredDocument | undefined>;
}

export interface NodeLister {
  list(cluster: ClusterConfig): Promise<InventoryNode[]>;
}

export type TriggerState = 'ENABLED' | 'DISABLED';

export interface TriggerReader {
  /** An EventBridge Scheduler schedule's state; undefined when there is none of the name. */
  schedule(name: string, group: string): Promise<TriggerState | undefined>;
  /** An EventBridge rule's state on the default bus; undefined when there is none of the name. */
  rule(name: string): Promise<TriggerState | undefined>;
}

export interface AlarmReader {
  /** The alarms in ALARM whose name starts with the prefix. */
  inAlarm(prefix: string): Promise<{ name: string; reason: string }[]>;
}

export interface QueueReader {
  /** ApproximateNumberOfMessages: the messages waiting, visible ones. */
  depth(queueUrl: string): Promise<number>;
}
