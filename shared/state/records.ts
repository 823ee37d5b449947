import type { NodeRole } from '../certificates/names';

/** A node from the rotator's point of view; what a rollout is doing with it lives on its attempt. */
export type NodeStatus =
  /** Holds a working certificate set (or none yet). */
  | 'idle'
  /** Its last certificate attempt failed; the node kept its previous working set and waits for nextAttemptAt. */
  | 'failed'
  /** The instance is terminated; its serials were revoked. */
  | 'retired'
  /**
   * Its provisioning makes it a server but the cluster's server set has no room for it; it gets no
   * certificate until a server leaves (lastError says why).
   */
  | 'refused';

export type ReloadMode = 'reload' | 'restart';

export interface CertificateFacts {
  serial: string;
  notBefore: number;
  notAfter: number;
}

/**
 * Public material signed for a node, kept until its install runs. Never a private key, and never
 * the CA chain: what nodes are told to trust is read from Vault when the install is built.
 */
export interface SignedSet {
  agentCertificatePem: string;
  cliCertificatePem: string;
  agent: CertificateFacts;
  cli: CertificateFacts;
}

export interface NodeRecord {
  cluster: string;
  instanceId: string;
  role: NodeRole;
  ip: string;
  status: NodeStatus;
  agent?: CertificateFacts;
  cli?: CertificateFacts;
  /** Last SSM ping status seen in inventory; commands are only sent to Online nodes. */
  ping?: 'Online' | 'ConnectionLost';
  /** Failed attempts in a row; reset by a success. */
  failures: number;
  nextAttemptAt?: number;
  lastError?: string;
  lastAction?: string;
  lastActionAt?: number;
  version: number;
  updatedAt: number;
}

export interface AuditEntry {
  cluster: string;
  at: number;
  id: string;
  action: string;
  actor: string;
  reason?: string;
  instanceId?: string;
  rolloutId?: string;
  role?: NodeRole;
  /** The rollout group of the target (the certificate plan's: server or client). */
  group?: string;
  details?: Record<string, string | number | boolean>;
}
