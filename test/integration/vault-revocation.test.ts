import { afterEach, describe, expect, it } from 'vitest';
import { VaultCertificateAuthority } from '../../shared/vault/authority';
import {
  VaultBadRequestError,
  VaultPermissionDeniedError,
  VaultUnavailableError,
} from '../../shared/vault/errors';
import { mintSeedToken, signServerCertificate, startBootstrappedVault } from '../helpers/vault-access-world';

type World = Awaited<ReturnType<typeof startBootstrappedVault>>;

let world: World | undefined;
afterEach(async () => {
  await world?.emulator.stop();
  world = undefined;
});

const HOUR = 3_600_000;

async function bootstrappedAuthority() {
  world = await startBootstrappedVault();
  await world.bootstrap();
  const tls = await mintSeedToken(world.root, world.emulator.rootToken);
  const client = world.client(tls.token);
  const authority = (mount = 'pki_int') =>
    new VaultCertificateAuthority(client, {
      mount,
      serverRole: 'nomad-server',
      clientRole: 'nomad-client',
      cliRole: 'nomad-cli',
    });
  return { current: world, client, authority };
}

async function isRevoked(current: World, serial: string): Promise<boolean> {
  const { data } = await current.root.read<{ data: { revocation_time: number } }>(
    `pki_int/cert/${serial}`,
    current.emulator.rootToken,
  );
  return data.revocation_time > 0;
}

describe('revoking a certificate serial', () => {
  it('revokes a serial once and treats revoking it again as done (Vault answers 200 with the first time)', async () => {
    const { current, client, authority } = await bootstrappedAuthority();
    const signed = await signServerCertificate(client);

    await authority().revoke(signed.serial);
    await authority().revoke(signed.serial);

    expect(await isRevoked(current, signed.serial)).toBe(true);
  });

  it('treats a serial Vault no longer holds (400 "certificate with serial … not found.") as done', async () => {
    const { authority } = await bootstrappedAuthority();

    await expect(authority().revoke('01:02:03:04')).resolves.toBeUndefined();
  });

  it('treats an expired certificate (200 with a warning) as done', async () => {
    const { current, client, authority } = await bootstrappedAuthority();
    const signed = await signServerCertificate(client);
    current.clock.advance(2 * HOUR);

    await expect(authority().revoke(signed.serial)).resolves.toBeUndefined();
  });

  it('fails when the mount does not exist, although Vault’s 404 text says "route entry not found"', async () => {
    await bootstrappedAuthority();
    const rootAuthority = new VaultCertificateAuthority(world!.client(world!.emulator.rootToken), {
      mount: 'pki_missing',
      serverRole: 'nomad-server',
      clientRole: 'nomad-client',
      cliRole: 'nomad-cli',
    });
    await expect(rootAuthority.revoke('01:02:03:04')).rejects.toThrow(/404: no handler for route/);
  });

  it('fails on a real refusal: 403 permission denied, 500, or a 400 that is not "not found"', async () => {
    const { current, client, authority } = await bootstrappedAuthority();
    const signed = await signServerCertificate(client);
    const failures: [string, number, string, new (...args: never[]) => Error][] = [
      ['403', 403, '1 error occurred:\n\t* permission denied\n\n', VaultPermissionDeniedError],
      ['500', 500, 'internal error', VaultUnavailableError],
      ['issuer serial', 400, 'adding issuer (id: 7c1d) to its own CRL is not allowed', VaultBadRequestError],
    ];

    for (const [what, status, text, type] of failures) {
      // Twice: after a 403 the client re-reads its token once and tries again.
      current.emulator.answerWithError('pki_int/revoke', status, text, 2);
      await expect(authority().revoke(signed.serial), what).rejects.toBeInstanceOf(type);
    }
    expect(await isRevoked(current, signed.serial)).toBe(false);
  });
});

describe('the chain nodes are told to trust', () => {
  it('is read from Vault (issuer first, root last) and recognises only the leaves its issuer signed', async () => {
    // Arrange: a leaf of another Vault, with a CA of the same names
    const other = await startBootstrappedVault();
    try {
      await other.bootstrap();
      const fromAnotherVault = await signServerCertificate(other.client(other.emulator.rootToken));
      const { current, authority } = await bootstrappedAuthority();
      const signed = await signServerCertificate(current.client(current.emulator.rootToken));

      // Act
      const chain = await authority().trustedChain();

      // Assert
      expect(chain.pems).toEqual(signed.caChainPems);
      expect(chain.pems.length).toBeGreaterThanOrEqual(2);
      expect(await chain.issued(signed.certificatePem)).toBe(true);
      expect(await chain.issued(fromAnotherVault.certificatePem)).toBe(false);
      expect(await chain.issued('not a certificate')).toBe(false);
    } finally {
      await other.emulator.stop();
    }
  });
});
