import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import NodeVault from 'node-vault';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../local/clock';
import { startVaultEmulator, type VaultEmulator } from '../../local/vault';
import { VaultClient, type VaultResponse } from '../../shared/vault/client';
import { VaultTlsError } from '../../shared/vault/errors';
import { csrPem } from '../helpers/vault-access-world';

const fixture = (name: string) =>
  JSON.parse(readFileSync(new URL(`../fixtures/vault/${name}.json`, import.meta.url), 'utf8'));
const HOUR = 3_600_000;

/** The JSON type of every field, recursively: what a contract compares (values differ by nature). */
function shape(value: unknown): unknown {
  if (Array.isArray(value)) return value.length > 0 ? [shape(value[0])] : [];
  if (value !== null && typeof value === 'object')
    return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, shape(inner)]));
  return value === null ? 'null' : typeof value;
}

let clock: ManualClock;
let emulator: VaultEmulator;
let root: NodeVault.client;
let dir: string;

const vaultFor = (token: string) => NodeVault({ endpoint: emulator.address, token, noCustomHTTPVerbs: true });
const raw = async (method: string, path: string, body?: unknown, token = emulator.rootToken) => {
  const response = await fetch(`${emulator.address}/v1/${path}`, {
    method,
    headers: { 'X-Vault-Token': token },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined };
};

beforeAll(async () => {
  clock = new ManualClock(Date.now());
  emulator = await startVaultEmulator({ clock });
  root = vaultFor(emulator.rootToken);
  dir = await mkdtemp(join(tmpdir(), 'vault-emulator-'));
  await root.write('sys/mounts/pki', { type: 'pki', config: { max_lease_ttl: '87600h' } });
  await root.write('sys/mounts/pki_int', { type: 'pki', config: { max_lease_ttl: '43800h' } });
  await root.write('pki/root/generate/internal', {
    common_name: 'test root',
    ttl: '87600h',
    key_type: 'ec',
    key_bits: 256,
  });
  const { data: generated } = await root.write('pki_int/intermediate/generate/internal', {
    common_name: 'test intermediate',
    key_type: 'ec',
    key_bits: 256,
  });
  const { data: signed } = await root.write('pki/root/sign-intermediate', {
    csr: generated.csr,
    ttl: '43800h',
    format: 'pem',
  });
  await root.write('pki_int/intermediate/set-signed', {
    certificate: `${signed.certificate}\n${signed.issuing_ca}`,
  });
  await root.write('pki_int/roles/nomad', {
    allowed_domains: 'global.nomad',
    allow_subdomains: true,
    allow_localhost: true,
    allow_ip_sans: true,
    key_type: 'ec',
    key_bits: 256,
    max_ttl: '72h',
    use_csr_common_name: false,
    use_csr_sans: false,
    require_cn: false,
  });
  await root.write('sys/policies/acl/tls-policy', {
    policy:
      'path "pki_int/sign/nomad" { capabilities = ["update"] }\npath "pki_int/revoke" { capabilities = ["update"] }',
  });
});

afterAll(async () => {
  await emulator.stop();
});

describe('Vault emulator contracts (reference samples)', () => {
  it('answers sys/health like Vault when active and when sealed (same body, other status)', async () => {
    expect(await raw('GET', 'sys/health')).toMatchObject({
      status: 200,
      body: shapeLike(fixture('health-active')),
    });
    emulator.seal();
    const sealed = await raw('GET', 'sys/health');
    const refused = await raw('GET', 'sys/mounts');
    emulator.unseal();

    expect(sealed.status).toBe(503);
    expect(shape(sealed.body)).toEqual(shape(fixture('health-sealed')));
    expect(refused).toEqual({ status: 503, body: fixture('error-sealed') });
  });

  it('issues with the envelope of a default role: integer expiration, ca_chain array, no lease', async () => {
    const issued = await raw('POST', 'pki_int/issue/nomad', { common_name: 'server.global.nomad' });

    expect(issued.status).toBe(200);
    const sample = fixture('pki-issue-default-role');
    expect(Object.keys(issued.body)).toEqual(Object.keys(sample));
    expect(shape({ ...issued.body, warnings: null, mount_type: 'pki' })).toEqual(
      shape({ ...sample, warnings: null }),
    );
    expect(issued.body.data.serial_number).toMatch(/^([0-9a-f]{2}:){1,19}[0-9a-f]{2}$/);
    expect(issued.body.data.certificate.endsWith('\n')).toBe(false);
  });

  it('creates a periodic orphan token with the auth block Vault returns', async () => {
    const created = await raw('POST', 'auth/token/create-orphan', {
      policies: ['tls-policy'],
      period: '24h',
    });

    expect(created.status).toBe(200);
    expect(shape(created.body)).toEqual(
      shape({ ...fixture('token-create-orphan-periodic'), warnings: null }),
    );
    expect(created.body.auth).toMatchObject({
      lease_duration: 86_400,
      orphan: true,
      policies: ['default', 'tls-policy'],
    });
    expect(created.body.auth.client_token).toMatch(/^hvs\.[A-Za-z0-9]{24}$/);
  });

  it('answers a denied path with the 403 body and a missing read with 404 {"errors":[]}', async () => {
    const { body: token } = await raw('POST', 'auth/token/create-orphan', { policies: ['tls-policy'] });

    expect(await raw('GET', 'sys/mounts', undefined, token.auth.client_token)).toEqual({
      status: 403,
      body: fixture('error-permission-denied'),
    });
    expect(await raw('GET', 'pki_int/roles/missing')).toEqual({
      status: 404,
      body: fixture('error-not-found'),
    });
  });

  it('acknowledges tidy with 202 and the warning text', async () => {
    const tidy = await raw('POST', 'pki_int/tidy', { tidy_cert_store: true });

    expect(tidy.status).toBe(202);
    expect(tidy.body.warnings).toEqual(fixture('tidy-accepted').warnings);
  });
});

describe('Vault emulator behaviour through node-vault', () => {
  it("refuses a CN outside the role with Vault's text", async () => {
    await expect(
      root.write('pki_int/sign/nomad', { csr: await csrPem(), common_name: 'evil.example.org' }),
    ).rejects.toThrow(
      fixture('error-cn-not-allowed').errors[0].replace('evil.example.org', 'evil.example.org'),
    );
  });

  it('caps a TTL above the role max with a warning instead of refusing', async () => {
    const signed = await root.write('pki_int/sign/nomad', {
      csr: await csrPem(),
      common_name: 'client.global.nomad',
      ttl: '2160h',
    });

    expect(signed.warnings).toEqual([
      'TTL "2160h0m0s" is longer than permitted maxTTL "72h0m0s", so maxTTL is being used',
    ]);
    expect(signed.data.expiration).toBe(Math.floor((clock.now() + 72 * HOUR) / 1000));
  });

  it('signs and issues certificates that openssl verifies, with the requested SANs and usages', async () => {
    const signed = await root.write('pki_int/sign/nomad', {
      csr: await csrPem(),
      common_name: 'server.global.nomad',
      alt_names: 'server.global.nomad,localhost',
      ip_sans: '127.0.0.1,10.0.0.5',
      ttl: '1h',
    });
    const issued = await root.write('pki_int/issue/nomad', { common_name: 'client.global.nomad', ttl: '1h' });
    const [intermediate, rootCa] = signed.data.ca_chain as string[];
    await writeFile(join(dir, 'root.pem'), rootCa!);
    await writeFile(join(dir, 'int.pem'), intermediate!);
    for (const [name, pem] of [
      ['signed', signed.data.certificate],
      ['issued', issued.data.certificate],
    ] as const) {
      await writeFile(join(dir, `${name}.pem`), pem);
      expect(
        execFileSync('openssl', [
          'verify',
          '-CAfile',
          join(dir, 'root.pem'),
          '-untrusted',
          join(dir, 'int.pem'),
          join(dir, `${name}.pem`),
        ]).toString(),
      ).toContain(': OK');
    }
    const text = execFileSync('openssl', [
      'x509',
      '-in',
      join(dir, 'signed.pem'),
      '-noout',
      '-text',
    ]).toString();
    expect(text).toContain(
      'DNS:server.global.nomad, DNS:localhost, IP Address:127.0.0.1, IP Address:10.0.0.5',
    );
    expect(text).toContain('TLS Web Server Authentication, TLS Web Client Authentication');
    expect(text).not.toContain('CN=whatever-the-node-asks-for');
  });

  it('lists a revoked serial in the CRL, and revoking again keeps the first time', async () => {
    const signed = await root.write('pki_int/sign/nomad', {
      csr: await csrPem(),
      common_name: 'client.global.nomad',
      ttl: '1h',
    });
    const first = await root.write('pki_int/revoke', { serial_number: signed.data.serial_number });
    clock.advance(5_000);
    const again = await root.write('pki_int/revoke', {
      serial_number: signed.data.serial_number.replaceAll(':', '-'),
    });
    const crl = await root.read('pki_int/crl/pem');
    await writeFile(join(dir, 'crl.pem'), crl);

    expect(again.data.revocation_time).toBe(first.data.revocation_time);
    expect(
      execFileSync('openssl', ['crl', '-in', join(dir, 'crl.pem'), '-noout', '-text'])
        .toString()
        .toUpperCase(),
    ).toContain(signed.data.serial_number.replaceAll(':', '').toUpperCase());
    await expect(root.write('pki_int/revoke', { serial_number: '01:02' })).rejects.toThrow(
      'certificate with serial 01:02 not found.',
    );
  });

  it('resets a periodic token to its period on renew-self, and treats an expired token as invalid', async () => {
    const { auth } = await root.write('auth/token/create-orphan', {
      policies: ['tls-policy'],
      period: '24h',
    });
    const token = vaultFor(auth.client_token);
    clock.advance(20 * HOUR);
    expect((await token.read('auth/token/lookup-self')).data.ttl).toBe(4 * 3600);

    const renewed = await token.write('auth/token/renew-self', {});
    expect(renewed.auth.lease_duration).toBe(24 * 3600);
    clock.advance(25 * HOUR);
    await expect(token.read('auth/token/lookup-self')).rejects.toThrow(/invalid token/);
  });

  it('refuses a periodic token to a caller without sudo, and keeps orphans when their creator is revoked', async () => {
    await root.write('sys/policies/acl/creator', {
      policy: 'path "auth/token/create" { capabilities = ["update"] }',
    });
    const { auth: parent } = await root.write('auth/token/create', { policies: ['creator', 'tls-policy'] });
    await expect(vaultFor(parent.client_token).write('auth/token/create', { period: '1h' })).rejects.toThrow(
      'root or sudo privileges required to create periodic token',
    );
    const { auth: orphan } = await root.write('auth/token/create-orphan', { policies: ['tls-policy'] });
    const { auth: child } = await vaultFor(parent.client_token).write('auth/token/create', {
      policies: ['tls-policy'],
    });

    await root.write('auth/token/revoke', { token: parent.client_token });

    await expect(vaultFor(child.client_token).read('auth/token/lookup-self')).rejects.toThrow(
      /invalid token/,
    );
    expect((await vaultFor(orphan.client_token).read('auth/token/lookup-self')).data.orphan).toBe(true);
  });

  it('reports capabilities per path, with `capabilities` for a single path', async () => {
    const { auth } = await root.write('auth/token/create-orphan', { policies: ['tls-policy'] });

    const one = await vaultFor(auth.client_token).write('sys/capabilities-self', {
      paths: ['pki_int/sign/nomad'],
    });
    const two = await vaultFor(auth.client_token).write('sys/capabilities-self', {
      paths: ['pki_int/sign/nomad', 'sys/mounts'],
    });

    expect(one.capabilities).toEqual(['update']);
    expect(two.data).toEqual({ 'pki_int/sign/nomad': ['update'], 'sys/mounts': ['deny'] });
  });

  it('never puts a token or a body in its request log', async () => {
    const log = JSON.stringify(emulator.requestLog);

    expect(log).not.toMatch(/hvs\./);
    expect(log).not.toContain('BEGIN');
  });
});

function shapeLike(sample: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(sample).filter(
      ([key]) => !['server_time_utc', 'version', 'cluster_name', 'cluster_id'].includes(key),
    ),
  );
}

describe('Vault over TLS (what production always is)', () => {
  let secure: VaultEmulator;
  beforeAll(async () => {
    secure = await startVaultEmulator({ tls: true });
  });
  afterAll(async () => {
    await secure?.stop();
  });

  it('answers the product’s client when vault.caBundlePem holds its CA', async () => {
    const client = new VaultClient({ address: secure.address, caBundlePem: secure.caPem!, timeoutMs: 5_000 });

    const created = await client.write<VaultResponse>(
      'auth/token/create-orphan',
      { policies: ['default'], period: '1h' },
      secure.rootToken,
    );

    expect(secure.address).toMatch(/^https:\/\//);
    expect(created.auth?.policies).toContain('default');
  });

  it('refuses a server it cannot verify at once, naming the cause and not the token', async () => {
    let retries = 0;
    const client = new VaultClient({
      address: secure.address,
      timeoutMs: 5_000,
      attempts: 3,
      sleep: async () => {
        retries += 1;
      },
    });

    const failure = await client.read('auth/token/lookup-self', secure.rootToken).catch((error) => error);

    expect(failure).toBeInstanceOf(VaultTlsError);
    expect(failure.message).toMatch(/did not verify \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\).*caBundlePem/);
    expect(failure.message).not.toContain(secure.rootToken);
    expect(retries).toBe(0);
    expect(secure.requestLog).toHaveLength(1);
  });
});
