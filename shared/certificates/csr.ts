import type { ClusterConfig } from '../config';
import { ValidationError } from '../errors';
import { x509 } from './x509';

/**
 * Check a CSR a node sent before it goes to Vault: it must be one DER certificate request, be
 * self-signed by the key it carries (proof of possession), and use the configured key type. Its
 * names are ignored: we decide the names, so a compromised node cannot ask for someone else's
 * identity. Returns the request as the PEM Vault's sign endpoint takes.
 */
export async function validateCsr(
  derBase64: string,
  keyType: ClusterConfig['certificates']['keyType'],
  label: string,
): Promise<string> {
  const request = parseDer(Buffer.from(derBase64, 'base64'), label);
  if (!(await request.verify())) throw new ValidationError(`${label}: signature does not verify`);
  const algorithm = request.publicKey.algorithm as {
    name: string;
    namedCurve?: string;
    modulusLength?: number;
  };
  const actual =
    algorithm.name === 'ECDSA'
      ? `ec-${algorithm.namedCurve?.toLowerCase().replace('-', '')}`
      : rsaLabel(algorithm);
  if (actual !== keyType)
    throw new ValidationError(`${label}: key type ${actual} where ${keyType} is configured`);
  return request.toString('pem');
}

function parseDer(der: Buffer, label: string): x509.Pkcs10CertificateRequest {
  const refusal = (cause: unknown) =>
    new ValidationError(`${label}: not a DER certificate request`, [], {
      context: { cause: String(cause) },
    });
  if (!isOneDerSequence(der)) throw refusal('not one DER SEQUENCE and nothing after it');
  try {
    return new x509.Pkcs10CertificateRequest(der);
  } catch (cause) {
    throw refusal(cause);
  }
}

/**
 * Whether the bytes are one DER SEQUENCE and nothing after it. The parser alone also takes PEM, hex
 * or base64 text and ignores bytes after the request, which Vault would refuse only later.
 */
function isOneDerSequence(der: Uint8Array): boolean {
  const first = der[1];
  if (der[0] !== 0x30 || first === undefined) return false;
  if (first < 0x80) return der.length === 2 + first;
  const octets = first & 0x7f;
  const length = der.subarray(2, 2 + octets).reduce((sum, byte) => sum * 256 + byte, 0);
  return der.length === 2 + octets + length;
}

function rsaLabel(algorithm: { name: string; modulusLength?: number }): string {
  return algorithm.name.startsWith('RSA') ? `rsa-${algorithm.modulusLength}` : algorithm.name.toLowerCase();
}
