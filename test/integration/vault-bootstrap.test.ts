import { afterEach, describe, expect, it } from 'vitest';
import { renderBootstrapReport } from '../../ops/vault-bootstrap/report';
import { x509 } from '../../shared/certificates/x509';
import { VaultCertificateAuthority } from '../../shared/vault/authority';
import { awsIamLogin } from '../../shared/vault/aws-login';
import type { VaultResponse } from '../../shared/vault/client';
import {
  VaultBadRequestError,
  VaultNotAllowedByRoleError,
  VaultPermissionDeniedError,
} from '../../shared/vault/errors';
import {
  credentialsFor,
  csrPem,
  INTRUDER_KEY_ID,
  mintSeedToken,
  ROTATOR_KEY_ID,
  SERVER_ID_HEADER,
  signServerCertificate,
  startBootstrappedVault,
  TEST_TOKEN_ROLE,
} from '../helpers/vault-access-world';

type World = Awaited<ReturnType<typeof startBootstrappedVault>>;

let world: World | undefined;
afterEach(async () => {
  await world?.emulator.stop();
  world = undefined;
});

const EXTENDED_KEY_USAGE = '2.5.29.37';
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

function extendedKeyUsages(pem: string): string[] {
  const extension = new x509.X509Certificate(pem).getExtension(
    EXTENDED_KEY_USAGE,
  ) as x509.ExtendedKeyUsageExtension | null;
  return (extension?.usages ?? []).map(String);
}

describe('vault-bootstrap', () => {
  it('dry run on an empty Vault reports everything it would create and changes nothing', async () => {
    world = await startBootstrappedVault();
    const { root, emulator } = world;

    const report = await world.bootstrap(true);

    expect(report.dryRun).toBe(true);
    expect(new Set(report.items.map((item) => item.action))).toEqual(new Set(['created']));
    const mounts = await root.read<{ data: Record<string, unknown> }>('sys/mounts', emulator.rootToken);
    expect(Object.keys(mounts.data)).not.toContain('pki_int/');
    expect(Object.keys(mounts.data)).not.toContain('pki/');
    await expect(root.read('sys/policies/acl/tls-policy', emulator.rootToken)).rejects.toBeInstanceOf(
      VaultBadRequestError,
    );
    const auth = await root.read<{ data: Record<string, unknown> }>('sys/auth', emulator.rootToken);
    expect(Object.keys(auth.data)).not.toContain('aws/');
    const text = renderBootstrapReport(report);
    expect(text).toContain('dry run: nothing was changed');
    expect(text).toContain('path "pki_int/sign/nomad-server"');
    expect(text).toContain('path "pki_int/sign/nomad-client"');
  });

  it('sets up a Vault where the roles sign with our names only, and a second run changes nothing', async () => {
    world = await startBootstrappedVault();
    const { root, emulator } = world;

    const first = await world.bootstrap();
    const second = await world.bootstrap();
    const dryAfter = await world.bootstrap(true);

    expect(first.items.map((item) => [item.item, item.action])).toEqual([
      ['mount pki', 'created'],
      ['mount pki_int', 'created'],
      ['root CA in pki', 'created'],
      ['intermediate CA in pki_int', 'created'],
      ['urls pki_int', 'created'],
      ['auto-tidy pki_int', 'created'],
      ['role pki_int/nomad-server', 'created'],
      ['role pki_int/nomad-client', 'created'],
      ['role pki_int/nomad-cli', 'created'],
      ['policy tls-policy', 'created'],
      ['policy nomad-rotator-admin', 'created'],
      ['token role nomad-rotator-test', 'created'],
      ['auth method aws', 'created'],
      ['auth/aws/config/client', 'created'],
      ['aws role nomad-rotator-admin', 'created'],
    ]);
    expect(second.items.filter((item) => item.action !== 'unchanged')).toEqual([]);
    expect(dryAfter.items.filter((item) => item.action !== 'unchanged')).toEqual([]);
    expect(first.items.find((item) => item.item === 'policy tls-policy')?.hcl).toContain('pki_int/revoke');

    const tls = await mintSeedToken(root, emulator.rootToken);
    const signed = await signServerCertificate(world.client(tls.token));
    expect(new x509.X509Certificate(signed.certificatePem).subject).toBe('CN=server.global.nomad');
    expect(extendedKeyUsages(signed.certificatePem).sort()).toEqual([SERVER_AUTH, CLIENT_AUTH].sort());
    expect(signed.caChainPems.length).toBeGreaterThanOrEqual(1);

    await expect(signServerCertificate(world.client(tls.token), 'vault.example.org')).rejects.toBeInstanceOf(
      VaultNotAllowedByRoleError,
    );
    const cli = await new VaultCertificateAuthority(world.client(tls.token), {
      mount: 'pki_int',
      serverRole: 'nomad-server',
      clientRole: 'nomad-client',
      cliRole: 'nomad-cli',
    }).sign({
      kind: 'cli',
      csrPem: await csrPem(),
      names: { commonName: 'cli.global.nomad', dnsNames: ['cli.global.nomad'], ipAddresses: [] },
      ttlSeconds: 3600,
    });
    expect(extendedKeyUsages(cli.certificatePem)).toEqual([CLIENT_AUTH]);
  });

  it('gives the tls-policy token nothing beyond signing, revoking and reading the CA (403 elsewhere)', async () => {
    world = await startBootstrappedVault();
    await world.bootstrap();
    const { root, emulator } = world;
    const tls = await mintSeedToken(root, emulator.rootToken);
    const vault = world.client();

    const csr = await csrPem();
    // Attempts are started one at a time, so no rejection is left unobserved while another runs.
    const forbidden: [string, () => Promise<unknown>][] = [
      ['create a token', () => vault.write('auth/token/create', { policies: ['tls-policy'] }, tls.token)],
      [
        'create an orphan',
        () => vault.write('auth/token/create-orphan', { policies: ['tls-policy'] }, tls.token),
      ],
      ['read the mounts', () => vault.read('sys/mounts', tls.token)],
      ['read the admin policy', () => vault.read('sys/policies/acl/nomad-rotator-admin', tls.token)],
      ['sign with the root', () => vault.write('pki/root/sign-intermediate', { csr }, tls.token)],
      [
        'issue (keys stay on nodes)',
        () => vault.write('pki_int/issue/nomad-server', { common_name: 'x.global.nomad' }, tls.token),
      ],
      [
        'rewrite a role',
        () => vault.write('pki_int/roles/nomad-server', { allow_any_name: true }, tls.token),
      ],
    ];
    for (const [what, attempt] of forbidden) {
      await expect(attempt(), what).rejects.toBeInstanceOf(VaultPermissionDeniedError);
    }
    const capabilities = await vault.write<{ data: Record<string, string[]> }>(
      'sys/capabilities-self',
      { paths: ['pki_int/ca/pem', 'pki_int/revoke'] },
      tls.token,
    );
    expect(capabilities.data['pki_int/ca/pem']).toContain('read');
    expect(capabilities.data['pki_int/revoke']).toContain('update');
  });

  it('repairs drift item by item and leaves the rest alone', async () => {
    world = await startBootstrappedVault();
    await world.bootstrap();
    const { root, emulator } = world;
    await root.write(
      'pki_int/roles/nomad-server',
      { allowed_domains: ['example.org'], allow_subdomains: true },
      emulator.rootToken,
    );
    await root.write(
      'sys/policies/acl/tls-policy',
      { policy: 'path "pki_int/*" { capabilities = ["update"] }' },
      emulator.rootToken,
    );

    const repaired = await world.bootstrap();

    expect(
      repaired.items.filter((item) => item.action !== 'unchanged').map((item) => [item.item, item.action]),
    ).toEqual([
      ['role pki_int/nomad-server', 'updated'],
      ['policy tls-policy', 'updated'],
    ]);
    expect((await world.bootstrap()).items.every((item) => item.action === 'unchanged')).toBe(true);
  });

  it('binds the admin role to the rotate-token function only, and enforces the server id header', async () => {
    world = await startBootstrappedVault();
    const report = await world.bootstrap();
    expect(report.items.find((item) => item.item === 'auth/aws/config/client')).toMatchObject({
      action: 'created',
      detail: `X-Vault-AWS-IAM-Server-ID required: ${SERVER_ID_HEADER}`,
    });
    const vault = world.client();
    const login = (keyId: string, serverIdHeader?: string) =>
      awsIamLogin(vault, {
        mount: 'aws',
        role: 'nomad-rotator-admin',
        credentials: credentialsFor(keyId),
        clock: world!.clock,
        ...(serverIdHeader ? { serverIdHeader } : {}),
      });

    const admin = await login(ROTATOR_KEY_ID, SERVER_ID_HEADER);

    // No default policy on the login: it cannot even look itself up, only mint through the role.
    await expect(vault.read('auth/token/lookup-self', admin.token)).rejects.toBeInstanceOf(
      VaultPermissionDeniedError,
    );
    await expect(login(ROTATOR_KEY_ID)).rejects.toThrow(/X-Vault-AWS-IAM-Server-ID/i);
    await expect(login(ROTATOR_KEY_ID, 'another-vault')).rejects.toBeInstanceOf(VaultBadRequestError);
    await expect(login(INTRUDER_KEY_ID, SERVER_ID_HEADER)).rejects.toBeInstanceOf(VaultBadRequestError);
    const created = await vault.write<VaultResponse>(
      `auth/token/create/${TEST_TOKEN_ROLE}`,
      { policies: ['tls-policy'] },
      admin.token,
    );
    expect(created.auth?.lease_duration).toBe(86_400);
    expect(created.auth?.policies).toEqual(['tls-policy']);
  });
});
