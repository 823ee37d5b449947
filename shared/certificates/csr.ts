import type { ClusterConfig } from '../config';
import { ValidationError } from '../errors';
import { x509 } from './x509';

/**
 * Check a CSR a node sent before it goes to Vault: it must parse, be self-signed by the key it
 * carries (proof of possession), and use the configured key type. Its names are ignored: we decide
 * the names, so a compromised node cannot ask for someone else's identity.
 */
export async function validateCsr(
  base64Pem: string,
  keyType: ClusterConfig['certificates']['keyType'],
  label: string,
): Promise<string> {
  const pem = Buffer.from(base64Pem, 'base64').toString('utf8');
  let request: x509.Pkcs10CertificateRequest;
  try {
    request = new x509.Pkcs10CertificateRequest(pem);
  } catch (cause) {
    throw new ValidationError(`${label}: not a PEM certificate request`, [], {
      context: { cause: String(cause) },
    });
  }
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
  return pem.trim();
}

function rsaLabel(algorithm: { name: string; modulusLength?: number }): string {
  return algorithm.name.startsWith('RSA') ? `rsa-${algorithm.modulusLength}` : algorithm.name.toLowerCase();
}
