import { X509Certificate } from 'node:crypto';

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** SHA-256 of a certificate's DER as `certificates.trustedRootFingerprints` holds it: 64 lower-case hex. */
export function certificateFingerprint(pem: string): string {
  return new X509Certificate(pem).fingerprint256.replaceAll(':', '').toLowerCase();
}

/**
 * The fingerprints of the self-signed roots in a PEM bundle: what an operator puts in the cluster
 * config after reading the CA chain from Vault once, over a connection they trust.
 */
export function rootFingerprints(bundlePem: string): string[] {
  return (bundlePem.match(PEM_BLOCK) ?? [])
    .map((pem) => new X509Certificate(pem))
    .filter(
      (certificate) => certificate.checkIssued(certificate) && certificate.verify(certificate.publicKey),
    )
    .map((certificate) => certificate.fingerprint256.replaceAll(':', '').toLowerCase());
}
