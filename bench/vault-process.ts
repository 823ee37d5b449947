// The Vault emulator in a process of its own, so that its CPU time is Vault's alone and not the
// client's that makes the CSRs and sends the requests. Forked with an IPC channel by
// bench/vault-cost.ts: it answers `usage` with this process's CPU time and the requests it served.
import { startVaultEmulator } from '../local/vault';
import { bootstrapVault } from '../ops/vault-bootstrap/apply';
import { VaultClient } from '../shared/vault/client';

export type ParentMessage = { type: 'usage' } | { type: 'stop' };

export type ChildMessage =
  | { type: 'ready'; address: string; caPem: string; rootToken: string }
  | { type: 'usage'; userMicros: number; systemMicros: number; requests: number }
  | { type: 'failed'; message: string };

/** Bootstrap asks for an admin role; nothing in the bench logs in with it. */
const BOOTSTRAP_SPEC = {
  adminRoleArns: ['arn:aws:iam::123456789012:role/nomad-rotator-rotate-token'],
  iamServerIdHeader: 'vault.bench.local',
};

const send = (message: ChildMessage) => process.send?.(message);

async function main(): Promise<void> {
  if (process.send === undefined) throw new Error('vault-process runs forked, with an IPC channel');
  // TLS as every production Vault listens: its handshakes and record encryption are Vault's CPU too.
  const emulator = await startVaultEmulator({ tls: true });
  const operator = new VaultClient({
    address: emulator.address,
    caBundlePem: emulator.caPem!,
    timeoutMs: 10_000,
    attempts: 1,
  });
  await bootstrapVault(operator, emulator.rootToken, BOOTSTRAP_SPEC);
  const stop = async () => {
    await emulator.stop();
    process.exit(0);
  };
  process.on('message', (message: ParentMessage) => {
    if (message.type === 'stop') void stop();
    else {
      const usage = process.cpuUsage();
      send({
        type: 'usage',
        userMicros: usage.user,
        systemMicros: usage.system,
        requests: emulator.requestLog.length,
      });
    }
  });
  // A parent that died without saying stop must not leave this Vault running.
  process.on('disconnect', () => void stop());
  send({ type: 'ready', address: emulator.address, caPem: emulator.caPem!, rootToken: emulator.rootToken });
}

main().catch((error: unknown) => {
  send({ type: 'failed', message: error instanceof Error ? error.message : String(error) });
  process.exit(1);
});
