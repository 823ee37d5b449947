import { webcrypto } from 'node:crypto';
import { gunzipSync } from 'node:zlib';

type KeyPair = webcrypto.CryptoKeyPair;

import { x509 } from '../../shared/certificates/x509';

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const;

/** A key pair a simulated node made for one attempt; the private half never leaves the node object. */
export interface PendingKey {
  keys: KeyPair;
  /** Base64 of the DER SubjectPublicKeyInfo: how an issued certificate is matched to its key. */
  publicKeyId: string;
  csrDerBase64: string;
}

/** A fresh P-256 key and a CSR signed with it, as prepare.sh makes them with openssl. */
export async function pendingKey(commonName: string): Promise<PendingKey> {
  const keys = (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as KeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${commonName}`,
    keys,
    signingAlgorithm: SIGNING,
  });
  const spki = await webcrypto.subtle.exportKey('spki', keys.publicKey);
  return {
    keys,
    publicKeyId: Buffer.from(spki).toString('base64'),
    csrDerBase64: Buffer.from(csr.rawData).toString('base64'),
  };
}

/** One certificate of an install's batch, parsed once for every simulated node the command reaches. */
export interface BatchCertificate {
  certificate: x509.X509Certificate;
  publicKeyId: string;
}

/** What install.sh accepts unpacked, at most: a command holds at most 100 leaves. */
const MAX_BUNDLE_BYTES = 1024 * 1024;

/** The install document's certificates parameter unpacked as install.sh does (base64, then gunzip). */
export function unpackCertificates(parameter: string): string {
  return gunzipSync(Buffer.from(parameter, 'base64'), { maxOutputLength: MAX_BUNDLE_BYTES }).toString('utf8');
}

/** An install command's certificates, chain and CA bundle, parsed once per command. */
export interface ParsedInstall {
  byPublicKey: ReadonlyMap<string, BatchCertificate>;
  chain: readonly x509.X509Certificate[];
  roots: readonly x509.X509Certificate[];
}

export async function parseInstall(parameters: {
  certificates: string;
  chain: string;
  caBundle: string;
}): Promise<ParsedInstall | string> {
  const pems = (text: string) =>
    text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  const decoded = (base64: string) => Buffer.from(base64, 'base64').toString('utf8');
  try {
    const byPublicKey = new Map<string, BatchCertificate>();
    for (const pem of pems(unpackCertificates(parameters.certificates))) {
      const certificate = new x509.X509Certificate(pem);
      const publicKeyId = Buffer.from(certificate.publicKey.rawData).toString('base64');
      byPublicKey.set(publicKeyId, { certificate, publicKeyId });
    }
    const chain = pems(decoded(parameters.chain)).map((pem) => new x509.X509Certificate(pem));
    const roots = pems(decoded(parameters.caBundle)).map((pem) => new x509.X509Certificate(pem));
    if (roots.length === 0) return 'invalid-ca-bundle';
    return { byPublicKey, chain, roots };
  } catch {
    return 'bad-encoding';
  }
}

/**
 * The checks install.sh makes with openssl before it writes anything: the leaf is signed by the
 * chain, the chain ends at a root of the CA bundle, it carries the role's name and is valid long
 * enough. Returns the reason it refuses, or undefined.
 */
export async function refusal(
  leaf: x509.X509Certificate,
  install: ParsedInstall,
  expected: { dnsName: string; minimumValiditySeconds: number; now: number },
): Promise<string | undefined> {
  let current = leaf;
  const issuers = [...install.chain, ...install.roots];
  for (let depth = 0; depth < 5; depth += 1) {
    const issuer = issuers.find((candidate) => candidate.subject === current.issuer);
    if (issuer === undefined || !(await current.verify({ publicKey: issuer, signatureOnly: true })))
      return 'chain-verification-failed';
    if (install.roots.some((root) => root.equal(issuer))) break;
    current = issuer;
    if (depth === 4) return 'chain-verification-failed';
  }
  const names = leaf.getExtension(x509.SubjectAlternativeNameExtension);
  if (!names?.names.items.some((name) => name.type === 'dns' && name.value === expected.dnsName))
    return 'wrong-names';
  if (leaf.notAfter.getTime() < expected.now + expected.minimumValiditySeconds * 1000)
    return 'validity-too-short';
  if (leaf.notBefore.getTime() > expected.now + 300_000) return 'not-yet-valid';
  return undefined;
}

/** A serial as openssl prints it: upper-case hex, no colons. */
export const opensslSerial = (certificate: x509.X509Certificate) => certificate.serialNumber.toUpperCase();

export const epochSeconds = (date: Date) => Math.floor(date.getTime() / 1000);
