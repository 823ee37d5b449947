import { generateKeyPairSync, sign, X509Certificate } from 'node:crypto';
import { gunzipSync } from 'node:zlib';

/**
 * The key a simulated node made for one attempt, by its public half: nothing the simulation checks
 * needs the private half once the CSR is signed, so it is not kept.
 */
export interface PendingKey {
  /** Base64 of the DER SubjectPublicKeyInfo: how an issued certificate is matched to its key. */
  publicKeyId: string;
  csrDerBase64: string;
}

/**
 * A fresh P-256 key and a CSR signed with it, as prepare.sh makes them with openssl: a PKCS#10
 * request for `CN=<name>` with no attributes, signed ecdsa-with-SHA256. Encoded here rather than with
 * an ASN.1 library because a fleet of thousands makes two a node per rotation.
 */
export function pendingKey(commonName: string): PendingKey {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const subject = der(
    0x30,
    der(0x31, der(0x30, Buffer.concat([COMMON_NAME_OID, der(0x0c, Buffer.from(commonName))]))),
  );
  const info = der(0x30, Buffer.concat([VERSION_1, subject, spki, NO_ATTRIBUTES]));
  const signature = sign('sha256', info, { key: privateKey, dsaEncoding: 'der' });
  const request = der(
    0x30,
    Buffer.concat([info, ECDSA_WITH_SHA256, der(0x03, Buffer.concat([UNUSED_BITS_NONE, signature]))]),
  );
  return { publicKeyId: spki.toString('base64'), csrDerBase64: request.toString('base64') };
}

const VERSION_1 = Buffer.from([0x02, 0x01, 0x00]);
const COMMON_NAME_OID = Buffer.from([0x06, 0x03, 0x55, 0x04, 0x03]);
const NO_ATTRIBUTES = Buffer.from([0xa0, 0x00]);
const ECDSA_WITH_SHA256 = Buffer.from([
  0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
]);
const UNUSED_BITS_NONE = Buffer.from([0x00]);

/** One DER element: tag, definite length (short or long form), content. */
function der(tag: number, content: Buffer): Buffer {
  const length = content.length;
  const header =
    length < 0x80
      ? [tag, length]
      : length < 0x100
        ? [tag, 0x81, length]
        : [tag, 0x82, length >> 8, length & 0xff];
  return Buffer.concat([Buffer.from(header), content]);
}

/**
 * One certificate of an install's batch, parsed once for every simulated node the command reaches,
 * with what install.sh reads of it through openssl. Node's X509Certificate is OpenSSL's parser and
 * verifier, as on the node, and native: a wave of 50 is 100 leaves.
 */
export interface BatchCertificate {
  certificate: X509Certificate;
  publicKeyId: string;
  /** As `openssl x509 -serial` prints it: upper-case hex, no colons. */
  serial: string;
  notBefore: number;
  notAfter: number;
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
  chain: readonly X509Certificate[];
  roots: readonly X509Certificate[];
  /**
   * The chain's own links (intermediate to root) are the same for every node of the command, so
   * each is verified once; a leaf's signature is verified for every node.
   */
  chainLinks: Map<X509Certificate, boolean>;
}

const epochSeconds = (openssl: string) => Math.floor(Date.parse(openssl) / 1000);

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
      const certificate = new X509Certificate(pem);
      const publicKeyId = certificate.publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
      byPublicKey.set(publicKeyId, {
        certificate,
        publicKeyId,
        serial: certificate.serialNumber.toUpperCase(),
        notBefore: epochSeconds(certificate.validFrom),
        notAfter: epochSeconds(certificate.validTo),
      });
    }
    const chain = pems(decoded(parameters.chain)).map((pem) => new X509Certificate(pem));
    const roots = pems(decoded(parameters.caBundle)).map((pem) => new X509Certificate(pem));
    if (roots.length === 0) return 'invalid-ca-bundle';
    return { byPublicKey, chain, roots, chainLinks: new Map() };
  } catch {
    return 'bad-encoding';
  }
}

/**
 * The checks install.sh makes with openssl before it writes anything: the leaf is signed by the
 * chain, the chain ends at a root of the CA bundle, it carries the role's name and is valid long
 * enough. Returns the reason it refuses, or undefined.
 */
export function refusal(
  leaf: BatchCertificate,
  install: ParsedInstall,
  expected: { dnsName: string; minimumValiditySeconds: number; now: number },
): string | undefined {
  let current = leaf.certificate;
  const issuers = [...install.chain, ...install.roots];
  for (let depth = 0; depth < 5; depth += 1) {
    const issuer = issuers.find((candidate) => current.checkIssued(candidate));
    if (
      issuer === undefined ||
      !signedBy(current, issuer, current === leaf.certificate ? undefined : install)
    )
      return 'chain-verification-failed';
    if (install.roots.some((root) => root.raw.equals(issuer.raw))) break;
    current = issuer;
    if (depth === 4) return 'chain-verification-failed';
  }
  const names = (leaf.certificate.subjectAltName ?? '').split(', ');
  if (!names.includes(`DNS:${expected.dnsName}`)) return 'wrong-names';
  const nowSeconds = Math.floor(expected.now / 1000);
  if (leaf.notAfter < nowSeconds + expected.minimumValiditySeconds) return 'validity-too-short';
  if (leaf.notBefore > nowSeconds + 300) return 'not-yet-valid';
  return undefined;
}

function signedBy(
  certificate: X509Certificate,
  issuer: X509Certificate,
  memo?: Pick<ParsedInstall, 'chainLinks'>,
): boolean {
  const known = memo?.chainLinks.get(certificate);
  if (known !== undefined) return known;
  const verified = certificate.verify(issuer.publicKey);
  memo?.chainLinks.set(certificate, verified);
  return verified;
}
