import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startVaultEmulator, type VaultEmulator } from '../../local/vault';
import { ValidationError } from '../../shared/errors';
import { VaultClient } from '../../shared/vault/client';
import { VaultIndexNotPresentError, VaultRedirectRefusedError } from '../../shared/vault/errors';

let emulator: VaultEmulator | undefined;
afterEach(async () => {
  await emulator?.stop();
  emulator = undefined;
});

function clientWithRecordedBackoff(address: string, attempts: number) {
  const backoffs: number[] = [];
  const client = new VaultClient({
    address,
    timeoutMs: 5_000,
    attempts,
    backoffBaseMs: 10,
    sleep: async (ms) => {
      backoffs.push(ms);
    },
  });
  return { client, backoffs };
}

describe('the product’s Vault client and 412 "required index state not present"', () => {
  it('retries a 412 with its backoff, as Vault’s own Go client does, and then succeeds', async () => {
    emulator = await startVaultEmulator();
    const { client, backoffs } = clientWithRecordedBackoff(emulator.address, 3);
    emulator.answerIndexNotPresent(2);

    const lookup = await client.read<{ data: { policies: string[] } }>(
      'auth/token/lookup-self',
      emulator.rootToken,
    );

    expect(lookup.data.policies).toEqual(['root']);
    expect(backoffs).toHaveLength(2);
    expect(emulator.requestLog.map((entry) => entry.status)).toEqual([412, 412, 200]);
  });

  it('gives up after its attempts with a retryable error that names the 412 and not the token', async () => {
    emulator = await startVaultEmulator();
    const { client } = clientWithRecordedBackoff(emulator.address, 2);
    emulator.answerIndexNotPresent(5);

    const failure = await client.read('auth/token/lookup-self', emulator.rootToken).catch((error) => error);

    expect(failure).toBeInstanceOf(VaultIndexNotPresentError);
    expect(failure.retryable).toBe(true);
    expect(failure.message).toContain('412: required index state not present');
    expect(failure.message).not.toContain(emulator.rootToken);
    expect(emulator.requestLog).toHaveLength(2);
  });
});

/** A loopback HTTP server that records what reached it and answers with `answer`. */
async function recordingServer(
  answer: (headers: IncomingHttpHeaders) => [number, Record<string, string>, string],
) {
  const seen: IncomingHttpHeaders[] = [];
  const server: Server = createServer((request, response) => {
    seen.push(request.headers);
    const [status, headers, body] = answer(request.headers);
    response.writeHead(status, headers).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  return { seen, address: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

describe('the product’s Vault client and where the token may go', () => {
  it('never follows a redirect: the token reaches no other address and the error names the redirect', async () => {
    // Arrange: "Vault" redirects to a plain-http listener that records what it is sent
    const elsewhere = await recordingServer(() => [
      200,
      { 'content-type': 'application/json' },
      '{"data":{}}',
    ]);
    const vault = await recordingServer(() => [
      307,
      { location: `${elsewhere.address}/v1/auth/token/lookup-self` },
      '',
    ]);
    const client = new VaultClient({ address: vault.address, timeoutMs: 5_000, attempts: 3 });

    // Act
    const failure = await client.read('auth/token/lookup-self', 's.secret-token').catch((error) => error);

    // Assert
    expect(failure).toBeInstanceOf(VaultRedirectRefusedError);
    expect(failure.retryable).toBe(false);
    expect(failure.message).toContain('redirect (307)');
    expect(failure.message).not.toContain('s.secret-token');
    expect(vault.seen).toHaveLength(1);
    expect(vault.seen[0]!['x-vault-token']).toBe('s.secret-token');
    expect(elsewhere.seen).toEqual([]);
  });

  it('refuses plain http to anything but a loopback address, and an address with a path', () => {
    const build = (address: string) => () => new VaultClient({ address, timeoutMs: 1_000 });

    expect(build('http://vault.internal:8200')).toThrow(ValidationError);
    expect(build('http://vault.internal:8200')).toThrow(/invalid Vault client options/);
    expect(build('https://vault.internal:8200/ui')).toThrow(ValidationError);
    expect(build('https://vault.internal:8200')).not.toThrow();
    expect(build('http://127.0.0.1:8200')).not.toThrow();
  });

  it('reads no VAULT_* environment variable: the namespace and token come from its options only', async () => {
    // Arrange
    const vault = await recordingServer(() => [200, { 'content-type': 'application/json' }, '{"data":{}}']);
    const saved = { ...process.env };
    Object.assign(process.env, {
      VAULT_TOKEN: 's.from-env',
      VAULT_NAMESPACE: 'evil',
      VAULT_ADDR: 'http://127.0.0.2:1',
    });
    try {
      // Act
      await new VaultClient({ address: vault.address, timeoutMs: 5_000 }).read('sys/mounts', 's.given');
    } finally {
      process.env = saved;
    }

    // Assert
    expect(vault.seen[0]!['x-vault-token']).toBe('s.given');
    expect(vault.seen[0]!['x-vault-namespace']).toBeUndefined();
  });
});
