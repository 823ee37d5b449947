import type { NodeRole } from '../certs/names';

/** What a node is doing from the rotator's point of view. */
export type NodeStatus =
  /** Holds a working certificate set (or none yet) and has nothing in flight. */
  | 'idle'
  /** A prepare command (fresh key + CSR on the node) is in flight. */
  | 'preparing'
  /** Certificates are signed and waiting for the node's wave to install them. */
  | 'signed'
  /** An install command (verify, write, reload, prove) is in flight. */
  | 'installing'
  /** The last attempt failed; the node kept its previous working set and waits for nextAttemptAt. */
  | 'failed'
  /** The instance is terminated; its serials were revoked. */
  | 'retired';

export type ReloadMode = 'reload' | 'restart';

export interface CertificateFacts {
  serial: string;
  notBefore: number;
  notAfter: number;
}

/** Public material signed for a node, kept until its install runs. Never a private key. */
export interface SignedSet {
  agentCertificatePem: string;
  cliCertificatePem: string;
  chainPem: string;
  caBundlePem: string;
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
  rolloutId?: string;
  /** Attempts made for rolloutId; a rollout halts when one of its nodes runs out of attempts. */
  rolloutAttempts?: number;
  /** The rollout this node's current certificate set was installed by. */
  completedRolloutId?: string;
  /** Identifies one prepare→install attempt; events and reconciles for another attempt are ignored. */
  attemptId?: string;
  commandId?: string;
  dispatchedAt?: number;
  mode?: ReloadMode;
  signed?: SignedSet;
  /** Serials this attempt replaces, revoked once the install is proven (emergency reissue). */
  revokeAfterInstall?: string[];
  /** Failed attempts in a row; reset by a success. */
  failures: number;
  nextAttemptAt?: number;
  lastError?: string;
  lastAction?: string;
  lastActionAt?: number;
  version: number;
  updatedAt: number;
}

export type RolloutKind = 'rotate' | 'emergency';
export type RolloutStatus = 'running' | 'completed' | 'halted' | 'superseded';

export interface Wave {
  role: NodeRole;
  instanceIds: string[];
}

export interface RolloutRecord {
  cluster: string;
  rolloutId: string;
  kind: RolloutKind;
  mode: ReloadMode;
  revokePrevious: boolean;
  reason: string;
  requestedBy: string;
  waves: Wave[];
  currentWave: number;
  status: RolloutStatus;
  haltReason?: string;
  createdAt: number;
  updatedAt: number;
  version: number;
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
  details?: Record<string, string | number | boolean>;
}
