import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { TlsFiles } from './rpc';
import type { StandinConfig } from './standin-config';

/** The files' contents as read, with a checksum: a reload changes something only when it differs. */
export interface Material {
  ca: string;
  cert: string;
  key: string;
  checksum: string;
}

export function readMaterial(config: Pick<StandinConfig, 'caFile' | 'certFile' | 'keyFile'>): Material {
  const [ca, cert, key] = [config.caFile, config.certFile, config.keyFile].map((path) =>
    readFileSync(path, 'utf8'),
  );
  return {
    ca: ca!,
    cert: cert!,
    key: key!,
    checksum: createHash('sha256').update(`${ca}${cert}${key}`).digest('hex'),
  };
}

/**
 * Nomad builds its CA pool with Go's AppendCertsFromPEM: blocks that are not certificates or do not
 * parse are skipped silently, and only a file without a single good certificate is an error.
 */
function caPool(ca: string): string[] {
  const blocks = ca.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  const pool = blocks.filter((block) => {
    try {
      new X509Certificate(block);
      return true;
    } catch {
      return false;
    }
  });
  if (pool.length === 0) throw new Error('Failed to parse any CA certificates');
  return pool;
}

/** Node's TLS would serve an Ed25519 key; Nomad's TLS configuration refuses it (helper/tlsutil/config.go). */
function assertSupportedKey(key: string): void {
  const type = createPrivateKey(key).asymmetricKeyType;
  if (type === 'ed25519') throw new Error(`unsupported private key type ${type}`);
}

/** The TLS configuration Nomad builds from the files: errors here are the "bad CA" class. */
export function tlsFiles(material: Material): TlsFiles {
  assertSupportedKey(material.key);
  return { ca: caPool(material.ca), cert: material.cert, key: material.key };
}

export function serial(pem: string): string {
  return new X509Certificate(pem).serialNumber.toLowerCase();
}
