import { webcrypto } from 'node:crypto';
import type { ManualClock } from '../../local/clock';
import { normalizeSerial } from '../../shared/certificates/outputs';
import type {
  CertificateAuthority,
  EventPublisher,
  IssuedCertificate,
  RotationEventType,
  TrustedChain,
} from '../../shared/certificates/ports';
import { x509 } from '../../shared/certificates/x509';
import { TransientError } from '../../shared/errors';
import { assertAlive } from './crash';
import { SECOND } from './fleets';

// ---- real CSRs, generated once ------------------------------------------------------------------

const ec = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/**
 * Real PKCS#10 requests: the plan validates every CSR a node returns. A fake node's key is an index
 * into this pool, and the fake CA tells which key a CSR carries by its text, so a node can match a
 * certificate to its pending key the way the install script does.
 */
export interface CsrPool {
  /** As a node's prepare prints them: base64 of each request's DER. */
  derBase64: readonly string[];
  indexOfPem: ReadonlyMap<string, number>;
}

export async function generateCsrPool(size: number): Promise<CsrPool> {
  const derBase64: string[] = [];
  const indexOfPem = new Map<string, number>();
  for (let index = 0; index < size; index += 1) {
    const keys = (await webcrypto.subtle.generateKey(ec, false, [
      'sign',
      'verify',
    ])) as webcrypto.CryptoKeyPair;
    const request = await x509.Pkcs10CertificateRequestGenerator.create({
      name: `CN=model-node-${index}`,
      keys,
      signingAlgorithm: ec,
    });
    derBase64.push(Buffer.from(request.rawData).toString('base64'));
    indexOfPem.set(request.toString('pem').trim(), index);
  }
  return { derBase64, indexOfPem };
}

// ---- the certificate authority ------------------------------------------------------------------

export interface IssuedFact {
  /** Plain lower-case hex without leading zeros, as normalizeSerial leaves it. */
  serial: string;
  key: number;
  notBefore: number;
  notAfter: number;
}

const FAKE_PEM = /^-----BEGIN CERTIFICATE-----\nFAKE([0-9a-f]+)\n-----END CERTIFICATE-----$/;

/** Vault's sign endpoint without crypto: a fresh serial per signature, and a PEM that only names it. */
export class ModelAuthority implements CertificateAuthority {
  sealed = false;
  readonly revoked: string[] = [];
  readonly #issued = new Map<string, IssuedFact>();
  #serials = 0;

  constructor(
    private readonly clock: ManualClock,
    private readonly pool: CsrPool,
  ) {}

  async assertReady(): Promise<void> {
    if (this.sealed) throw new TransientError('Vault is sealed');
  }

  async sign(request: Parameters<CertificateAuthority['sign']>[0]): Promise<IssuedCertificate> {
    assertAlive();
    await this.assertReady();
    const key = this.pool.indexOfPem.get(request.csrPem.trim());
    if (key === undefined) throw new Error('the model CA was handed a CSR no model node made');
    this.#serials += 1;
    const hex = (0x5e_0000 + this.#serials).toString(16).padStart(16, '0');
    const now = this.clock.now();
    const fact: IssuedFact = {
      serial: normalizeSerial(hex),
      key,
      notBefore: now - 30 * SECOND,
      notAfter: now + request.ttlSeconds * SECOND,
    };
    this.#issued.set(fact.serial, fact);
    return {
      certificatePem: `-----BEGIN CERTIFICATE-----\nFAKE${fact.serial}\n-----END CERTIFICATE-----`,
      // Vault's spelling; nodes report openssl's, and the plan must compare the two as one.
      serial: hex.match(/../g)!.join(':'),
      notBefore: fact.notBefore,
      notAfter: fact.notAfter,
      caChainPems: ['-----BEGIN CERTIFICATE-----\nFAKECA\n-----END CERTIFICATE-----'],
    };
  }

  async revoke(serial: string): Promise<void> {
    assertAlive();
    this.revoked.push(serial);
  }

  async trustedChain(): Promise<TrustedChain> {
    await this.assertReady();
    return {
      pems: ['-----BEGIN CERTIFICATE-----\nFAKECA\n-----END CERTIFICATE-----'],
      issued: async (pem) => this.lookup(pem) !== undefined,
    };
  }

  lookup(pem: string): IssuedFact | undefined {
    const match = FAKE_PEM.exec(pem.trim());
    return match === null ? undefined : this.#issued.get(match[1]!);
  }
}

// ---- events -------------------------------------------------------------------------------------

export interface PublishedEvent {
  type: RotationEventType;
  detail: Record<string, unknown>;
}

export class ModelEvents implements EventPublisher {
  readonly published: PublishedEvent[] = [];

  async publish(type: RotationEventType, detail: Record<string, unknown>): Promise<void> {
    assertAlive();
    this.published.push({ type, detail: JSON.parse(JSON.stringify(detail)) });
  }
}
