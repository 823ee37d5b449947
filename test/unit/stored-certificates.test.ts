import { webcrypto } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { x509 } from '../../shared/certificates/x509';
import { deliverResult, fakeCluster } from '../helpers/fake-cluster';

const clients = ['i-0000000000000000a', 'i-0000000000000000b'];
const FAR = Number.MAX_SAFE_INTEGER;
const ec = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

async function selfSigned(name: string): Promise<string> {
  const keys = (await webcrypto.subtle.generateKey(ec, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '0bad',
    name,
    notBefore: new Date(Date.UTC(2026, 0, 1)),
    notAfter: new Date(Date.UTC(2036, 0, 1)),
    keys,
    signingAlgorithm: ec,
  });
  return cert.toString('pem');
}

/**
 * A wave of two clients: the first one's prepare result is in (its signed pair stored on its
 * attempt item), the install waits for the second. Then someone with write access to the table
 * changes what is stored, and the second prepare result lets the install go out.
 */
async function installAfterTampering(
  tamper: (carry: Record<string, unknown>) => Promise<Record<string, unknown>>,
) {
  const h = await fakeCluster(clients.map((instanceId) => ({ instanceId, role: 'client' as const })));
  await h.rotation().tick({ deadline: FAR, owner: 'tick-1', actor: 'schedule' });
  const prepare = h.fleet.commands.findIndex((command) => command.kind === 'prepare');
  const results = [...(await h.fleet.complete(h.fleet.commands[prepare]!))];
  const [first, second] = results;
  const deliver = (invocation: { commandId: string; instanceId: string }) =>
    deliverResult(h, invocation.commandId, invocation.instanceId);
  await deliver(first!);
  const rollout = (await h.table.getActiveRollout('prod'))!;
  const stored = (await h.table.getAttempt('prod', rollout.rolloutId, first!.instanceId))!;
  await h.table.updateAttempt(
    stored,
    { state: stored.state, token: stored.token },
    { carry: await tamper(structuredClone(stored.carry) as Record<string, unknown>) },
    h.clock.now(),
  );
  await deliver(second!);
  return { h, tampered: first!.instanceId, untouched: second!.instanceId };
}

describe('an install is built from Vault, never from what the table holds', () => {
  it('sends the CA chain read from Vault, whatever CA bundle is planted on the attempt', async () => {
    // Arrange
    const attackerRoot = await selfSigned('CN=attacker-root');

    // Act
    const { h } = await installAfterTampering(async (carry) => ({
      ...carry,
      signed: { ...(carry.signed as object), caBundlePem: attackerRoot, chainPem: attackerRoot },
    }));

    // Assert
    const install = h.fleet.commands.find((command) => command.kind === 'install')!;
    const vaultChain = (await h.authority.trustedChain()).pems.join('\n');
    expect(Buffer.from(install.parameters.caBundle!, 'base64').toString()).toBe(vaultChain);
    expect(JSON.stringify(install.parameters)).not.toContain(Buffer.from(attackerRoot).toString('base64'));
  });

  it('never installs a stored leaf Vault did not sign: that node fails with the reason and an alarm, the other goes on', async () => {
    // Arrange
    const forged = await selfSigned('CN=client.global.nomad');

    // Act
    const { h, tampered, untouched } = await installAfterTampering(async (carry) => ({
      ...carry,
      signed: { ...(carry.signed as object), agentCertificatePem: forged },
    }));

    // Assert
    const installs = h.fleet.commands.filter((command) => command.kind === 'install');
    expect(installs.map((command) => command.instanceIds)).toEqual([[untouched]]);
    expect(JSON.stringify(installs[0]!.parameters)).not.toContain(Buffer.from(forged).toString('base64'));
    const node = await h.table.getNode('prod', tampered);
    expect(node?.lastError).toBe('stored-certificate-not-signed-by-vault');
    expect(h.telemetry.total('PushFailed')).toBe(1);
    expect(h.events.events.filter((event) => event.type === 'CertificatePushFailed')).toHaveLength(1);
  });
});

describe('identity is asked of EC2 when Vault signs, never taken from the node item', () => {
  /** Both clients' prepares sent; then the first one's node item is rewritten before its result is judged. */
  async function prepareAfterNodeTampering(changes: { role?: 'server'; ip?: string }) {
    const h = await fakeCluster(clients.map((instanceId) => ({ instanceId, role: 'client' as const })));
    await h.rotation().tick({ deadline: FAR, owner: 'tick-1', actor: 'schedule' });
    const prepare = h.fleet.commands.find((command) => command.kind === 'prepare')!;
    const [first, second] = await h.fleet.complete(prepare);
    const stored = (await h.table.getNode('prod', first!.instanceId))!;
    await h.table.updateNode('prod', first!.instanceId, {}, changes, h.clock.now());
    await deliverResult(h, first!.commandId, first!.instanceId);
    await deliverResult(h, second!.commandId, second!.instanceId);
    return { h, tampered: stored.instanceId, untouched: second!.instanceId };
  }

  it('a client whose item was rewritten to server gets no server certificate; the other client goes on', async () => {
    // Act
    const { h, tampered } = await prepareAfterNodeTampering({ role: 'server' });

    // Assert
    expect(h.authority.signed.map((entry) => entry.kind)).not.toContain('server');
    expect(h.authority.signed.filter((entry) => entry.kind === 'client')).toHaveLength(1);
    const node = await h.table.getNode('prod', tampered);
    expect(node?.lastError).toBe('identity-mismatch');
    expect(h.telemetry.total('PushFailed')).toBe(1);
  });

  it('a server IP planted on the item never reaches a certificate', async () => {
    // Act
    const { h, tampered } = await prepareAfterNodeTampering({ ip: '203.0.113.7' });

    // Assert
    expect(h.authority.signed.filter((entry) => entry.kind === 'client')).toHaveLength(1);
    expect((await h.table.getNode('prod', tampered))?.lastError).toBe('identity-mismatch');
  });
});
