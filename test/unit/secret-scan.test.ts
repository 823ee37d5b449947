import { generateKeyPairSync } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { findSecrets } from '../helpers/secret-scan';

const pem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
  type: 'sec1',
  format: 'pem',
}) as string;

describe('secret scan (the tests rely on it, so it must itself catch leaks)', () => {
  it('finds a PEM private key in clear and base64-encoded at any offset', () => {
    for (const prefix of ['', 'a', 'ab', 'abc']) {
      const encoded = Buffer.from(`${prefix}${pem}`).toString('base64');
      expect(findSecrets({ parameter: { certificates: [encoded] } }), `offset ${prefix.length}`).not.toEqual(
        [],
      );
    }
    expect(findSecrets({ log: `key=${pem}` })).toContainEqual({ where: 'log', marker: 'PEM private key' });
  });

  it('finds a PEM private key packed the way install certificates are (gzip, then base64)', () => {
    const packed = gzipSync(`-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n${pem}`).toString(
      'base64',
    );

    expect(findSecrets({ parameter: { certificates: [packed] } })).toContainEqual({
      where: 'parameter',
      marker: 'PEM private key',
    });
  });

  it('finds Vault tokens and known secret values', () => {
    expect(findSecrets({ event: { token: 'hvs.CAESIJ0xT8abcdefghijklmnopqr' } })).toContainEqual({
      where: 'event',
      marker: 'Vault service token',
    });
    const gossipKey = 'k4yW2lCHPVo1xhRvLKkz7aQxM1ZpF3rW8TqZyv5QJ9A=';
    expect(findSecrets({ item: Buffer.from(gossipKey).toString('base64') }, [gossipKey])).toHaveLength(1);
  });

  it('stays quiet on public material', () => {
    expect(findSecrets({ cert: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----' })).toEqual([]);
  });
});
