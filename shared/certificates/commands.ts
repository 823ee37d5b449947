import type { CertificateFacts, ReloadMode } from '../state/records';
import type { NodeRole } from './names';

/** The certificate pair signed for one node, public material only. */
export interface SignedPair {
  agentCertificatePem: string;
  cliCertificatePem: string;
}

export interface InstallRequest {
  attemptId: string;
  role: NodeRole;
  mode: ReloadMode;
  /** Intermediates for the agent's chain, or the CA when there are none. */
  chainPem: string;
  caBundlePem: string;
  /** One pair per target; each node finds its own by its pending key. */
  pairs: readonly SignedPair[];
}

export interface PreparedOutput {
  attemptId: string;
  agentCsrDerBase64: string;
  cliCsrDerBase64: string;
}

export interface InstalledOutput {
  attemptId: string;
  action: 'reload' | 'restart' | 'none';
  agent: CertificateFacts;
}

/**
 * The certificate steps as the plan means them. The adapter behind it knows how they travel to a
 * node (document parameters, target and size limits) and how a node answers.
 */
export interface CertificateCommands {
  /** Groups of targets that one prepare command may carry. */
  prepareBatches(targets: readonly string[]): string[][];
  prepare(targets: readonly string[], attemptId: string, routingKey: string): Promise<string>;
  /**
   * Groups of installs that fit one command each, with everything else the request carries. An
   * install whose own pair is too big still gets a group of its own, which `install` then refuses.
   */
  installBatches<Item extends { pair: SignedPair }>(
    items: readonly Item[],
    request: Omit<InstallRequest, 'pairs' | 'attemptId'>,
  ): Item[][];
  install(targets: readonly string[], request: InstallRequest, routingKey: string): Promise<string>;
  readPrepared(stdout: string): PreparedOutput | undefined;
  readInstalled(stdout: string): InstalledOutput | undefined;
  /** A short, secret-free reason for a failed command. */
  failureReason(stdout: string, detail: string): string;
}
