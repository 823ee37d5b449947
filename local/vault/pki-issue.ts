import { webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import { x509 } from '../../shared/certificates/x509';
import type { Clock } from '../../shared/clock';
import type { IssuerSet } from './pki-issuers';
import type { CertificateStore } from './pki-revocation';
import { allowedName, HOSTNAME, type Role, validityWindow } from './pki-roles';
import {
  createCertificate,
  csrPublicKey,
  generateKeys,
  type KeyPair,
  type KeyType,
  keyBitsOf,
  keyTypeOf,
  pem,
} from './pki-x509';
import { badRequest, bool, envelope, list, type PkiResult, rfc3339Nano } from './protocol';

/** config/urls (path_config_urls.go): stored as written, put into every certificate issued afterwards. */
interface AiaUrls {
  issuing_certificates: string[];
  crl_distribution_points: string[];
  delta_crl_distribution_points: string[];
  ocsp_servers: string[];
  enable_templating: boolean;
}

/** sign/ and issue/: leaf certificates under a role, with Vault's name and TTL rules. */
export class LeafIssuer {
  #urls: AiaUrls = {
    issuing_certificates: [],
    crl_distribution_points: [],
    delta_crl_distribution_points: [],
    ocsp_servers: [],
    enable_templating: false,
  };

  constructor(
    private readonly clock: Clock,
    private readonly maxTtl: () => number,
    private readonly roles: ReadonlyMap<string, Role>,
    private readonly issuers: IssuerSet,
    private readonly certificates: CertificateStore,
  ) {}

  urls(): PkiResult {
    return { body: envelope({ data: this.#urls, mountType: 'pki' }) };
  }

  writeUrls(body: Record<string, unknown>): PkiResult {
    const urls = { ...this.#urls };
    for (const field of [
      'issuing_certificates',
      'crl_distribution_points',
      'delta_crl_distribution_points',
      'ocsp_servers',
    ] as const) {
      if (body[field] === undefined) continue;
      urls[field] = list(body[field]);
      const bad = urls[field].find((url) => !URL.canParse(url));
      if (bad !== undefined)
        throw badRequest(
          `invalid URL found in Authority Information Access (AIA) parameter ${field}: ${bad}`,
        );
    }
    if (body.enable_templating !== undefined) urls.enable_templating = bool(body.enable_templating, false);
    this.#urls = urls;
    return { body: envelope({ data: urls, mountType: 'pki' }) };
  }

  async sign(roleName: string, body: Record<string, unknown>): Promise<PkiResult> {
    const role = this.roles.get(roleName);
    if (role === undefined) throw badRequest(`unknown role: ${roleName}`);
    const request = new x509.Pkcs10CertificateRequest(String(body.csr ?? ''));
    const publicKey = await csrPublicKey(request);
    if (role.key_type !== 'any' && keyTypeOf(publicKey) !== role.key_type) {
      throw badRequest(`role requires keys of type ${role.key_type}`);
    }
    // cert_util.go signCert: the role's key_bits is a minimum (P-384 passes an ec/256 role, P-256 not an ec/384 one).
    const bits = keyBitsOf(publicKey);
    const minimum = role.key_type === 'any' ? (keyTypeOf(publicKey) === 'ec' ? 224 : 2048) : role.key_bits;
    if (bits < minimum)
      throw badRequest(`role requires a minimum of a ${minimum}-bit key, but CSR's key is ${bits} bits`);
    const warnings: string[] = [];
    const sanExtension = request.extensions.find(
      (extension) => extension instanceof x509.SubjectAlternativeNameExtension,
    ) as x509.SubjectAlternativeNameExtension | undefined;
    const csrNames = sanExtension?.names.toJSON() ?? [];
    const commonName = role.use_csr_common_name
      ? (request.subjectName.getField('CN')[0] ?? '')
      : String(body.common_name ?? '');
    if (role.use_csr_common_name && body.common_name)
      warnings.push(
        'the common_name field was provided but the role is set with "use_csr_common_name" set to true',
      );
    const altNames = role.use_csr_sans
      ? csrNames.filter((name) => name.type === 'dns').map((name) => name.value)
      : list(body.alt_names);
    const ipSans = role.use_csr_sans
      ? csrNames.filter((name) => name.type === 'ip').map((name) => name.value)
      : list(body.ip_sans);
    return this.#certify(role, commonName, altNames, ipSans, publicKey, body.ttl, warnings, undefined);
  }

  async issue(roleName: string, body: Record<string, unknown>): Promise<PkiResult> {
    const role = this.roles.get(roleName);
    if (role === undefined) throw badRequest(`unknown role: ${roleName}`);
    if (role.key_type === 'any')
      throw badRequest('role key type "any" not allowed for issuing certificates, only signing');
    const keys = await generateKeys(
      role.key_type as KeyType,
      role.key_bits || (role.key_type === 'ec' ? 256 : 2048),
    );
    return this.#certify(
      role,
      String(body.common_name ?? ''),
      list(body.alt_names),
      list(body.ip_sans),
      keys.publicKey,
      body.ttl,
      [],
      keys,
    );
  }

  async #certify(
    role: Role,
    commonName: string,
    altNames: string[],
    ipSans: string[],
    publicKey: webcrypto.CryptoKey,
    ttl: unknown,
    warnings: string[],
    generated: KeyPair | undefined,
  ): Promise<PkiResult> {
    const issuer = this.issuers.require();
    if (commonName === '' && role.require_cn) {
      throw badRequest(
        'the common_name field is required, or must be provided in a CSR with "use_csr_common_name" set to true, unless "require_cn" is set to false',
      );
    }
    if (commonName !== '' && !allowedName(role, commonName))
      throw badRequest(`common name ${commonName} not allowed by this role`);
    for (const name of altNames) {
      if (role.enforce_hostnames && !HOSTNAME.test(name))
        throw badRequest(
          `subject alternate name ${name} is not a valid DNS name and cannot be included as a SAN`,
        );
      if (!allowedName(role, name))
        throw badRequest(`subject alternate name ${name} not allowed by this role`);
    }
    if (ipSans.length > 0 && !role.allow_ip_sans)
      throw badRequest(
        `IP Subject Alternative Names are not allowed in this role, but was provided [${ipSans.join(' ')}]`,
      );
    for (const ip of ipSans)
      if (isIP(ip) === 0) throw badRequest(`the value "${ip}" is not a valid IP address`);
    const { notBefore, notAfter } = validityWindow(
      { now: this.clock.now(), mountMaxTtl: this.maxTtl() },
      ttl,
      role,
      warnings,
    );
    if (notAfter > issuer.certificate.notAfter) {
      throw badRequest(
        `cannot satisfy request, as TTL would result in notAfter of ${rfc3339Nano(notAfter)} that is beyond the expiration of the CA certificate at ${rfc3339Nano(issuer.certificate.notAfter)}`,
      );
    }
    const dnsNames = [
      ...new Set([...(commonName !== '' && HOSTNAME.test(commonName) ? [commonName] : []), ...altNames]),
    ];
    const { certificate, serial } = await createCertificate({
      commonName,
      publicKey,
      issuer: { certificate: issuer.certificate, keys: issuer.keys },
      notBefore,
      notAfter,
      ca: false,
      dnsNames,
      ipAddresses: ipSans,
      serverAuth: role.server_flag,
      clientAuth: role.client_flag,
      issuingCertificateUrls: this.#urls.issuing_certificates,
      crlDistributionPoints: this.#urls.crl_distribution_points,
    });
    if (!role.no_store) this.certificates.record(serial, certificate, notAfter);
    const data: Record<string, unknown> = {
      ca_chain: issuer.chain,
      certificate: pem(certificate),
      expiration: Math.floor(notAfter.getTime() / 1000),
      issuing_ca: pem(issuer.certificate),
      serial_number: serial,
    };
    if (generated) {
      const pkcs8 = Buffer.from(
        await webcrypto.subtle.exportKey('pkcs8', generated.privateKey as never),
      ).toString('base64');
      data.private_key = `-----BEGIN PRIVATE KEY-----\n${pkcs8.match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----`;
      data.private_key_type = keyTypeOf(generated.privateKey);
    }
    return { body: envelope({ data, warnings, mountType: 'pki' }) };
  }
}
