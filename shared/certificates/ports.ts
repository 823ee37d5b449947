import type { ClusterConfig } from '../config';
import type { ProvisionedIdentity } from './identity';
import type { CertificateKind, CertificateNames, NodeRole } from './names';

/** A running node of a cluster: role and IP as EC2 reports them for the instance's provisioned identity. */
export interface ProvisionedNode {
  instanceId: string;
  role: NodeRole;
  ip: string;
}

/** A provisioned node with its SSM agent's state: `online` as SSM's ping status says. */
export interface InventoryNode extends ProvisionedNode {
  online: boolean;
}

export interface NodeInventory {
  list(cluster: ClusterConfig): Promise<InventoryNode[]>;
  /**
   * One instance's role and IP in `cluster` as its provisioning says right now; undefined when it is
   * not running as a node of the cluster (or matches both roles).
   */
  identify(cluster: ClusterConfig, instanceId: string): Promise<ProvisionedNode | undefined>;
}

/** An instance as EC2 describes it, for lifecycle events that name one instance. */
export interface DescribedInstance extends ProvisionedIdentity {
  instanceId: string;
  /** EC2's instance state name: pending, running, shutting-down, terminated, stopping, stopped. */
  state: string;
  ip?: string;
}

export interface InstanceDirectory {
  /** One instance, or undefined when EC2 does not know it (InvalidInstanceID.NotFound). */
  describe(instanceId: string): Promise<DescribedInstance | undefined>;
  /** Whether the instance's SSM agent is registered and Online. */
  online(instanceId: string): Promise<boolean>;
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
  | 'NodeRefused'
  | 'NodeReinstated'
  | 'RolloutStarted'
  | 'RolloutCompleted'
  | 'RolloutHalted'
  | 'EmergencyReissueStarted'
  | 'EmergencyReissueFinished'
  | 'GossipRotationStarted'
  | 'GossipKeyRotated'
  | 'GossipRotationHalted'
  | 'GossipRepairStarted'
  | 'GossipServerRepaired'
  | 'GossipRepairFinished'
  | 'GossipRepairHalted'
  | 'GossipRestartStarted'
  | 'GossipServerRestarted'
  | 'GossipRestartFinished'
  | 'GossipRestartHalted'
  | 'GossipEnableStarted'
  | 'GossipServerEncrypted'
  | 'GossipEncryptionEnabled'
  | 'GossipEnableHalted';

export interface EventPublisher {
  publish(type: RotationEventType, detail: Record<string, unknown>): Promise<void>;
}

export interface RotationTelemetry {
  pushSucceeded(cluster: string, role: NodeRole): void;
  pushFailed(cluster: string, role: NodeRole): void;
  rolloutStuck(cluster: string): void;
  /** A gossip key rotation halted (alarmed: GossipRotationFailed). */
  gossipRotationFailed(cluster: string): void;
  /** A node's provisioning did not allow the certificate its role asks for (alarmed). */
  nodeRefused(cluster: string, role: NodeRole): void;
  fleetExpiry(cluster: string, minHoursToExpiry: number | undefined, nodesExpiringSoon: number): void;
}
