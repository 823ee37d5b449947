import { X509Certificate } from 'node:crypto';
import type { CertificateKind } from '../certificates/names';
import type { CertificateAuthority, IssuedCertificate, TrustedChain } from '../certificates/ports';
import type { VaultClient } from './client';
import { isVaultAnswer, VaultBadRequestError, VaultSealedError, VaultUnavailableError } from './errors';

export interface PkiSettings {
  mount: string;
  /** The role of each certificate kind: each admits only its kind's names. */
  serverRole: string;
  clientRole: string;
  cliRole: string;
}

interface SignResponse {
  data: {
    certificate: string;
    issuing_ca: string;
    ca_chain?: string[];
    serial_number: string;
    expiration: number;
  };
}

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** path_revoke.go's answer for a serial the mount holds no certificate for. */
const UNKNOWN_SERIAL = /^certificate with serial \S+ not found\.$/;

/** Vault PKI as the rotation's certificate authority: sign CSRs with our names, revoke serials. */
export class VaultCertificateAuthority implements CertificateAuthority {
  constructor(
    private readonly vault: VaultClient,
    private readonly pki: PkiSettings,
  ) {}

  async assertReady(): Promise<void> {
    let health: Awaited<ReturnType<VaultClient['health']>>;
    try {
      health = await this.vault.health();
    } catch (error) {
      throw new VaultUnavailableError('Vault health check failed', {
        context: { code: (error as { code?: string }).code ?? null },
      });
    }
    if (health.sealed) throw new VaultSealedError('Vault is sealed');
    if (!health.initialized) throw new VaultUnavailableError('Vault is not initialized');
  }

  /**
   * When the issuing CA (the mount's default issuer, which signs every leaf) expires, in ms. Read from
   * cert/ca, which Vault serves without a token: none is sent, so neither the token's policy nor its
   * expiry can hide the CA's.
   */
  async issuerNotAfter(): Promise<number> {
    const response = await this.vault.read<{ data?: { certificate?: string } }>(
      `${this.pki.mount}/cert/ca`,
      '',
    );
    const pem = response.data?.certificate;
    if (typeof pem !== 'string' || !pem.includes('BEGIN CERTIFICATE')) {
      throw new VaultBadRequestError(`Vault ${this.pki.mount}/cert/ca answered without a certificate`);
    }
    return Date.parse(new X509Certificate(pem).validTo);
  }

  /** cert/ca_chain, which Vault serves without a token, over the client's pinned TLS. */
  async trustedChain(): Promise<TrustedChain> {
    const response = await this.vault.read<{ data?: { certificate?: string } }>(
      `${this.pki.mount}/cert/ca_chain`,
      '',
    );
    const pems = (response.data?.certificate ?? '').match(PEM_BLOCK) ?? [];
    if (pems.length === 0) {
      throw new VaultBadRequestError(`Vault ${this.pki.mount}/cert/ca_chain answered without a certificate`);
    }
    // Node's X509Certificate is OpenSSL's parser and verifier, native: an install wave checks 100.
    const issuer = new X509Certificate(pems[0]!);
    return {
      pems: pems.map((pem) => pem.trim()),
      issued: async (certificatePem) => {
        try {
          const leaf = new X509Certificate(certificatePem);
          return leaf.checkIssued(issuer) && leaf.verify(issuer.publicKey);
        } catch {
          return false;
        }
      },
    };
  }

  async sign(request: {
    kind: CertificateKind;
    csrPem: string;
    names: { commonName: string; dnsNames: string[]; ipAddresses: string[] };
    ttlSeconds: number;
  }): Promise<IssuedCertificate> {
    const role = {
      server: this.pki.serverRole,
      client: this.pki.clientRole,
      cli: this.pki.cliRole,
    }[request.kind];
    const response = await this.vault.write<SignResponse>(`${this.pki.mount}/sign/${role}`, {
      csr: request.csrPem,
      common_name: request.names.commonName,
      alt_names: request.names.dnsNames.join(','),
      ip_sans: request.names.ipAddresses.join(','),
      ttl: `${request.ttlSeconds}s`,
      format: 'pem',
    });
    const { certificate, issuing_ca, ca_chain, serial_number } = response.data;
    const parsed = new X509Certificate(certificate);
    if (parsed.subject !== `CN=${request.names.commonName}`) {
      // The role must set use_csr_common_name=false: we decide the names, never the CSR.
      throw new VaultBadRequestError(
        `Vault signed ${parsed.subject} where CN=${request.names.commonName} was requested`,
      );
    }
    return {
      certificatePem: certificate.trim(),
      serial: serial_number,
      notBefore: Date.parse(parsed.validFrom),
      notAfter: Date.parse(parsed.validTo),
      caChainPems: (ca_chain && ca_chain.length > 0 ? ca_chain : [issuing_ca]).map((pem) => pem.trim()),
    };
  }

  /**
   * Revoke a serial. Vault answers 200 for a serial already revoked (with the first revocation time)
   * and for one already expired (with a warning); a serial it no longer holds (tidied after expiry)
   * is 400 "certificate with serial <s> not found." and leaves nothing to revoke. Any other answer
   * is a failure, even a 4xx that happens to say "not found" (a missing mount is 404 "no handler").
   */
  async revoke(serial: string): Promise<void> {
    try {
      await this.vault.write(`${this.pki.mount}/revoke`, { serial_number: serial });
    } catch (error) {
      if (isVaultAnswer(error, 400, UNKNOWN_SERIAL)) return;
      throw error;
    }
  }
}
