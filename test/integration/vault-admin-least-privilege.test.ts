import { afterEach, describe, expect, it } from 'vitest';
import { awsIamLogin, type VaultLogin } from '../../shared/vault/aws-login';
import type { VaultResponse } from '../../shared/vault/client';
import { VaultBadRequestError, VaultPermissionDeniedError } from '../../shared/vault/errors';
import {
  credentialsFor,
  ROTATOR_KEY_ID,
  SERVER_ID_HEADER,
  startBootstrappedVault,
  TEST_TOKEN_ROLE,
  testClusterInput,
} from '../helpers/vault-access-world';

type World = Awaited<ReturnType<typeof startBootstrappedVault>>;

let world: World | undefined;
afterEach(async () => {
  await world?.emulator.stop();
  world = undefined;
});

/** What an attacker holding the admin token would want minted: a policy that grants everything. */
const ROOT_ISH = 'path "*" {\n  capabilities = ["create", "read", "update", "delete", "list", "sudo"]\n}';

interface LookupSelf {
  data: { policies: string[]; orphan: boolean; period?: number; explicit_max_ttl: number; role?: string };
}

/** `null`: a login that sends no server id header at all. */
async function adminLogin(current: World, serverIdHeader: string | null = SERVER_ID_HEADER) {
  return awsIamLogin(current.client(), {
    mount: 'aws',
    role: 'nomad-rotator-admin',
    credentials: credentialsFor(ROTATOR_KEY_ID),
    clock: current.clock,
    ...(serverIdHeader === null ? {} : { serverIdHeader }),
  });
}

async function bootstrappedWithRootIsh(): Promise<{ current: World; admin: VaultLogin }> {
  const current = await startBootstrappedVault();
  world = current;
  await current.bootstrap();
  await current.root.write('sys/policies/acl/root-ish', { policy: ROOT_ISH }, current.emulator.rootToken);
  return { current, admin: await adminLogin(current) };
}

describe('the Vault admin token mints tls-policy and nothing else', () => {
  it('is refused a root-ish token through every route it can reach', async () => {
    const { current, admin } = await bootstrappedWithRootIsh();
    const vault = current.client();
    const role = `auth/token/create/${TEST_TOKEN_ROLE}`;
    const attempts: [string, string, Record<string, unknown>][] = [
      ['create', 'auth/token/create', { policies: ['root-ish'] }],
      [
        'create, no parent, periodic',
        'auth/token/create',
        { policies: ['root-ish'], no_parent: true, period: '24h' },
      ],
      ['create-orphan', 'auth/token/create-orphan', { policies: ['root-ish'] }],
      ['create-orphan, periodic', 'auth/token/create-orphan', { policies: ['root-ish'], period: '24h' }],
      ['the role, root-ish only', role, { policies: ['root-ish'] }],
      ['the role, root-ish beside tls-policy', role, { policies: ['tls-policy', 'root-ish'] }],
      ['the role, the admin policy', role, { policies: ['nomad-rotator-admin'] }],
      ['the role, root', role, { policies: ['root'] }],
      ['the role, a longer period', role, { period: '8760h' }],
      ['rewrite the role', `auth/token/roles/${TEST_TOKEN_ROLE}`, { allowed_policies: ['root-ish'] }],
      ['a role of its own', 'auth/token/roles/mine', { allowed_policies: ['root-ish'], orphan: true }],
      ['rewrite tls-policy', 'sys/policies/acl/tls-policy', { policy: ROOT_ISH }],
      ['revoke another token by accessor', 'auth/token/revoke-accessor', { accessor: 'x'.repeat(24) }],
    ];

    const minted: string[] = [];
    for (const [what, path, body] of attempts) {
      const outcome = await vault.write<VaultResponse>(path, body, admin.token).then(
        (response) => {
          minted.push(`${what}: ${(response.auth?.policies ?? []).join(',')}`);
          return 'accepted';
        },
        (error: unknown) =>
          error instanceof VaultPermissionDeniedError || error instanceof VaultBadRequestError
            ? 'refused'
            : error,
      );
      expect(outcome, what).toBe('refused');
    }
    expect(minted).toEqual([]);
  });

  it('mints through its token role a token with exactly tls-policy, orphan, periodic, with an end', async () => {
    const { current, admin } = await bootstrappedWithRootIsh();
    const vault = current.client();

    const created = await vault.write<VaultResponse>(
      `auth/token/create/${TEST_TOKEN_ROLE}`,
      { policies: ['tls-policy'] },
      admin.token,
    );
    await vault.write('auth/token/revoke-self', {}, admin.token);

    const { data } = await vault.read<LookupSelf>('auth/token/lookup-self', created.auth!.client_token);
    expect(data).toMatchObject({
      policies: ['tls-policy'],
      orphan: true,
      period: 86_400,
      explicit_max_ttl: 7 * 86_400,
      role: TEST_TOKEN_ROLE,
    });
  });

  it('refuses a login without the server id header, or with another Vault’s', async () => {
    const { current } = await bootstrappedWithRootIsh();

    await expect(adminLogin(current, null)).rejects.toThrow(/missing header "X-Vault-AWS-IAM-Server-ID"/);
    await expect(adminLogin(current, 'another-vault.internal')).rejects.toThrow(
      /expected "vault.test.internal" but got "another-vault.internal"/,
    );
  });
});

describe('vault-bootstrap token roles', () => {
  it('rewrites a drifted token role and then reports it unchanged', async () => {
    const { current } = await bootstrappedWithRootIsh();
    await current.root.write(
      `auth/token/roles/${TEST_TOKEN_ROLE}`,
      { allowed_policies: ['tls-policy', 'root-ish'], orphan: false },
      current.emulator.rootToken,
    );

    const repaired = await current.bootstrap();
    const again = await current.bootstrap();

    const item = repaired.items.find((candidate) => candidate.item === `token role ${TEST_TOKEN_ROLE}`);
    expect(item?.action).toBe('updated');
    expect(item?.detail).toMatch(/differs in allowed_policies, orphan$/);
    expect(again.items.filter((candidate) => candidate.action !== 'unchanged')).toEqual([]);
    const admin = await adminLogin(current);
    await expect(
      current.client().write(`auth/token/create/${TEST_TOKEN_ROLE}`, { policies: ['root-ish'] }, admin.token),
    ).rejects.toBeInstanceOf(VaultBadRequestError);
  });

  it('binds the minted tokens to the configured CIDRs: a copy used from elsewhere is refused', async () => {
    const current = await startBootstrappedVault();
    world = current;
    const cluster = (cidrs: string[]) =>
      testClusterInput(current.emulator.address, current.emulator.caPem, {
        tokenRotation: { tokenBoundCidrs: cidrs },
      });
    const mint = async () => {
      const created = await current.root.write<VaultResponse>(
        `auth/token/create/${TEST_TOKEN_ROLE}`,
        {},
        current.emulator.rootToken,
      );
      return created.auth!.client_token;
    };

    await current.bootstrap(false, [cluster(['10.20.0.0/22'])]);
    const elsewhere = await mint();
    await current.bootstrap(false, [cluster(['127.0.0.0/8'])]);
    const here = await mint();

    await expect(current.client().read('auth/token/lookup-self', elsewhere)).rejects.toBeInstanceOf(
      VaultPermissionDeniedError,
    );
    const { data } = await current
      .client()
      .read<{ data: { bound_cidrs: string[] } }>('auth/token/lookup-self', here);
    expect(data.bound_cidrs).toEqual(['127.0.0.0/8']);
  });
});
