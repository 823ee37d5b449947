import { randomUUID, webcrypto } from 'node:crypto';
import { x509 } from '../../shared/certificates/x509';
import type { Clock } from '../../shared/clock';
import type { Issuer, IssuerSet } from './pki-issuers';
import type { CertificateStore } from './pki-revocation';
import { validityWindow } from './pki-roles';
import {
  createCertificate,
  csrPublicKey,
  generateKeys,
  type KeyPair,
  type KeyType,
  keyTypeOf,
  pem,
} from './pki-x509';
import { badRequest, envelope, type PkiResult } from './protocol';

/** root/generate, and an intermediate CA in three steps: its CSR, signed by a root, then set signed. */
export class CertificateAuthority {
  /** The key of the last intermediate CSR, waiting for its signed certificate. */
  #pendingKey?: KeyPair;

  constructor(
    private readonly clock: Clock,
    private readonly maxTtl: () => number,
    private readonly issuers: IssuerSet,
    private readonly certificates: CertificateStore,
  ) {}

  async generateRoot(type: string, body: Record<string, unknown>): Promise<PkiResult> {
    if (!body.common_name) throw badRequest('the common_name field is required');
    const warnings: string[] = [];
    const keys = await generateKeys(
      String(body.key_type ?? 'rsa') as KeyType,
      Number(body.key_bits || (body.key_type === 'ec' ? 256 : 2048)),
    );
    const { notBefore, notAfter } = this.#window(body.ttl, warnings);
    const { certificate, serial } = await createCertificate({
      commonName: String(body.common_name),
      publicKey: keys.publicKey,
      issuer: { selfSigned: keys },
      notBefore,
      notAfter,
      ca: true,
    });
    const issuer: Issuer = { id: randomUUID(), certificate, keys, chain: [pem(certificate)] };
    this.issuers.add(issuer);
    this.certificates.record(serial, certificate, notAfter);
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

  async generateIntermediate(body: Record<string, unknown>): Promise<PkiResult> {
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

  async signIntermediate(body: Record<string, unknown>): Promise<PkiResult> {
    const issuer = this.issuers.require();
    const request = new x509.Pkcs10CertificateRequest(String(body.csr ?? ''));
    const warnings: string[] = [];
    const window = this.#window(body.ttl, warnings);
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
    this.certificates.record(serial, certificate, notAfter);
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

  async setSigned(body: Record<string, unknown>): Promise<PkiResult> {
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
    this.issuers.add(issuer);
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

  #window(requested: unknown, warnings: string[]) {
    return validityWindow(
      { now: this.clock.now(), mountMaxTtl: this.maxTtl() },
      requested,
      undefined,
      warnings,
    );
  }
}
