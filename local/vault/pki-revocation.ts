import type { x509 } from '../../shared/certificates/x509';
import type { Clock } from '../../shared/clock';
import type { IssuerSet } from './pki-issuers';
import { createCrl, pem } from './pki-x509';
import { badRequest, bool, envelope, NOT_FOUND, type PkiResult, rfc3339Nano, seconds } from './protocol';

/** The subset of config/auto-tidy (path_tidy.go) the product writes, with Vault's defaults. */
const AUTO_TIDY_DEFAULTS = {
  enabled: false,
  interval_duration: 12 * 3600,
  tidy_cert_store: false,
  tidy_revoked_certs: false,
  tidy_revoked_cert_issuer_associations: false,
  tidy_expired_issuers: false,
  tidy_move_legacy_ca_bundle: false,
  safety_buffer: 72 * 3600,
  issuer_safety_buffer: 365 * 24 * 3600,
  pause_duration: '0s',
};
type AutoTidy = typeof AUTO_TIDY_DEFAULTS;
const TIDY_OPERATIONS = [
  'tidy_cert_store',
  'tidy_revoked_certs',
  'tidy_revoked_cert_issuer_associations',
  'tidy_expired_issuers',
  'tidy_move_legacy_ca_bundle',
] as const;

interface StoredCertificate {
  pem: string;
  notAfter: number;
  revokedAt?: number;
}

/** A certificate's serial as Vault prints it: lower-case colon hex without leading zero bytes. */
function colonSerial(certificate: x509.X509Certificate): string {
  const hex = certificate.serialNumber.toLowerCase().replace(/^(00)+/, '');
  return (hex.length % 2 === 1 ? `0${hex}` : hex).match(/../g)!.join(':');
}

/**
 * The mount's stored certificates by colon serial: what revocation marks and the CRL lists. A tidy
 * is only acknowledged as Vault does; nothing is ever removed.
 */
export class CertificateStore {
  readonly #certs = new Map<string, StoredCertificate>();
  #autoTidy: AutoTidy = { ...AUTO_TIDY_DEFAULTS };

  constructor(
    private readonly clock: Clock,
    private readonly issuers: IssuerSet,
  ) {}

  record(serial: string, certificate: x509.X509Certificate, notAfter: Date): void {
    this.#certs.set(serial, { pem: pem(certificate), notAfter: notAfter.getTime() });
  }

  serials(): string[] {
    return [...this.#certs.keys()];
  }

  read(serial: string): PkiResult {
    const entry = this.#certs.get(serial.replaceAll('-', ':').toLowerCase());
    if (entry === undefined) throw NOT_FOUND();
    const revoked = entry.revokedAt !== undefined;
    return {
      body: envelope({
        data: {
          certificate: entry.pem,
          revocation_time: revoked ? Math.floor(entry.revokedAt! / 1000) : 0,
          revocation_time_rfc3339: revoked ? rfc3339Nano(new Date(entry.revokedAt!)) : '',
          ...(revoked ? { issuer_id: this.issuers.default?.id } : {}),
        },
        mountType: 'pki',
      }),
    };
  }

  /** path_revoke.go + crl_util.go revokeCert: unknown → 400, issuer → 400, revoked → first time, expired → warning. */
  revoke(body: Record<string, unknown>): PkiResult {
    if (body.serial_number === undefined || body.serial_number === '')
      throw badRequest('The serial number or certificate to revoke must be provided.');
    const requested = String(body.serial_number);
    const serial = requested.replaceAll('-', ':').toLowerCase();
    const entry = this.#certs.get(serial);
    // Vault echoes the serial as it was sent, before normalising it.
    if (entry === undefined) throw badRequest(`certificate with serial ${requested} not found.`);
    const issuer = this.issuers.all.find((candidate) => colonSerial(candidate.certificate) === serial);
    if (issuer !== undefined)
      throw badRequest(`adding issuer (id: ${issuer.id}) to its own CRL is not allowed`);
    if (entry.notAfter <= this.clock.now()) {
      return {
        body: envelope({
          warnings: [`certificate with serial ${serial} already expired; refusing to add to CRL`],
          mountType: 'pki',
        }),
      };
    }
    entry.revokedAt ??= this.clock.now();
    return {
      body: envelope({
        data: {
          revocation_time: Math.floor(entry.revokedAt / 1000),
          revocation_time_rfc3339: rfc3339Nano(new Date(entry.revokedAt)),
          state: 'revoked',
        },
        mountType: 'pki',
      }),
    };
  }

  async crl(): Promise<string> {
    const issuer = this.issuers.require();
    const revoked = [...this.#certs.entries()]
      .filter(([, entry]) => entry.revokedAt !== undefined)
      .map(([serial, entry]) => ({ serial, at: entry.revokedAt! }));
    return createCrl(issuer, revoked, this.clock.now());
  }

  autoTidy(): PkiResult {
    return { body: envelope({ data: this.#autoTidy, mountType: 'pki' }) };
  }

  writeAutoTidy(body: Record<string, unknown>): PkiResult {
    const config = { ...this.#autoTidy };
    if (body.enabled !== undefined) config.enabled = bool(body.enabled, false);
    for (const operation of TIDY_OPERATIONS)
      if (body[operation] !== undefined) config[operation] = bool(body[operation], false);
    for (const field of ['interval_duration', 'safety_buffer', 'issuer_safety_buffer'] as const)
      if (body[field] !== undefined) config[field] = seconds(body[field]);
    if (config.safety_buffer < 1)
      throw badRequest(`given safety_buffer must be at least one second; got: ${config.safety_buffer}`);
    if (config.enabled && !TIDY_OPERATIONS.some((operation) => config[operation])) {
      throw badRequest(
        `Auto-tidy enabled but no tidy operations were requested. Enable at least one tidy operation to be run (${TIDY_OPERATIONS.join(', ')}).`,
      );
    }
    this.#autoTidy = config;
    return { body: envelope({ data: config, mountType: 'pki' }) };
  }

  tidy(): PkiResult {
    return {
      status: 202,
      body: envelope({
        warnings: [
          "Tidy operation successfully started. Any information from the operation will be printed to Vault's server logs.",
        ],
      }),
    };
  }
}
