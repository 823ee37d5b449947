import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { z } from 'zod';
import type { Clock } from '../clock';
import type { ClusterConfig } from '../config';
import { ValidationError } from '../errors';
import type { TokenSource, VaultClient } from '../vault/client';

/** What the token secret holds (AWSCURRENT / AWSPENDING / AWSPREVIOUS). Never logged. */
export const tokenSecretSchema = z.strictObject({
  token: z.string().min(8),
  accessor: z.string().min(8),
});
export type TokenSecret = z.output<typeof tokenSecretSchema>;

/** The cluster's token role, which alone decides what the admin can mint (vault-bootstrap creates it). */
export function tokenRoleName(cluster: Pick<ClusterConfig, 'name' | 'vault'>): string {
  return cluster.vault.tokenRotation.tokenRole ?? `nomad-rotator-${cluster.name}`;
}

export function parseTokenSecret(secretString: string | undefined, secretId: string): TokenSecret {
  let json: unknown;
  try {
    json = JSON.parse(secretString ?? '');
  } catch {
    throw new ValidationError(`secret ${secretId} does not hold JSON`);
  }
  const parsed = tokenSecretSchema.safeParse(json);
  if (!parsed.success) throw new ValidationError(`secret ${secretId} must hold {token, accessor}`);
  return parsed.data;
}

/**
 * The issuing functions' Vault token: AWSCURRENT of the token secret, cached briefly (a Lambda
 * container reuses it across invocations), re-read after a 403 because the rotation may have moved
 * AWSCURRENT since we cached it.
 */
export class SecretsManagerTokenSource implements TokenSource {
  #cached: { secret: TokenSecret; readAt: number } | undefined;

  constructor(
    private readonly secrets: SecretsManagerClient,
    private readonly secretId: string,
    private readonly clock: Clock,
    private readonly cacheMs = 60_000,
  ) {}

  async token(): Promise<string> {
    return (await this.current()).token;
  }

  async current(): Promise<TokenSecret> {
    const now = this.clock.now();
    if (this.#cached === undefined || now - this.#cached.readAt > this.cacheMs) {
      const { SecretString } = await this.secrets.send(
        new GetSecretValueCommand({ SecretId: this.secretId, VersionStage: 'AWSCURRENT' }),
      );
      this.#cached = { secret: parseTokenSecret(SecretString, this.secretId), readAt: now };
    }
    return this.#cached.secret;
  }

  invalidate(): void {
    this.#cached = undefined;
  }
}

interface LookupSelf {
  data: { ttl: number; period?: number; policies: string[]; renewable?: boolean };
}

/**
 * Keep a periodic token alive: renew-self when less than half of its period remains. A periodic
 * token's TTL resets to the period on every renewal, so a consumer that runs at least once per half
 * period never lets it lapse, even if the rotation schedule stalls.
 */
export async function renewIfDue(
  vault: VaultClient,
  token: string,
): Promise<{ renewed: boolean; ttl: number }> {
  const { data } = await vault.read<LookupSelf>('auth/token/lookup-self', token);
  const period = data.period ?? 0;
  if (period > 0 && data.ttl < period / 2) {
    const renewed = await vault.write<{ auth: { lease_duration: number } }>(
      'auth/token/renew-self',
      {},
      token,
    );
    return { renewed: true, ttl: renewed.auth.lease_duration };
  }
  return { renewed: false, ttl: data.ttl };
}
