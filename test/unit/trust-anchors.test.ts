import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseClusterConfig } from '../../shared/config';
import { certificateFingerprint, rootFingerprints } from '../../shared/documents/fingerprints';
import { testInventory } from '../helpers/inventory';

const cluster = (trustedRootFingerprints?: unknown) => () =>
  parseClusterConfig({
    name: 'prod',
    inventory: testInventory('prod'),
    vault: {
      address: 'https://vault.internal:8200',
      tokenSecretId: 'nomad/prod/token',
      tokenRotation: { iamServerIdHeader: 'vault.internal' },
    },
    certificates: trustedRootFingerprints === undefined ? {} : { trustedRootFingerprints },
  });

describe('trusted root fingerprints in the cluster config', () => {
  it('accepts the colon form openssl and browsers print, and keeps 64 lower-case hex', () => {
    const colon = `${'AB:'.repeat(31)}CD`;

    const config = cluster([colon, 'ef'.repeat(32)])();

    expect(config.certificates.trustedRootFingerprints).toEqual([`${'ab'.repeat(31)}cd`, 'ef'.repeat(32)]);
  });

  it('refuses a missing list, an empty one and a value that is no SHA-256, naming the field', () => {
    expect(cluster()).toThrow(/certificates\.trustedRootFingerprints: /);
    expect(cluster([])).toThrow(/certificates\.trustedRootFingerprints: must name at least one root CA/);
    expect(cluster(['ab'.repeat(20)])).toThrow(
      /certificates\.trustedRootFingerprints\.0: must be the SHA-256 of a root CA certificate/,
    );
    expect(cluster(["ab'; reboot; '"])).toThrow(/certificates\.trustedRootFingerprints\.0: /);
  });
});

describe('root fingerprints of a bundle', () => {
  it('are the SHA-256 of the DER of its self-signed certificates only', () => {
    const pem = readFileSync(new URL('../fixtures/pki/root-and-intermediate.pem', import.meta.url), 'utf8');
    const [intermediate, root] = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)!;

    expect(rootFingerprints(pem)).toEqual([certificateFingerprint(root!)]);
    expect(certificateFingerprint(root!)).toBe(
      new X509Certificate(root!).fingerprint256.replaceAll(':', '').toLowerCase(),
    );
    expect(certificateFingerprint(intermediate!)).not.toBe(certificateFingerprint(root!));
  });
});
