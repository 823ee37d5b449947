import { randomBytes, webcrypto } from 'node:crypto';
import { x509 } from '../../shared/certificates/x509';
import { badRequest } from './protocol';

export type KeyPair = webcrypto.CryptoKeyPair;
export type KeyType = 'ec' | 'rsa';

const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

export function keyAlgorithm(type: KeyType, bits: number) {
  if (type === 'rsa') {
    if (bits < 2048) throw badRequest('RSA keys < 2048 bits are unsafe and not supported');
    return {
      name: 'RSASSA-PKCS1-v1_5',
      modulusLength: bits,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: 'SHA-256',
    };
  }
  const curves: Record<number, string> = { 224: 'P-256', 256: 'P-256', 384: 'P-384', 521: 'P-521' };
  const namedCurve = curves[bits];
  if (namedCurve === undefined) throw badRequest(`invalid key_bits value: ${bits}`);
  return { name: 'ECDSA', namedCurve, hash: 'SHA-256' };
}

export async function generateKeys(type: KeyType, bits: number): Promise<KeyPair> {
  return (await webcrypto.subtle.generateKey(keyAlgorithm(type, bits), true, ['sign', 'verify'])) as KeyPair;
}

export function signingAlgorithm(keys: KeyPair) {
  return keys.privateKey.algorithm.name === 'ECDSA'
    ? { name: 'ECDSA', hash: 'SHA-256' }
    : { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
}

export function keyTypeOf(key: { algorithm: { name: string } }): KeyType {
  return key.algorithm.name === 'ECDSA' ? 'ec' : 'rsa';
}

/** The key size Vault compares with a role's key_bits: the curve's size, or the RSA modulus length. */
export function keyBitsOf(key: { algorithm: { name: string } }): number {
  const algorithm = key.algorithm as { name: string; namedCurve?: string; modulusLength?: number };
  if (algorithm.name === 'ECDSA') return Number(algorithm.namedCurve?.slice(2) ?? 0);
  return algorithm.modulusLength ?? 0;
}

/** Vault serials: 20 random bytes (positive), printed as lower-case colon hex. */
export function newSerial(): { hex: string; colon: string } {
  const bytes = randomBytes(20);
  bytes[0] = bytes[0]! & 0x7f;
  if (bytes[0] === 0) bytes[0] = 0x01;
  const hex = bytes.toString('hex');
  return { hex, colon: hex.match(/../g)!.join(':') };
}

export function pem(certificate: x509.X509Certificate): string {
  return certificate.toString('pem').trim();
}

/** A CSR's public key as a CryptoKey of the matching algorithm. */
export async function csrPublicKey(request: x509.Pkcs10CertificateRequest): Promise<webcrypto.CryptoKey> {
  const algorithm = request.publicKey.algorithm as { name: string; namedCurve?: string };
  const importAs =
    algorithm.name === 'ECDSA'
      ? { name: 'ECDSA', namedCurve: algorithm.namedCurve }
      : { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  return request.publicKey.export(importAs, ['verify'], webcrypto as never);
}

export interface CertificateRequest {
  commonName: string;
  publicKey: webcrypto.CryptoKey;
  issuer: { certificate: x509.X509Certificate; keys: KeyPair } | { selfSigned: KeyPair };
  notBefore: Date;
  notAfter: Date;
  ca: boolean;
  dnsNames?: string[];
  ipAddresses?: string[];
  serverAuth?: boolean;
  clientAuth?: boolean;
  /** The mount's config/urls: Authority Information Access (CA issuers) and CRL distribution points. */
  issuingCertificateUrls?: string[];
  crlDistributionPoints?: string[];
}

export async function createCertificate(
  request: CertificateRequest,
): Promise<{ certificate: x509.X509Certificate; serial: string }> {
  const serial = newSerial();
  const signer = 'selfSigned' in request.issuer ? request.issuer.selfSigned : request.issuer.keys;
  const usages = request.ca
    ? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign
    : x509.KeyUsageFlags.digitalSignature |
      x509.KeyUsageFlags.keyEncipherment |
      x509.KeyUsageFlags.keyAgreement;
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(request.ca, undefined, true),
    new x509.KeyUsagesExtension(usages, true),
    await x509.SubjectKeyIdentifierExtension.create(request.publicKey as never),
  ];
  if ('certificate' in request.issuer)
    extensions.push(await x509.AuthorityKeyIdentifierExtension.create(request.issuer.certificate));
  const extendedUsages = [
    ...(request.serverAuth ? [SERVER_AUTH] : []),
    ...(request.clientAuth ? [CLIENT_AUTH] : []),
  ];
  if (extendedUsages.length > 0) extensions.push(new x509.ExtendedKeyUsageExtension(extendedUsages));
  const names = [
    ...(request.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(request.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names));
  if (request.issuingCertificateUrls?.length)
    extensions.push(new x509.AuthorityInfoAccessExtension({ caIssuers: request.issuingCertificateUrls }));
  if (request.crlDistributionPoints?.length)
    extensions.push(new x509.CRLDistributionPointsExtension(request.crlDistributionPoints));
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serial.hex,
    subject: `CN=${request.commonName}`,
    issuer: 'certificate' in request.issuer ? request.issuer.certificate.subject : `CN=${request.commonName}`,
    notBefore: request.notBefore,
    notAfter: request.notAfter,
    publicKey: request.publicKey as never,
    signingKey: signer.privateKey as never,
    signingAlgorithm: signingAlgorithm(signer),
    extensions,
  });
  return { certificate, serial: serial.colon };
}

export async function createCrl(
  issuer: { certificate: x509.X509Certificate; keys: KeyPair },
  revoked: { serial: string; at: number }[],
  now: number,
): Promise<string> {
  const crl = await x509.X509CrlGenerator.create({
    issuer: issuer.certificate.subject,
    thisUpdate: new Date(now),
    nextUpdate: new Date(now + 72 * 3_600_000),
    entries: revoked.map((entry) => ({
      serialNumber: entry.serial.replaceAll(':', ''),
      revocationDate: new Date(entry.at),
    })),
    signingKey: issuer.keys.privateKey as never,
    signingAlgorithm: signingAlgorithm(issuer.keys),
  });
  // Vault (and openssl) label it X509 CRL; the library writes a bare CRL header.
  return crl
    .toString('pem')
    .trim()
    .replace(/-----(BEGIN|END) CRL-----/g, '-----$1 X509 CRL-----');
}
