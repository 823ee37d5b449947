import type { ClusterConfig } from '../config';
import type { CertificateKind, CertificateNames, NodeRole } from './names';

/** A node as SSM inventory reports it (DescribeInstanceInformation filtered by the cluster's tags). */
export interface InventoryNode {
  instanceId: string;
  role: NodeRole;
  ip: string;
  online: boolean;
}

export interface NodeInventory {
  list(cluster: ClusterConfig): Promise<InventoryNode[]>;
}

export interface IssuedCertificate {
  certificatePem: string;
  serial: string;
  notBefore: number;
  notAfter: number;
  /** Issuing CA first, root last, as Vault's ca_chain. */
  caChainPems: string[];
}

/** The CA chain nodes are told to trust, as the CA itself serves it. */
export interface TrustedChain {
  /** The issuing CA first, the root last. */
  pems: readonly string[];
  /** Whether the issuing CA signed this certificate (a stored leaf is checked before an install). */
  issued(certificatePem: string): Promise<boolean>;
}

export interface CertificateAuthority {
  /** Fails with a retryable error while the CA cannot sign (sealed Vault, outage). */
  assertReady(): Promise<void>;
  /** Read from the CA over its own verified connection, never from the state table. */
  trustedChain(): Promise<TrustedChain>;
  sign(request: {
    kind: CertificateKind;
    csrPem: string;
    names: CertificateNames;
    ttlSeconds: number;
  }): Promise<IssuedCertificate>;
  revoke(serial: string): Promise<void>;
}

export type RotationEventType =
  | 'CertificateRotated'
  | 'CertificatePushFailed'
  | 'NodeRetired'
  | 'RolloutStarted'
  | 'RolloutCompleted'
  | 'RolloutHalted'
  | 'EmergencyReissueStarted'
  | 'EmergencyReissueFinished';

export interface EventPublisher {
  publish(type: RotationEventType, detail: Record<string, unknown>): Promise<void>;
}

export interface RotationTelemetry {
  pushSucceeded(cluster: string, role: NodeRole): void;
  pushFailed(cluster: string, role: NodeRole): void;
  rolloutStuck(cluster: string): void;
  fleetExpiry(cluster: string, minHoursToExpiry: number | undefined, nodesExpiringSoon: number): void;
}
