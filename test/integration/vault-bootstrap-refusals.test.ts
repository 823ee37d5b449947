import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { main } from '../../cli/main';
import type { CertificateKind } from '../../shared/certificates/names';
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

async function signWith(
  current: World,
  csr: string,
  names: { commonName: string; dnsNames: string[]; ipAddresses?: string[] },
  kind: CertificateKind = 'server',
) {
  const tls = await mintSeedToken(current.root, current.emulator.rootToken);
  const authority = new VaultCertificateAuthority(current.client(tls.token), {
    mount: 'pki_int',
    serverRole: 'nomad-server',
    clientRole: 'nomad-client',
    cliRole: 'nomad-cli',
  });
  return authority.sign({
    kind,
    csrPem: csr,
    names: { ipAddresses: kind === 'cli' ? [] : ['127.0.0.1'], ...names },
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

  it('extra server DNS SANs that are names of another kind, naming the field and what is allowed', async () => {
    world = await startBootstrappedVault();

    const refused = await world
      .bootstrap(false, [cluster({ serverExtraDnsSans: ['nomad.example.com', 'client.global.nomad'] })])
      .catch((error) => error);

    expect(refused).toBeInstanceOf(ValidationError);
    expect(refused.issues).toEqual([
      "clusters[0] (prod).certificates.serverExtraDnsSans: client.global.nomad is a name Nomad verifies as a client, a CLI or another region's server; the server role admits it only for servers of global, so it is refused; allowed: any other hostname",
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
          vault: { ...cluster().vault, serverRole: 'nomad-agent', clientRole: 'nomad-agent' },
        },
      ])
      .catch((error) => error);

    expect(refused.issues).toEqual([
      "clusters[0] (prod).region: eu is not the spec's region global; the roles allow server.global.nomad, client.global.nomad and cli.global.nomad only",
      "clusters[0] (prod).vault.serverRole: nomad-agent is not the spec's serverRole nomad-server",
      "clusters[0] (prod).vault.clientRole: nomad-agent is not the spec's clientRole nomad-client",
    ]);
    expect(writes(world)).toEqual([]);
  });

  it('bootstraps a cluster that agrees, whose extra SANs then sign on the server role only', async () => {
    world = await startBootstrappedVault({ spec: { keyType: 'ec', keyBits: 224 } });
    await world.bootstrap(false, [
      cluster({ keyType: 'ec-p256', serverExtraDnsSans: ['nomad.global.nomad', 'nomad.example.com'] }),
    ]);

    const signed = await signWith(world, await csrWith(EC_P256), {
      commonName: 'server.global.nomad',
      dnsNames: ['server.global.nomad', 'localhost', 'nomad.global.nomad', 'nomad.example.com'],
    });

    expect(signed.certificatePem).toContain('BEGIN CERTIFICATE');
    await expect(
      signWith(
        world,
        await csrWith(EC_P256),
        { commonName: 'client.global.nomad', dnsNames: ['client.global.nomad', 'nomad.example.com'] },
        'client',
      ),
    ).rejects.toThrow('400: subject alternate name nomad.example.com not allowed by this role');
  });
});

describe('each role signs only the names of its kind (bare domains, no subdomains)', () => {
  const P256 = async () => csrWith(EC_P256);
  const names = (commonName: string, dnsNames = [commonName]) => ({ commonName, dnsNames });

  it('the server role refuses a client name and any other name under the region', async () => {
    world = await startBootstrappedVault();
    await world.bootstrap();

    await expect(signWith(world, await P256(), names('client.global.nomad'))).rejects.toThrow(
      '400: common name client.global.nomad not allowed by this role',
    );
    await expect(
      signWith(
        world,
        await P256(),
        names('server.global.nomad', ['server.global.nomad', 'cli.global.nomad']),
      ),
    ).rejects.toThrow('400: subject alternate name cli.global.nomad not allowed by this role');
    for (const other of ['vault.global.nomad', 'x.server.global.nomad', 'global.nomad']) {
      await expect(signWith(world, await P256(), names(other)), other).rejects.toThrow(
        `400: common name ${other} not allowed by this role`,
      );
    }
  });

  it('the client role refuses the server name; it signs its own with localhost and 127.0.0.1', async () => {
    world = await startBootstrappedVault();
    await world.bootstrap();

    await expect(signWith(world, await P256(), names('server.global.nomad'), 'client')).rejects.toThrow(
      '400: common name server.global.nomad not allowed by this role',
    );
    await expect(signWith(world, await P256(), names('x.client.global.nomad'), 'client')).rejects.toThrow(
      '400: common name x.client.global.nomad not allowed by this role',
    );
    const signed = await signWith(
      world,
      await P256(),
      names('client.global.nomad', ['client.global.nomad', 'localhost']),
      'client',
    );
    expect(signed.certificatePem).toContain('BEGIN CERTIFICATE');
  });

  it('the CLI role refuses server and client names, localhost and IP SANs', async () => {
    world = await startBootstrappedVault();
    await world.bootstrap();

    for (const other of ['server.global.nomad', 'client.global.nomad']) {
      await expect(signWith(world, await P256(), names(other), 'cli'), other).rejects.toThrow(
        `400: common name ${other} not allowed by this role`,
      );
    }
    await expect(
      signWith(world, await P256(), names('cli.global.nomad', ['cli.global.nomad', 'localhost']), 'cli'),
    ).rejects.toThrow('400: subject alternate name localhost not allowed by this role');
    await expect(
      signWith(world, await P256(), { ...names('cli.global.nomad'), ipAddresses: ['127.0.0.1'] }, 'cli'),
    ).rejects.toThrow('400: IP Subject Alternative Names are not allowed in this role');
  });

  it("sets each role's max_ttl to the clusters' certificate TTL and says so", async () => {
    world = await startBootstrappedVault();

    const report = await world.bootstrap(false, [cluster({ ttl: '48h' })]);

    for (const role of ['nomad-server', 'nomad-client', 'nomad-cli']) {
      const read = await world.root.read<{ data: { max_ttl: number } }>(
        `pki_int/roles/${role}`,
        world.emulator.rootToken,
      );
      expect(read.data.max_ttl, role).toBe(48 * 3600);
    }
    expect(report.items.find((item) => item.item === 'role pki_int/nomad-server')?.detail).toBe(
      'server certificates (server+client auth) for server.global.nomad only and localhost, IP SANs, ec 256, max_ttl 48h',
    );
    expect(report.items.find((item) => item.item === 'role pki_int/nomad-cli')?.detail).toBe(
      'cli certificates (client auth) for cli.global.nomad only, ec 256, max_ttl 48h',
    );
    const longer = await world.bootstrap(false, [cluster({ ttl: '72h' })]);
    expect(longer.items.filter((item) => item.item.startsWith('role ')).map((item) => item.action)).toEqual([
      'updated',
      'updated',
      'updated',
    ]);
  });
});

describe('vault-bootstrap keeps the intermediate mount for Nomad alone (revoke takes any serial of the mount)', () => {
  it('refuses a mount holding a role that is not ours, naming it, before anything is written', async () => {
    world = await startBootstrappedVault();
    await world.bootstrap();
    await world.root.write(
      'pki_int/roles/web',
      { allowed_domains: ['example.org'], allow_subdomains: true },
      world.emulator.rootToken,
    );
    const before = writes(world).length;

    const refused = await world.bootstrap().catch((error) => error);

    expect(refused).toBeInstanceOf(ValidationError);
    expect(refused.message).toContain(
      "pki_int holds roles that are not nomad-rotator's, nothing was written: web.",
    );
    expect(refused.message).toContain('vault delete pki_int/roles/<name>');
    expect(writes(world).length).toBe(before);
  });

  it('tolerates the legacy agent role, reports it to delete, and no longer grants its sign path', async () => {
    world = await startBootstrappedVault();
    await world.bootstrap();
    await world.root.write(
      'pki_int/roles/nomad-cluster',
      { allowed_domains: ['global.nomad'], allow_subdomains: true },
      world.emulator.rootToken,
    );

    const report = await world.bootstrap();

    expect(report.items.filter((item) => item.action !== 'unchanged')).toEqual([
      {
        item: 'role pki_int/nomad-cluster',
        action: 'to-delete',
        detail:
          'the legacy agent role; tls-policy no longer grants its sign path. Once every cluster is deployed with vault.serverRole and vault.clientRole, delete it: vault delete pki_int/roles/nomad-cluster',
      },
    ]);
    const policy = report.items.find((item) => item.item === 'policy tls-policy')?.hcl;
    expect(policy).not.toContain('nomad-cluster');
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
      'pki_int/roles/nomad-server',
      {
        allowed_domains: 'server.global.nomad',
        allow_bare_domains: true,
        key_type: 'ec',
        key_bits: 384,
      },
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
