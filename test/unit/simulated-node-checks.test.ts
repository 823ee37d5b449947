import 'reflect-metadata';
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type BatchCertificate,
  type ParsedInstall,
  parseInstall,
  pendingKey,
  refusal,
} from '../../local/sim/node-certificates';
import { packCertificates } from '../../shared/aws/certificate-commands';
import { validateCsr } from '../../shared/certificates/csr';
import { opensslCa } from '../helpers/openssl-ca';

type Ca = Awaited<ReturnType<typeof opensslCa>>;
let ca: Ca;
let otherCa: Ca;

beforeAll(async () => {
  [ca, otherCa] = await Promise.all([opensslCa(), opensslCa()]);
});

afterAll(async () => {
  await Promise.all([ca?.dispose(), otherCa?.dispose()]);
});

const base64 = (text: string) => Buffer.from(text).toString('base64');
const DAY = 86_400;

/** A leaf for a fresh simulated node key, signed by `signer`, as one install command carries it. */
async function installOf(signer: Ca, san: string, bundle = ca) {
  const agent = pendingKey('nomad-rotator-agent');
  const cli = pendingKey('nomad-rotator-cli');
  const [agentLeaf, cliLeaf] = await Promise.all([
    signer.sign(agent.csrDerBase64, san, 'serverAuth,clientAuth'),
    signer.sign(cli.csrDerBase64, 'DNS:cli.global.nomad', 'clientAuth'),
  ]);
  const install = (await parseInstall({
    certificates: packCertificates([{ agentCertificatePem: agentLeaf.pem, cliCertificatePem: cliLeaf.pem }]),
    chain: base64(signer.intermediate),
    caBundle: base64(bundle.root),
  })) as ParsedInstall;
  return {
    install,
    leaf: install.byPublicKey.get(agent.publicKeyId) as BatchCertificate,
    serial: agentLeaf.serial,
  };
}

const expected = { dnsName: 'server.global.nomad', minimumValiditySeconds: 3600, now: Date.now() };

describe('the simulated node makes its CSR as prepare.sh does', () => {
  it('is a P-256 request self-signed by its key, as openssl and the rotator read it', async () => {
    const { csrDerBase64 } = pendingKey('nomad-rotator-agent');

    const opensslReading = execFileSync(
      'openssl',
      ['req', '-inform', 'DER', '-verify', '-noout', '-subject', '-text'],
      { input: Buffer.from(csrDerBase64, 'base64'), stdio: ['pipe', 'pipe', 'pipe'] },
    ).toString();

    expect(opensslReading).toMatch(/subject=CN ?= ?nomad-rotator-agent/);
    expect(opensslReading).toContain('NIST CURVE: P-256');
    expect(await validateCsr(csrDerBase64, 'ec-p256', 'agentCsr')).toContain('BEGIN CERTIFICATE REQUEST');
  });
});

describe('the simulated node checks an install as install.sh does with openssl', () => {
  it('accepts its own key’s leaf signed through the chain to a bundled root, and reads the serial as openssl prints it', async () => {
    const { install, leaf, serial } = await installOf(ca, 'DNS:server.global.nomad,DNS:localhost');

    expect(refusal(leaf, install, expected)).toBeUndefined();
    expect(leaf.serial).toBe(serial.toUpperCase());
    expect(leaf.notAfter - leaf.notBefore).toBe(DAY);
  });

  it('refuses a leaf whose chain ends at a root the bundle does not hold', async () => {
    const { install, leaf } = await installOf(otherCa, 'DNS:server.global.nomad');

    expect(refusal(leaf, install, expected)).toBe('chain-verification-failed');
  });

  it('refuses a leaf without the role’s name, and one that expires within the minimum validity', async () => {
    const wrongName = await installOf(ca, 'DNS:client.global.nomad');
    const rightName = await installOf(ca, 'DNS:server.global.nomad');

    expect(refusal(wrongName.leaf, wrongName.install, expected)).toBe('wrong-names');
    expect(refusal(rightName.leaf, rightName.install, { ...expected, minimumValiditySeconds: 2 * DAY })).toBe(
      'validity-too-short',
    );
  });

  it('reads a bundle that is not base64 of gzip as a bad encoding', async () => {
    const parsed = await parseInstall({
      certificates: base64('not gzip'),
      chain: '',
      caBundle: base64(ca.root),
    });

    expect(parsed).toBe('bad-encoding');
  });
});
