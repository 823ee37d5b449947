import { randomUUID, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import { x509 } from '../../shared/certs/x509';
import type { Clock } from '../../shared/clock';
import {
  createCertificate,
  createCrl,
  csrPublicKey,
  generateKeys,
  type KeyPair,
  type KeyType,
  keyBitsOf,
  keyTypeOf,
  pem,
} from './pki-x509';
import {
  badRequest,
  bool,
  envelope,
  goDuration,
  list,
  NOT_FOUND,
  rfc3339Nano,
  seconds,
  VaultHttpError,
} from './protocol';

export type PkiResult = {
  status?: number;
  body?: unknown;
  raw?: { text: string | Uint8Array; contentType: string };
};

/** config/urls (path_config_urls.go): stored as written, put into every certificate issued afterwards. */
interface AiaUrls {
  issuing_certificates: string[];
  crl_distribution_points: string[];
  delta_crl_distribution_points: string[];
  ocsp_servers: string[];
  enable_templating: boolean;
}

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

interface Issuer {
  id: string;
  certificate: x509.X509Certificate;
  keys: KeyPair;
  chain: string[];
}

const ROLE_DEFAULTS = {
  ttl: 0,
  max_ttl: 0,
  allow_localhost: true,
  allowed_domains: [] as string[],
  allow_bare_domains: false,
  allow_subdomains: false,
  allow_glob_domains: false,
  allow_any_name: false,
  allow_wildcard_certificates: true,
  enforce_hostnames: true,
  allow_ip_sans: true,
  server_flag: true,
  client_flag: true,
  key_type: 'rsa',
  key_bits: 0,
  use_csr_common_name: true,
  use_csr_sans: true,
  require_cn: true,
  generate_lease: false,
  no_store: false,
  not_before_duration: 30,
};
type Role = typeof ROLE_DEFAULTS;

function pemToDer(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text.replace(/-----[^-]+-----|\s/g, ''), 'base64'));
}

/** A certificate's serial as Vault prints it: lower-case colon hex without leading zero bytes. */
function colonSerial(certificate: x509.X509Certificate): string {
  const hex = certificate.serialNumber.toLowerCase().replace(/^(00)+/, '');
  return (hex.length % 2 === 1 ? `0${hex}` : hex).match(/../g)!.join(':');
}

const HOSTNAME = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/** One PKI secrets engine mount: issuers, roles, issue/sign with Vault's name and TTL rules, revocation. */
export class PkiMount {
  readonly #issuers: Issuer[] = [];
  readonly #roles = new Map<string, Role>();
  readonly #certs = new Map<string, { pem: string; notAfter: number; revokedAt?: number }>();
  #pendingKey?: KeyPair;
  #urls: AiaUrls = {
    issuing_certificates: [],
    crl_distribution_points: [],
    delta_crl_distribution_points: [],
    ocsp_servers: [],
    enable_templating: false,
  };
  #autoTidy: AutoTidy = { ...AUTO_TIDY_DEFAULTS };

  constructor(
    private readonly clock: Clock,
    private readonly maxTtl: () => number,
  ) {}

  /** config/issuers: the issuer sign/issue use. The first one stays the default (storage.go importIssuer). */
  #defaultIssuerId: string | undefined;
  #defaultFollowsLatestIssuer = false;

  get #issuer(): Issuer | undefined {
    return this.#issuers.find((issuer) => issuer.id === this.#defaultIssuerId);
  }

  /** A later issuer becomes the default only with default_follows_latest_issuer (default false). */
  #addIssuer(issuer: Issuer): void {
    this.#issuers.push(issuer);
    if (this.#defaultIssuerId === undefined || this.#defaultFollowsLatestIssuer)
      this.#defaultIssuerId = issuer.id;
  }

  #writeDefaultIssuer(body: Record<string, unknown>): PkiResult {
    if (body.default !== undefined) {
      const wanted = String(body.default);
      if (!this.#issuers.some((issuer) => issuer.id === wanted))
        throw badRequest(`unable to resolve issuer id for reference: ${wanted}`);
      this.#defaultIssuerId = wanted;
    }
    if (body.default_follows_latest_issuer !== undefined)
      this.#defaultFollowsLatestIssuer = bool(body.default_follows_latest_issuer, false);
    return this.#defaultIssuerConfig();
  }

  #defaultIssuerConfig(): PkiResult {
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

  async handle(
    method: string,
    path: string,
    body: Record<string, unknown>,
    listing: boolean,
  ): Promise<PkiResult> {
    const [first, second, third] = path.split('/');
    if (method === 'GET' && listing && first === 'roles') return this.#list([...this.#roles.keys()]);
    if (method === 'GET' && listing && first === 'certs') return this.#list([...this.#certs.keys()]);
    if (method === 'GET' && listing && first === 'issuers') {
      const keyInfo = Object.fromEntries(
        this.#issuers.map((issuer) => [issuer.id, { issuer_name: '', is_default: issuer === this.#issuer }]),
      );
      return this.#list(
        this.#issuers.map((issuer) => issuer.id),
        { key_info: keyInfo },
      );
    }
    if (method === 'GET') {
      if (path === 'ca/pem')
        return this.#raw(
          this.#issuer ? pem(this.#issuer.certificate) : '',
          'application/pem-certificate-chain',
        );
      if (path === 'ca_chain')
        return this.#raw(this.#issuer?.chain.join('\n') ?? '', 'application/pkix-cert');
      if (path === 'crl/pem') return this.#raw(await this.#crl(), 'application/pem-certificate-chain');
      // The DER forms are what the AIA and CRL distribution point URLs of issued certificates name.
      if (path === 'ca')
        return this.#raw(
          this.#issuer ? new Uint8Array(this.#issuer.certificate.rawData) : '',
          'application/pkix-cert',
        );
      if (path === 'crl') return this.#raw(pemToDer(await this.#crl()), 'application/pkix-crl');
      if (path === 'cert/ca') {
        const issuer = this.#requireIssuer();
        return {
          body: envelope({
            data: { certificate: pem(issuer.certificate), revocation_time: 0, revocation_time_rfc3339: '' },
            mountType: 'pki',
          }),
        };
      }
      if (path === 'config/urls') return { body: envelope({ data: this.#urls, mountType: 'pki' }) };
      if (path === 'config/auto-tidy') return { body: envelope({ data: this.#autoTidy, mountType: 'pki' }) };
      if (path === 'cert/ca_chain') {
        const chain = this.#issuer?.chain.join('\n') ?? '';
        return {
          body: envelope({
            data: { certificate: chain, ca_chain: chain, revocation_time: 0, revocation_time_rfc3339: '' },
            mountType: 'pki',
          }),
        };
      }
      if (path === 'config/issuers') return this.#defaultIssuerConfig();
      if (first === 'cert' && second) return this.#readCert(second);
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
    if (first === 'roles' && second) return this.#writeRole(second, body);
    if (path === 'config/urls') return this.#writeUrls(body);
    if (path === 'config/issuers') return this.#writeDefaultIssuer(body);
    if (path === 'config/auto-tidy') return this.#writeAutoTidy(body);
    if (first === 'root' && second === 'generate') return this.#generateRoot(third ?? 'internal', body);
    if (first === 'intermediate' && second === 'generate') return this.#generateIntermediate(body);
    if (path === 'root/sign-intermediate') return this.#signIntermediate(body);
    if (path === 'intermediate/set-signed') return this.#setSigned(body);
    if (first === 'sign' && second) return this.#sign(second, body);
    if (first === 'issue' && second) return this.#issue(second, body);
    if (path === 'revoke') return this.#revoke(body);
    if (path === 'tidy') {
      return {
        status: 202,
        body: envelope({
          warnings: [
            "Tidy operation successfully started. Any information from the operation will be printed to Vault's server logs.",
          ],
        }),
      };
    }
    throw new VaultHttpError(404, `no handler for route "${path}". route entry not found.`);
  }

  #list(keys: string[], extra: Record<string, unknown> = {}): PkiResult {
    if (keys.length === 0) throw NOT_FOUND();
    return { body: envelope({ data: { keys, ...extra }, mountType: 'pki' }) };
  }

  #raw(text: string | Uint8Array, contentType: string): PkiResult {
    return text.length === 0 ? { status: 204 } : { raw: { text, contentType } };
  }

  #writeUrls(body: Record<string, unknown>): PkiResult {
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

  #writeAutoTidy(body: Record<string, unknown>): PkiResult {
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

  #readCert(serial: string): PkiResult {
    const entry = this.#certs.get(serial.replaceAll('-', ':').toLowerCase());
    if (entry === undefined) throw NOT_FOUND();
    const revoked = entry.revokedAt !== undefined;
    return {
      body: envelope({
        data: {
          certificate: entry.pem,
          revocation_time: revoked ? Math.floor(entry.revokedAt! / 1000) : 0,
          revocation_time_rfc3339: revoked ? rfc3339Nano(new Date(entry.revokedAt!)) : '',
          ...(revoked ? { issuer_id: this.#issuer?.id } : {}),
        },
        mountType: 'pki',
      }),
    };
  }

  #writeRole(name: string, body: Record<string, unknown>): PkiResult {
    const role: Role = { ...ROLE_DEFAULTS };
    for (const [key, fallback] of Object.entries(ROLE_DEFAULTS) as [keyof Role, unknown][]) {
      const value = body[key];
      if (value === undefined) continue;
      if (typeof fallback === 'boolean') (role as Record<string, unknown>)[key] = bool(value, fallback);
      else if (Array.isArray(fallback)) (role as Record<string, unknown>)[key] = list(value);
      else if (key === 'key_type') role.key_type = String(value);
      else if (key === 'key_bits') role.key_bits = Number(value);
      else (role as Record<string, unknown>)[key] = seconds(value);
    }
    // path_roles.go: key_bits 0 means the type's default, and a read reports that default.
    if (role.key_bits === 0 && role.key_type !== 'any') role.key_bits = role.key_type === 'ec' ? 256 : 2048;
    if (role.key_type === 'rsa' && role.key_bits < 2048)
      throw badRequest('RSA keys < 2048 bits are unsafe and not supported');
    if (role.ttl > 0 && role.max_ttl > 0 && role.ttl > role.max_ttl)
      throw badRequest('"ttl" value must be less than "max_ttl" value');
    this.#roles.set(name, role);
    return { body: envelope({ data: role, mountType: 'pki' }) };
  }

  #window(
    requested: unknown,
    role: Role | undefined,
    warnings: string[],
  ): { notBefore: Date; notAfter: Date } {
    const now = this.clock.now();
    const max = role && role.max_ttl > 0 ? Math.min(role.max_ttl, this.maxTtl()) : this.maxTtl();
    let ttl = seconds(requested, role && role.ttl > 0 ? role.ttl : this.maxTtl());
    if (ttl > max) {
      warnings.push(
        `TTL "${goDuration(ttl)}" is longer than permitted maxTTL "${goDuration(max)}", so maxTTL is being used`,
      );
      ttl = max;
    }
    return {
      notBefore: new Date(now - (role?.not_before_duration ?? 30) * 1000),
      notAfter: new Date(now + ttl * 1000),
    };
  }

  async #generateRoot(type: string, body: Record<string, unknown>): Promise<PkiResult> {
    if (!body.common_name) throw badRequest('the common_name field is required');
    const warnings: string[] = [];
    const keys = await generateKeys(
      String(body.key_type ?? 'rsa') as KeyType,
      Number(body.key_bits || (body.key_type === 'ec' ? 256 : 2048)),
    );
    const { notBefore, notAfter } = this.#window(body.ttl, undefined, warnings);
    const { certificate, serial } = await createCertificate({
      commonName: String(body.common_name),
      publicKey: keys.publicKey,
      issuer: { selfSigned: keys },
      notBefore,
      notAfter,
      ca: true,
    });
    const issuer: Issuer = { id: randomUUID(), certificate, keys, chain: [pem(certificate)] };
    this.#addIssuer(issuer);
    this.#certs.set(serial, { pem: pem(certificate), notAfter: notAfter.getTime() });
    return {
      body: envelope({
        data: {
          certificate: pem(certificate),
          issuing_ca: pem(certificate),
          serial_number: serial,
          expiration: Math.floor(notAfter.getTime() / 1000),
          issuer_id: issuer.id,
          issuer_name: '',
          key_id: randomUUID(),
          key_name: '',
          ...(type === 'exported' ? { private_key_type: keyTypeOf(keys.privateKey) } : {}),
        },
        warnings,
        mountType: 'pki',
      }),
    };
  }

  async #generateIntermediate(body: Record<string, unknown>): Promise<PkiResult> {
    if (!body.common_name) throw badRequest('the common_name field is required');
    const keys = await generateKeys(
      String(body.key_type ?? 'rsa') as KeyType,
      Number(body.key_bits || (body.key_type === 'ec' ? 256 : 2048)),
    );
    this.#pendingKey = keys;
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: `CN=${String(body.common_name)}`,
      keys: keys as never,
      signingAlgorithm:
        keys.privateKey.algorithm.name === 'ECDSA'
          ? { name: 'ECDSA', hash: 'SHA-256' }
          : { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
    });
    return {
      body: envelope({ data: { csr: csr.toString('pem').trim(), key_id: randomUUID() }, mountType: 'pki' }),
    };
  }

  async #signIntermediate(body: Record<string, unknown>): Promise<PkiResult> {
    const issuer = this.#requireIssuer();
    const request = new x509.Pkcs10CertificateRequest(String(body.csr ?? ''));
    const warnings: string[] = [];
    const window = this.#window(body.ttl, undefined, warnings);
    // sign-intermediate truncates to the issuer's own NotAfter by default.
    const notAfter = new Date(Math.min(window.notAfter.getTime(), issuer.certificate.notAfter.getTime()));
    const commonName = String(body.common_name ?? request.subjectName.getField('CN')[0] ?? '');
    const { certificate, serial } = await createCertificate({
      commonName,
      publicKey: await csrPublicKey(request),
      issuer: { certificate: issuer.certificate, keys: issuer.keys },
      notBefore: window.notBefore,
      notAfter,
      ca: true,
    });
    this.#certs.set(serial, { pem: pem(certificate), notAfter: notAfter.getTime() });
    return {
      body: envelope({
        data: {
          certificate: pem(certificate),
          issuing_ca: pem(issuer.certificate),
          ca_chain: [pem(issuer.certificate), ...issuer.chain.slice(1)],
          serial_number: serial,
          expiration: Math.floor(notAfter.getTime() / 1000),
        },
        warnings,
        mountType: 'pki',
      }),
    };
  }

  async #setSigned(body: Record<string, unknown>): Promise<PkiResult> {
    const blocks =
      String(body.certificate ?? '').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ??
      [];
    if (blocks.length === 0 || this.#pendingKey === undefined)
      throw badRequest('no pending intermediate key; generate a CSR first');
    const certificate = new x509.X509Certificate(blocks[0]!);
    const spki = (key: unknown) => Buffer.from(key as ArrayBuffer).toString('hex');
    const pendingSpki = spki(await webcrypto.subtle.exportKey('spki', this.#pendingKey.publicKey as never));
    if (spki(certificate.publicKey.rawData) !== pendingSpki)
      throw badRequest('the certificate does not match the pending intermediate key');
    const issuer: Issuer = {
      id: randomUUID(),
      certificate,
      keys: this.#pendingKey,
      chain: blocks.map((block) => block.trim()),
    };
    this.#addIssuer(issuer);
    this.#pendingKey = undefined;
    return {
      body: envelope({
        data: {
          imported_issuers: [issuer.id],
          imported_keys: null,
          mapping: { [issuer.id]: randomUUID() },
          existing_issuers: [],
          existing_keys: [],
        },
        mountType: 'pki',
      }),
    };
  }

  async #sign(roleName: string, body: Record<string, unknown>): Promise<PkiResult> {
    const role = this.#roles.get(roleName);
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

  async #issue(roleName: string, body: Record<string, unknown>): Promise<PkiResult> {
    const role = this.#roles.get(roleName);
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
    const issuer = this.#requireIssuer();
    if (commonName === '' && role.require_cn) {
      throw badRequest(
        'the common_name field is required, or must be provided in a CSR with "use_csr_common_name" set to true, unless "require_cn" is set to false',
      );
    }
    if (commonName !== '' && !this.#allowed(role, commonName))
      throw badRequest(`common name ${commonName} not allowed by this role`);
    for (const name of altNames) {
      if (role.enforce_hostnames && !HOSTNAME.test(name))
        throw badRequest(
          `subject alternate name ${name} is not a valid DNS name and cannot be included as a SAN`,
        );
      if (!this.#allowed(role, name))
        throw badRequest(`subject alternate name ${name} not allowed by this role`);
    }
    if (ipSans.length > 0 && !role.allow_ip_sans)
      throw badRequest(
        `IP Subject Alternative Names are not allowed in this role, but was provided [${ipSans.join(' ')}]`,
      );
    for (const ip of ipSans)
      if (isIP(ip) === 0) throw badRequest(`the value "${ip}" is not a valid IP address`);
    const { notBefore, notAfter } = this.#window(ttl, role, warnings);
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
    if (!role.no_store) this.#certs.set(serial, { pem: pem(certificate), notAfter: notAfter.getTime() });
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

  #allowed(role: Role, name: string): boolean {
    const lower = name.toLowerCase();
    if (role.allow_any_name) return true;
    if (role.allow_localhost && (lower === 'localhost' || lower === 'localdomain')) return true;
    if (lower.startsWith('*.') && !role.allow_wildcard_certificates) return false;
    return role.allowed_domains.some((domain) => {
      const wanted = domain.toLowerCase();
      if (role.allow_bare_domains && lower === wanted) return true;
      if (role.allow_subdomains && lower.endsWith(`.${wanted}`)) return true;
      return (
        role.allow_glob_domains &&
        new RegExp(`^${wanted.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`).test(lower)
      );
    });
  }

  /** path_revoke.go + crl_util.go revokeCert: unknown → 400, issuer → 400, revoked → first time, expired → warning. */
  #revoke(body: Record<string, unknown>): PkiResult {
    if (body.serial_number === undefined || body.serial_number === '')
      throw badRequest('The serial number or certificate to revoke must be provided.');
    const requested = String(body.serial_number);
    const serial = requested.replaceAll('-', ':').toLowerCase();
    const entry = this.#certs.get(serial);
    // Vault echoes the serial as it was sent, before normalising it.
    if (entry === undefined) throw badRequest(`certificate with serial ${requested} not found.`);
    const issuer = this.#issuers.find((candidate) => colonSerial(candidate.certificate) === serial);
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

  async #crl(): Promise<string> {
    const issuer = this.#requireIssuer();
    const revoked = [...this.#certs.entries()]
      .filter(([, entry]) => entry.revokedAt !== undefined)
      .map(([serial, entry]) => ({ serial, at: entry.revokedAt! }));
    return createCrl(issuer, revoked, this.clock.now());
  }

  #requireIssuer(): Issuer {
    if (this.#issuer === undefined) {
      throw new VaultHttpError(
        500,
        'could not fetch the CA certificate (was one set?): no default issuer currently configured',
      );
    }
    return this.#issuer;
  }
}
