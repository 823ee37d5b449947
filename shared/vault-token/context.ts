import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { AwsCredentialIdentityProvider } from '@smithy/types';
import type { ClusterConfig } from '../config';
import type { Logger } from '../logger';
import { PowertoolsTokenRotationTelemetry } from '../observability';
import type { Runtime } from '../runtime';
import { awsIamLogin, type VaultLogin } from '../vault/aws-login';
import { VaultClient } from '../vault/client';

export interface TokenRotationTelemetry {
  tokenRotationFailed(cluster: string): void;
}

export interface TokenRotationContext {
  secrets: SecretsManagerClient;
  clusters: readonly ClusterConfig[];
  logger: Logger;
  telemetry: TokenRotationTelemetry;
  /** A Vault client without a token source: every call in the rotation names the token it uses. */
  vaultFor(cluster: ClusterConfig): VaultClient;
  /** A short-lived admin token from Vault's AWS auth method. */
  adminLogin(cluster: ClusterConfig, vault: VaultClient): Promise<VaultLogin>;
}

/** Build the rotation's dependencies from the handler runtime; credentials and telemetry are injectable. */
export function tokenRotationContext(
  runtime: Runtime,
  overrides: {
    credentials?: AwsCredentialIdentityProvider;
    telemetry?: TokenRotationTelemetry;
    vaultAttempts?: number;
  } = {},
): TokenRotationContext {
  return {
    secrets: runtime.clients.secretsManager,
    clusters: runtime.config.clusters,
    logger: runtime.logger,
    telemetry: overrides.telemetry ?? new PowertoolsTokenRotationTelemetry(),
    vaultFor: ({ vault }) =>
      new VaultClient({
        address: vault.address,
        timeoutMs: vault.requestTimeoutMs,
        ...(vault.caBundlePem ? { caBundlePem: vault.caBundlePem } : {}),
        ...(vault.namespace ? { namespace: vault.namespace } : {}),
        ...(overrides.vaultAttempts ? { attempts: overrides.vaultAttempts } : {}),
      }),
    adminLogin: ({ vault: { tokenRotation } }, client) =>
      awsIamLogin(client, {
        mount: tokenRotation.adminAuthMount,
        role: tokenRotation.adminRole,
        clock: runtime.clock,
        ...(tokenRotation.iamServerIdHeader ? { serverIdHeader: tokenRotation.iamServerIdHeader } : {}),
        sts: { endpoint: tokenRotation.stsEndpoint, region: tokenRotation.stsRegion },
        ...(overrides.credentials ? { credentials: overrides.credentials } : {}),
      }),
  };
}
