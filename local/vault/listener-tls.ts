import { createPrivateKey, webcrypto } from 'node:crypto';
import { createCertificate, generateKeys, pem } from './pki-x509';

/** A CA and a server certificate for the listener, made fresh for each emulator. */
export async function listenerCertificate(): Promise<{
  caPem: string;
  certificatePem: string;
  keyPem: string;
}> {
  const now = Date.now();
  const validity = { notBefore: new Date(now - 60_000), notAfter: new Date(now + 30 * 86_400_000) };
  const caKeys = await generateKeys('ec', 256);
  const ca = await createCertificate({
    commonName: 'Vault listener CA (local world)',
    publicKey: caKeys.publicKey,
    issuer: { selfSigned: caKeys },
    ca: true,
    ...validity,
  });
  const serverKeys = await generateKeys('ec', 256);
  const server = await createCertificate({
    commonName: 'vault.local-world',
    publicKey: serverKeys.publicKey,
    issuer: { certificate: ca.certificate, keys: caKeys },
    ca: false,
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
    serverAuth: true,
    ...validity,
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', serverKeys.privateKey));
  return {
    caPem: pem(ca.certificate),
    certificatePem: pem(server.certificate),
    keyPem: createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({
      format: 'pem',
      type: 'pkcs8',
    }) as string,
  };
}
