import type { x509 } from '../../shared/certificates/x509';
import type { KeyPair } from './pki-x509';
import { badRequest, bool, envelope, type PkiResult, VaultHttpError } from './protocol';

export interface Issuer {
  id: string;
  certificate: x509.X509Certificate;
  keys: KeyPair;
  chain: string[];
}

/**
 * A mount's issuers and config/issuers, the one sign/issue use: the first issuer stays the default
 * (storage.go importIssuer).
 */
export class IssuerSet {
  readonly #issuers: Issuer[] = [];
  #defaultIssuerId: string | undefined;
  #defaultFollowsLatestIssuer = false;

  get all(): readonly Issuer[] {
    return this.#issuers;
  }

  get default(): Issuer | undefined {
    return this.#issuers.find((issuer) => issuer.id === this.#defaultIssuerId);
  }

  /** A later issuer becomes the default only with default_follows_latest_issuer (default false). */
  add(issuer: Issuer): void {
    this.#issuers.push(issuer);
    if (this.#defaultIssuerId === undefined || this.#defaultFollowsLatestIssuer)
      this.#defaultIssuerId = issuer.id;
  }

  require(): Issuer {
    const issuer = this.default;
    if (issuer === undefined) {
      throw new VaultHttpError(
        500,
        'could not fetch the CA certificate (was one set?): no default issuer currently configured',
      );
    }
    return issuer;
  }

  writeDefault(body: Record<string, unknown>): PkiResult {
    if (body.default !== undefined) {
      const wanted = String(body.default);
      if (!this.#issuers.some((issuer) => issuer.id === wanted))
        throw badRequest(`unable to resolve issuer id for reference: ${wanted}`);
      this.#defaultIssuerId = wanted;
    }
    if (body.default_follows_latest_issuer !== undefined)
      this.#defaultFollowsLatestIssuer = bool(body.default_follows_latest_issuer, false);
    return this.defaultConfig();
  }

  defaultConfig(): PkiResult {
    return {
      body: envelope({
        data: {
          default: this.#defaultIssuerId ?? '',
          default_follows_latest_issuer: this.#defaultFollowsLatestIssuer,
        },
        mountType: 'pki',
      }),
    };
  }
}
