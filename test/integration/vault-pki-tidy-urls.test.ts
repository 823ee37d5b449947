import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { mintSeedToken, signServerCertificate, startBootstrappedVault } from '../helpers/vault-access-world';

type World = Awaited<ReturnType<typeof startBootstrappedVault>>;

let world: World | undefined;
let dir: string | undefined;
afterEach(async () => {
  await world?.emulator.stop();
  world = undefined;
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

interface Data<T> {
  data: T;
}

describe('vault-bootstrap auto-tidy and CRL/AIA URLs', () => {
  it('enables auto-tidy of expired and revoked certificates, and a second run reports it unchanged', async () => {
    world = await startBootstrappedVault({ spec: { autoTidyInterval: '6h' } });

    await world.bootstrap();
    const again = await world.bootstrap();

    const tidy = await world.root.read<Data<Record<string, unknown>>>(
      'pki_int/config/auto-tidy',
      world.emulator.rootToken,
    );
    expect(tidy.data).toMatchObject({
      enabled: true,
      tidy_cert_store: true,
      tidy_revoked_certs: true,
      interval_duration: 6 * 3600,
      safety_buffer: 72 * 3600,
    });
    expect(again.items.find((item) => item.item === 'auto-tidy pki_int')?.action).toBe('unchanged');
  });

  it('repairs an auto-tidy or URL drift and reports it updated', async () => {
    world = await startBootstrappedVault();
    await world.bootstrap();
    await world.root.write('pki_int/config/auto-tidy', { enabled: false }, world.emulator.rootToken);
    await world.root.write(
      'pki_int/config/urls',
      { crl_distribution_points: ['http://old.example/crl'] },
      world.emulator.rootToken,
    );

    const repaired = await world.bootstrap();

    expect(
      repaired.items.filter((item) => item.action !== 'unchanged').map((item) => [item.item, item.action]),
    ).toEqual([
      ['urls pki_int', 'updated'],
      ['auto-tidy pki_int', 'created'],
    ]);
  });

  it('puts the CRL distribution point and CA issuer URL into every leaf, which openssl reads and fetches', async () => {
    world = await startBootstrappedVault();
    await world.bootstrap();
    const base = world.emulator.address;
    const tls = await mintSeedToken(world.root, world.emulator.rootToken);
    const signed = await signServerCertificate(world.client(tls.token));
    dir = await mkdtemp(join(tmpdir(), 'vault-urls-'));
    await writeFile(join(dir, 'leaf.pem'), signed.certificatePem);

    const text = execFileSync('openssl', [
      'x509',
      '-in',
      join(dir, 'leaf.pem'),
      '-noout',
      '-text',
    ]).toString();
    const crl = Buffer.from(await (await fetch(`${base}/v1/pki_int/crl`)).arrayBuffer());
    await writeFile(join(dir, 'crl.der'), crl);
    const issuer = Buffer.from(await (await fetch(`${base}/v1/pki_int/ca`)).arrayBuffer());
    await writeFile(join(dir, 'issuer.der'), issuer);

    expect(text).toMatch(
      new RegExp(`X509v3 CRL Distribution Points:\\s+Full Name:\\s+URI:${base}/v1/pki_int/crl`),
    );
    expect(text).toMatch(
      new RegExp(`Authority Information Access:\\s+CA Issuers - URI:${base}/v1/pki_int/ca`),
    );
    expect(
      execFileSync('openssl', [
        'crl',
        '-inform',
        'DER',
        '-in',
        join(dir, 'crl.der'),
        '-noout',
        '-issuer',
      ]).toString(),
    ).toContain('intermediate CA');
    expect(
      execFileSync('openssl', [
        'x509',
        '-inform',
        'DER',
        '-in',
        join(dir, 'issuer.der'),
        '-noout',
        '-subject',
      ]).toString(),
    ).toContain('intermediate CA');
  });

  it('takes the URL base from the spec when Vault is reached under another name', async () => {
    world = await startBootstrappedVault({ spec: { pkiUrlBase: 'https://vault.example.internal:8200/' } });

    await world.bootstrap();

    const urls = await world.root.read<Data<Record<string, string[]>>>(
      'pki_int/config/urls',
      world.emulator.rootToken,
    );
    expect(urls.data.issuing_certificates).toEqual(['https://vault.example.internal:8200/v1/pki_int/ca']);
    expect(urls.data.crl_distribution_points).toEqual(['https://vault.example.internal:8200/v1/pki_int/crl']);
  });
});
