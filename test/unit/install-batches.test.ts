import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { unpackCertificates } from '../../local/sim/node-certificates';
import { packCertificates, SsmCertificateCommands } from '../../shared/aws/certificate-commands';
import type { CommandGateway } from '../../shared/aws/ports';
import type { SignedPair } from '../../shared/certificates/commands';
import { parseClusterConfig } from '../../shared/config';
import { type DocumentParameters, validateDocumentParameters } from '../../shared/documents';
import { MINIMAL_CLUSTER } from '../helpers/cluster-config';

const cluster = parseClusterConfig(MINIMAL_CLUSTER);
const CHAIN = `-----BEGIN CERTIFICATE-----\n${randomBytes(600).toString('base64')}\n-----END CERTIFICATE-----\n`;
const request = { role: 'client', mode: 'reload', chainPem: CHAIN, caBundlePem: CHAIN } as const;

/** What a node's pair looks like to the packer: a shared head (issuer, extensions) and random bytes. */
function pair(randomBytesPerCertificate: number): SignedPair {
  const leaf = () =>
    `-----BEGIN CERTIFICATE-----\n${'MIICdzCCAh2gAwIBAgIU'.repeat(20)}${randomBytes(randomBytesPerCertificate).toString('base64')}\n-----END CERTIFICATE-----\n`;
  return { agentCertificatePem: leaf(), cliCertificatePem: leaf() };
}

function sentParameters() {
  const sent: DocumentParameters<'install'>[] = [];
  const gateway = {
    send: async (_kind: string, _targets: readonly string[], parameters: DocumentParameters<'install'>) => {
      sent.push(parameters);
      return 'command-1';
    },
  } as unknown as CommandGateway;
  return { commands: new SsmCertificateCommands(gateway, cluster), sent };
}

describe('install batches', () => {
  it('sends a wave of 50 P-256-sized pairs as one command', () => {
    const { commands } = sentParameters();
    const items = Array.from({ length: 50 }, () => ({ pair: pair(200) }));

    expect(commands.installBatches(items, request).map((batch) => batch.length)).toEqual([50]);
  });

  it('splits pairs that do not compress into commands that each fit SSM’s 64 KB, in order', async () => {
    const { commands, sent } = sentParameters();
    const items = Array.from({ length: 40 }, (_, index) => ({ index, pair: pair(2_000) }));

    const batches = commands.installBatches(items, request);
    for (const [index, batch] of batches.entries())
      await commands.install(
        batch.map((item) => `i-${String(item.index).padStart(17, '0')}`),
        { ...request, attemptId: `attempt-${index}`, pairs: batch.map((item) => item.pair) },
        'key',
      );

    expect(batches.length).toBeGreaterThan(1);
    expect(batches.flat().map((item) => item.index)).toEqual(items.map((item) => item.index));
    for (const parameters of sent)
      expect(() => validateDocumentParameters('install', parameters)).not.toThrow();
  });

  it('gives a pair too big for any command a batch of its own, which the size check refuses', async () => {
    const { commands, sent } = sentParameters();
    const huge = { pair: pair(40_000) };

    const batches = commands.installBatches([{ pair: pair(200) }, huge, { pair: pair(200) }], request);
    await commands.install(
      ['i-00000000000000001'],
      { ...request, attemptId: 'abc123-0f0f0f0f', pairs: [huge.pair] },
      'k',
    );

    expect(batches.map((batch) => batch.length)).toEqual([1, 1, 1]);
    // The gateway checks every command this way before SendCommand.
    expect(() => validateDocumentParameters('install', sent[0]!)).toThrow(
      /invalid install command parameters: certificates/,
    );
  });

  it('packs what a node unpacks back to the same PEMs', () => {
    const pairs = [pair(200), pair(200)];

    expect(unpackCertificates(packCertificates(pairs))).toBe(
      pairs.flatMap((each) => [each.agentCertificatePem, each.cliCertificatePem]).join('\n'),
    );
  });
});
