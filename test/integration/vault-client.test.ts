import { afterEach, describe, expect, it } from 'vitest';
import { startVaultEmulator, type VaultEmulator } from '../../local/vault';
import { VaultClient } from '../../shared/vault/client';
import { VaultIndexNotPresentError } from '../../shared/vault/errors';

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
