import type { Clock } from '../../shared/clock';
import { CertificateAuthority } from './pki-ca';
import { LeafIssuer } from './pki-issue';
import { IssuerSet } from './pki-issuers';
import { CertificateStore } from './pki-revocation';
import { parseRole, type Role } from './pki-roles';
import { pem } from './pki-x509';
import { envelope, NOT_FOUND, type PkiResult, VaultHttpError } from './protocol';

function pemToDer(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text.replace(/-----[^-]+-----|\s/g, ''), 'base64'));
}

/** One PKI secrets engine mount: issuers, roles, issue/sign with Vault's name and TTL rules, revocation. */
export class PkiMount {
  readonly #issuers = new IssuerSet();
  readonly #roles = new Map<string, Role>();
  readonly #certificates: CertificateStore;
  readonly #ca: CertificateAuthority;
  readonly #leaves: LeafIssuer;

  constructor(clock: Clock, maxTtl: () => number) {
    this.#certificates = new CertificateStore(clock, this.#issuers);
    this.#ca = new CertificateAuthority(clock, maxTtl, this.#issuers, this.#certificates);
    this.#leaves = new LeafIssuer(clock, maxTtl, this.#roles, this.#issuers, this.#certificates);
  }

  async handle(
    method: string,
    path: string,
    body: Record<string, unknown>,
    listing: boolean,
  ): Promise<PkiResult> {
    const [first, second, third] = path.split('/');
    if (method === 'GET' && listing && first === 'roles') return this.#list([...this.#roles.keys()]);
    if (method === 'GET' && listing && first === 'certs') return this.#list(this.#certificates.serials());
    if (method === 'GET' && listing && first === 'issuers') {
      const keyInfo = Object.fromEntries(
        this.#issuers.all.map((issuer) => [
          issuer.id,
          { issuer_name: '', is_default: issuer === this.#issuers.default },
        ]),
      );
      return this.#list(
        this.#issuers.all.map((issuer) => issuer.id),
        { key_info: keyInfo },
      );
    }
    if (method === 'GET') {
      const issuer = this.#issuers.default;
      if (path === 'ca/pem')
        return this.#raw(issuer ? pem(issuer.certificate) : '', 'application/pem-certificate-chain');
      if (path === 'ca_chain') return this.#raw(issuer?.chain.join('\n') ?? '', 'application/pkix-cert');
      if (path === 'crl/pem')
        return this.#raw(await this.#certificates.crl(), 'application/pem-certificate-chain');
      // The DER forms are what the AIA and CRL distribution point URLs of issued certificates name.
      if (path === 'ca')
        return this.#raw(issuer ? new Uint8Array(issuer.certificate.rawData) : '', 'application/pkix-cert');
      if (path === 'crl') return this.#raw(pemToDer(await this.#certificates.crl()), 'application/pkix-crl');
      if (path === 'cert/ca') {
        const required = this.#issuers.require();
        return {
          body: envelope({
            data: { certificate: pem(required.certificate), revocation_time: 0, revocation_time_rfc3339: '' },
            mountType: 'pki',
          }),
        };
      }
      if (path === 'config/urls') return this.#leaves.urls();
      if (path === 'config/auto-tidy') return this.#certificates.autoTidy();
      if (path === 'cert/ca_chain') {
        const chain = issuer?.chain.join('\n') ?? '';
        return {
          body: envelope({
            data: { certificate: chain, ca_chain: chain, revocation_time: 0, revocation_time_rfc3339: '' },
            mountType: 'pki',
          }),
        };
      }
      if (path === 'config/issuers') return this.#issuers.defaultConfig();
      if (first === 'cert' && second) return this.#certificates.read(second);
      if (first === 'roles' && second) {
        const role = this.#roles.get(second);
        if (role === undefined) throw NOT_FOUND();
        return { body: envelope({ data: role, mountType: 'pki' }) };
      }
      throw NOT_FOUND();
    }
    if (method === 'DELETE' && first === 'roles' && second) {
      this.#roles.delete(second);
      return { status: 204 };
    }
    if (first === 'roles' && second) {
      const role = parseRole(body);
      this.#roles.set(second, role);
      return { body: envelope({ data: role, mountType: 'pki' }) };
    }
    if (path === 'config/urls') return this.#leaves.writeUrls(body);
    if (path === 'config/issuers') return this.#issuers.writeDefault(body);
    if (path === 'config/auto-tidy') return this.#certificates.writeAutoTidy(body);
    if (first === 'root' && second === 'generate') return this.#ca.generateRoot(third ?? 'internal', body);
    if (first === 'intermediate' && second === 'generate') return this.#ca.generateIntermediate(body);
    if (path === 'root/sign-intermediate') return this.#ca.signIntermediate(body);
    if (path === 'intermediate/set-signed') return this.#ca.setSigned(body);
    if (first === 'sign' && second) return this.#leaves.sign(second, body);
    if (first === 'issue' && second) return this.#leaves.issue(second, body);
    if (path === 'revoke') return this.#certificates.revoke(body);
    if (path === 'tidy') return this.#certificates.tidy();
    throw new VaultHttpError(404, `no handler for route "${path}". route entry not found.`);
  }

  #list(keys: string[], extra: Record<string, unknown> = {}): PkiResult {
    if (keys.length === 0) throw NOT_FOUND();
    return { body: envelope({ data: { keys, ...extra }, mountType: 'pki' }) };
  }

  #raw(text: string | Uint8Array, contentType: string): PkiResult {
    return text.length === 0 ? { status: 204 } : { raw: { text, contentType } };
  }
}
