import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { main } from '../../cli/main';
import { x509 } from '../../shared/certificates/x509';
import type { ClusterConfigInput } from '../../shared/config';
import { ValidationError } from '../../shared/errors';
import { VaultCertificateAuthority } from '../../shared/vault/authority';
import { testInventory } from '../helpers/inventory';
import { UNCHECKED_TRUST_ANCHORS } from '../helpers/trust-anchors';
import {
  mintSeedToken,
  ROTATOR_ROLE_ARN,
  SERVER_ID_HEADER,
  startBootstrappedVault,
} from '../helpers/vault-access-world';

type World = Awaited<ReturnType<typeof startBootstrappedVault>>;

let world: World | undefined;
afterEach(async () => {
  await world?.emulator.stop();
  world = undefined;
});

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
const EC_P384 = { name: 'ECDSA', namedCurve: 'P-384', hash: 'SHA-384' };
const RSA_2048 = {
  name: 'RSASSA-PKCS1-v1_5',
  modulusLength: 2048,
  publicExponent: new Uint8Array([1, 0, 1]),
  hash: 'SHA-256',
};

async function csrWith(algorithm: typeof EC_P256 | typeof RSA_2048): Promise<string> {
  const keys = (await crypto.subtle.generateKey(algorithm, false, ['sign', 'verify'])) as Parameters<
    typeof x509.Pkcs10CertificateRequestGenerator.create
  >[0]['keys'];
  const request = await x509.Pkcs10CertificateRequestGenerator.create({
    name: 'CN=node',
    keys,
    signingAlgorithm: algorithm,
  });
  return request.toString('pem');
}

function cluster(certificates: Partial<ClusterConfigInput['certificates']> = {}): ClusterConfigInput {
  return {
    name: 'prod',
    inventory: testInventory('prod'),
    vault: {
      address: 'https://vault.example.internal:8200',
      tokenSecretId: 'nomad/prod/vault-token',
      tokenRotation: { iamServerIdHeader: SERVER_ID_HEADER },
    },
    certificates: { ...UNCHECKED_TRUST_ANCHORS, ...certificates },
  };
}

const writes = (current: World) =>
  current.emulator.requestLog.filter((entry) => entry.method === 'POST' || entry.method === 'DELETE');

async function signWith(current: World, csr: string, names: { commonName: string; dnsNames: string[] }) {
  const tls = await mintSeedToken(current.root, current.emulator.rootToken);
  const authority = new VaultCertificateAuthority(current.client(tls.token), {
    mount: 'pki_int',
    agentRole: 'nomad-cluster',
    cliRole: 'nomad-cli',
  });
  return authority.sign({
    kind: 'server',
    csrPem: csr,
    names: { ...names, ipAddresses: ['127.0.0.1'] },
    ttlSeconds: 3600,
  });
}

describe('vault-bootstrap refuses, before writing anything, what the roles would refuse at signing', () => {
  it.each([
    [
      { keyType: 'ec' },
      'rsa-2048',
      'allowed: ec-p256 with this spec, or spec keyType rsa with keyBits of at most 2048',
    ],
    [{ keyType: 'ec', keyBits: 384 }, 'ec-p256', 'spec keyType ec with keyBits of at most 256'],
    [{ keyType: 'rsa' }, 'ec-p256', 'allowed: rsa-2048 with this spec, or spec keyType ec'],
  ] as const)('a spec of %o for a cluster with keyType %s', async (spec, keyType, allowed) => {
    world = await startBootstrappedVault({ spec });

    const refused = await world.bootstrap(false, [cluster({ keyType })]).catch((error) => error);

    expect(refused).toBeInstanceOf(ValidationError);
    expect(refused.message).toContain('clusters[0] (prod).certificates.keyType');
    expect(refused.message).toContain(allowed);
    expect(refused.message).toContain('nothing was written');
    expect(world.emulator.requestLog).toEqual([]);
  });

  it('extra server DNS SANs outside the allowed domains, naming the field and what is allowed', async () => {
    world = await startBootstrappedVault();

    const refused = await world
      .bootstrap(false, [cluster({ serverExtraDnsSans: ['nomad.global.nomad', 'nomad.example.com'] })])
      .catch((error) => error);

    expect(refused).toBeInstanceOf(ValidationError);
    expect(refused.issues).toEqual([
      'clusters[0] (prod).certificates.serverExtraDnsSans: nomad.example.com is not allowed by the roles; allowed: *.global.nomad and localhost',
    ]);
    expect(world.emulator.requestLog).toEqual([]);
  });

  it('a cluster of another region or on other role names', async () => {
    world = await startBootstrappedVault();

    const refused = await world
      .bootstrap(false, [
        {
          ...cluster(),
          region: 'eu',
          vault: { ...cluster().vault, agentRole: 'nomad-agent' },
        },
      ])
      .catch((error) => error);

    expect(refused.issues).toEqual([
      "clusters[0] (prod).region: eu is not the spec's region global; the roles allow *.global.nomad and localhost only",
      "clusters[0] (prod).vault.agentRole: nomad-agent is not the spec's agentRole nomad-cluster",
    ]);
    expect(writes(world)).toEqual([]);
  });

  it('bootstraps a cluster that agrees, whose extra SAN under the region then signs', async () => {
    world = await startBootstrappedVault({ spec: { keyType: 'ec', keyBits: 224 } });
    await world.bootstrap(false, [
      cluster({ keyType: 'ec-p256', serverExtraDnsSans: ['nomad.global.nomad'] }),
    ]);

    const signed = await signWith(world, await csrWith(EC_P256), {
      commonName: 'server.global.nomad',
      dnsNames: ['server.global.nomad', 'localhost', 'nomad.global.nomad'],
    });

    expect(signed.certificatePem).toContain('BEGIN CERTIFICATE');
  });
});

describe('nomad-rotator vault-bootstrap --clusters', () => {
  it('reads the deployed clusters file and refuses before any request reaches Vault', async () => {
    world = await startBootstrappedVault();
    const dir = await mkdtemp(join(tmpdir(), 'vault-bootstrap-cli-'));
    try {
      await writeFile(
        join(dir, 'spec.json'),
        JSON.stringify({ adminRoleArns: [ROTATOR_ROLE_ARN], iamServerIdHeader: SERVER_ID_HEADER }),
      );
      await writeFile(join(dir, 'clusters.json'), JSON.stringify([cluster({ keyType: 'rsa-2048' })]));

      const refused = await main(
        ['vault-bootstrap', '--spec', join(dir, 'spec.json'), '--clusters', join(dir, 'clusters.json')],
        { VAULT_ADDR: world.emulator.address, VAULT_TOKEN: world.emulator.rootToken },
      ).catch((error) => error);

      expect(refused).toBeInstanceOf(ValidationError);
      expect(refused.message).toContain('clusters[0] (prod).certificates.keyType: rsa-2048');
      expect(world.emulator.requestLog).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('Vault’s sign/:role enforcement, as cert_util.go does it', () => {
  it('refuses a key of another type: "role requires keys of type ec"', async () => {
    world = await startBootstrappedVault();
    await world.bootstrap();

    await expect(
      signWith(world, await csrWith(RSA_2048), { commonName: 'server.global.nomad', dnsNames: [] }),
    ).rejects.toThrow('400: role requires keys of type ec');
  });

  it('treats key_bits as a minimum: P-384 passes an ec/256 role, P-256 fails an ec/384 role', async () => {
    world = await startBootstrappedVault();
    await world.bootstrap();
    const names = { commonName: 'server.global.nomad', dnsNames: ['server.global.nomad'] };

    await expect(signWith(world, await csrWith(EC_P384), names)).resolves.toMatchObject({
      certificatePem: expect.stringContaining('BEGIN CERTIFICATE'),
    });
    await world.root.write(
      'pki_int/roles/nomad-cluster',
      { allowed_domains: 'global.nomad', allow_subdomains: true, key_type: 'ec', key_bits: 384 },
      world.emulator.rootToken,
    );
    await expect(signWith(world, await csrWith(EC_P256), names)).rejects.toThrow(
      "400: role requires a minimum of a 384-bit key, but CSR's key is 256 bits",
    );
  });

  it('refuses a DNS SAN outside the allowed domains: "subject alternate name X not allowed by this role"', async () => {
    world = await startBootstrappedVault();
    await world.bootstrap();

    await expect(
      signWith(world, await csrWith(EC_P256), {
        commonName: 'server.global.nomad',
        dnsNames: ['server.global.nomad', 'nomad.example.com'],
      }),
    ).rejects.toThrow('400: subject alternate name nomad.example.com not allowed by this role');
  });
});
