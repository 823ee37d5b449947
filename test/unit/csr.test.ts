import { webcrypto } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { validateCsr } from '../../shared/certificates/csr';
import { x509 } from '../../shared/certificates/x509';
import { ValidationError } from '../../shared/errors';

const algorithms = {
  'ec-p256': { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' },
  'rsa-2048': {
    name: 'RSASSA-PKCS1-v1_5',
    modulusLength: 2048,
    publicExponent: new Uint8Array([1, 0, 1]),
    hash: 'SHA-256',
  },
} as const;

/** A self-signed request of a fresh key, as a node makes one. */
async function request(keyType: keyof typeof algorithms): Promise<x509.Pkcs10CertificateRequest> {
  const algorithm = algorithms[keyType];
  const keys = (await webcrypto.subtle.generateKey(algorithm, false, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  return x509.Pkcs10CertificateRequestGenerator.create({
    name: 'CN=nomad-rotator-agent',
    keys,
    signingAlgorithm: algorithm,
  });
}

const derBase64 = (bytes: ArrayBuffer | Uint8Array) => Buffer.from(new Uint8Array(bytes)).toString('base64');

describe('a CSR a node sends', () => {
  it.each(['ec-p256', 'rsa-2048'] as const)(
    'is read from base64 of its DER and handed on as the PEM of the same request (%s)',
    async (keyType) => {
      const sent = await request(keyType);

      const pem = await validateCsr(derBase64(sent.rawData), keyType, 'agent CSR');

      expect(pem).toMatch(
        /^-----BEGIN CERTIFICATE REQUEST-----\n[\s\S]+\n-----END CERTIFICATE REQUEST-----$/,
      );
      expect(new x509.Pkcs10CertificateRequest(pem).equal(sent)).toBe(true);
    },
  );

  it('is refused as base64 of its PEM, with the field named', async () => {
    const sent = await request('ec-p256');

    const validation = validateCsr(derBase64(Buffer.from(sent.toString('pem'))), 'ec-p256', 'CLI CSR');

    await expect(validation).rejects.toThrow(ValidationError);
    await expect(validation).rejects.toThrow('CLI CSR: not a DER certificate request');
  });

  it('is refused when the bytes are no request, or a request with more after it', async () => {
    const der = Buffer.from((await request('ec-p256')).rawData);
    const values = {
      garbage: Buffer.from('nomad-rotator').toString('base64'),
      'another DER structure': derBase64(Buffer.from([0x30, 0x03, 0x02, 0x01, 0x05])),
      'trailing bytes': derBase64(Buffer.concat([der, Buffer.from([0x00])])),
      'a cut request': derBase64(der.subarray(0, der.length - 1)),
      empty: '',
    };

    for (const [name, value] of Object.entries(values))
      await expect(validateCsr(value, 'ec-p256', 'agent CSR'), name).rejects.toThrow(
        'agent CSR: not a DER certificate request',
      );
  });

  it('is refused when its signature does not verify or its key is not the configured type', async () => {
    const der = Buffer.from((await request('ec-p256')).rawData);
    const tampered = Buffer.from(der);
    // The subject's last character: the request still parses, its signature no longer matches.
    const subject = tampered.indexOf('nomad-rotator-agent') + 'nomad-rotator-agent'.length - 1;
    tampered[subject] = 'x'.charCodeAt(0);

    await expect(validateCsr(derBase64(tampered), 'ec-p256', 'agent CSR')).rejects.toThrow(
      'agent CSR: signature does not verify',
    );
    await expect(validateCsr(derBase64(der), 'rsa-2048', 'agent CSR')).rejects.toThrow(
      'agent CSR: key type ec-p256 where rsa-2048 is configured',
    );
  });
});
