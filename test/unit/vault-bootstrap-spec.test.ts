import { describe, expect, it } from 'vitest';
import { renderBootstrapReport } from '../../ops/vault-bootstrap/report';
import {
  adminPolicyHcl,
  bootstrapSpecSchema,
  clusterDisagreements,
  pkiRoles,
  tlsPolicyHcl,
} from '../../ops/vault-bootstrap/spec';
import { type ClusterConfigInput, parseClusterConfig } from '../../shared/config';
import { rotationEventSchema } from '../../shared/vault-token/rotation';
import { testInventory } from '../helpers/inventory';
import { UNCHECKED_TRUST_ANCHORS } from '../helpers/trust-anchors';

const adminRoleArns = ['arn:aws:iam::123456789012:role/nomad-rotator-rotate-token'];
const base = { adminRoleArns, iamServerIdHeader: 'vault.example.internal' };

describe('vault-bootstrap spec', () => {
  it('fills the seed guide defaults', () => {
    const spec = bootstrapSpecSchema.parse(base);

    expect(spec).toMatchObject({
      region: 'global',
      rootMount: 'pki',
      intermediateMount: 'pki_int',
      rootMaxTtl: 87_600 * 3600,
      intermediateMaxTtl: 43_800 * 3600,
      serverRole: 'nomad-server',
      clientRole: 'nomad-client',
      cliRole: 'nomad-cli',
      legacyAgentRole: 'nomad-cluster',
      keyType: 'ec',
      tokenPolicy: 'tls-policy',
      adminPolicy: 'nomad-rotator-admin',
      awsAuthMount: 'aws',
      adminTokenTtl: 900,
      externalRoot: false,
      resolveAwsUniqueIds: true,
      autoTidyInterval: 12 * 3600,
      tidySafetyBuffer: 72 * 3600,
    });
    expect(spec.pkiUrlBase).toBeUndefined();
    expect(spec.stsEndpoint).toBeUndefined();
  });

  it.each([
    [{}, 'adminRoleArns'],
    [{ adminRoleArns }, 'iamServerIdHeader'],
    [{ adminRoleArns: ['arn:aws:iam::123456789012:user/alice'] }, 'adminRoleArns.0'],
    [{ ...base, keyType: 'rsa', keyBits: 1024 }, 'keyBits'],
    [{ ...base, intermediateCertificatePem: '-----BEGIN CERTIFICATE-----' }, 'intermediateCertificatePem'],
    [{ adminRoleArns, rootMount: 'PKI root' }, 'rootMount'],
    [{ ...base, stsEndpoint: 'https://sts.example.com' }, 'stsEndpoint'],
    [{ adminRoleArns, pkiUrlBase: 'ftp://vault.example.internal' }, 'pkiUrlBase'],
    [{ adminRoleArns, tidySafetyBuffer: '0s' }, 'tidySafetyBuffer'],
  ])('refuses %o naming %s', (input, field) => {
    const result = bootstrapSpecSchema.safeParse(input);

    expect(result.success).toBe(false);
    expect(result.error?.issues.map((issue) => issue.path.join('.'))).toContain(field);
  });

  it('grants the token policy signing, revoking, CA reads and its own lookup, renewal and revocation only', () => {
    const hcl = tlsPolicyHcl(bootstrapSpecSchema.parse(base));
    const paths = [...hcl.matchAll(/path "([^"]+)"/g)].map((match) => match[1]);

    expect(paths).toEqual([
      'pki_int/sign/nomad-server',
      'pki_int/sign/nomad-client',
      'pki_int/sign/nomad-cli',
      'pki_int/revoke',
      'pki_int/ca/pem',
      'pki_int/ca_chain',
      'pki_int/cert/ca_chain',
      'auth/token/lookup-self',
      'auth/token/renew-self',
      'auth/token/revoke-self',
      'sys/capabilities-self',
    ]);
    expect(hcl).not.toMatch(/sudo|pki\//);
  });

  it("grants the admin policy update on each cluster's token role and its own revocation, nothing else", () => {
    const clusters = ['prod', 'staging'].map((name) => ({
      name,
      vault: { tokenRotation: {} },
    })) as unknown as Parameters<typeof adminPolicyHcl>[1];

    const hcl = adminPolicyHcl(bootstrapSpecSchema.parse(base), clusters);

    const grants = [...hcl.matchAll(/path "([^"]+)" \{\n {2}capabilities = \[([^\]]*)\]/g)].map((match) => [
      match[1],
      match[2],
    ]);
    expect(grants).toEqual([
      ['auth/token/create/nomad-rotator-prod', '"update"'],
      ['auth/token/create/nomad-rotator-staging', '"update"'],
      ['auth/token/revoke-self', '"update"'],
    ]);
  });

  it('renders a role left to delete as such', () => {
    const text = renderBootstrapReport({
      dryRun: false,
      items: [{ item: 'role pki_int/nomad-cluster', action: 'to-delete', detail: 'legacy' }],
    });

    expect(text).toMatch(/to delete\s+role pki_int\/nomad-cluster {2}\(legacy\)/);
  });

  it('renders a dry run as what would happen, with the HCL it would write', () => {
    const text = renderBootstrapReport({
      dryRun: true,
      items: [
        { item: 'mount pki', action: 'created', detail: 'pki, max_lease_ttl 87600h' },
        { item: 'policy tls-policy', action: 'updated', hcl: 'path "x" {}' },
        { item: 'policy nomad-rotator-admin', action: 'unchanged', hcl: 'path "y" {}' },
      ],
    });

    expect(text).toContain('dry run: nothing was changed');
    expect(text).toMatch(/would create\s+mount pki/);
    expect(text).toContain('# policy tls-policy — would write:\npath "x" {}');
    expect(text).not.toContain('path "y"');
  });
});

function cluster(name: string, certificates: Partial<ClusterConfigInput['certificates']> = {}) {
  return parseClusterConfig({
    name,
    inventory: testInventory(name),
    vault: {
      address: 'https://vault.example.internal:8200',
      tokenSecretId: `nomad/${name}/vault-token`,
      tokenRotation: { iamServerIdHeader: base.iamServerIdHeader },
    },
    certificates: { ...UNCHECKED_TRUST_ANCHORS, ...certificates },
  });
}

describe('PKI roles', () => {
  const spec = bootstrapSpecSchema.parse(base);
  const byKind = (clusters: Parameters<typeof pkiRoles>[1]) =>
    Object.fromEntries(pkiRoles(spec, clusters).map((role) => [role.kind, role]));

  it('admit per kind only the names certificateNames issues: bare, no subdomains, localhost and IPs where issued', () => {
    const roles = byKind([cluster('prod', { serverExtraDnsSans: ['nomad.prod.internal', 'localhost'] })]);

    expect(roles.server).toMatchObject({
      name: 'nomad-server',
      fields: {
        allowed_domains: ['server.global.nomad', 'nomad.prod.internal'],
        allow_localhost: true,
        allow_ip_sans: true,
        server_flag: true,
        client_flag: true,
      },
    });
    expect(roles.client).toMatchObject({
      name: 'nomad-client',
      fields: {
        allowed_domains: ['client.global.nomad'],
        allow_localhost: true,
        allow_ip_sans: true,
        server_flag: true,
        client_flag: true,
      },
    });
    expect(roles.cli).toMatchObject({
      name: 'nomad-cli',
      fields: {
        allowed_domains: ['cli.global.nomad'],
        allow_localhost: false,
        allow_ip_sans: false,
        server_flag: false,
        client_flag: true,
      },
    });
    for (const role of Object.values(roles)) {
      expect(role.fields).toMatchObject({
        allow_bare_domains: true,
        allow_subdomains: false,
        allow_glob_domains: false,
        allow_any_name: false,
        allow_wildcard_certificates: false,
        enforce_hostnames: true,
        use_csr_common_name: false,
        use_csr_sans: false,
      });
    }
  });

  it("take max_ttl from the clusters' longest certificate TTL, certificateMaxTtl without clusters", () => {
    const maxTtls = (clusters: Parameters<typeof pkiRoles>[1]) =>
      pkiRoles(spec, clusters).map((role) => role.fields.max_ttl);

    expect(maxTtls([])).toEqual([720 * 3600, 720 * 3600, 720 * 3600]);
    expect(maxTtls([cluster('prod', { ttl: '24h' })])).toEqual([24 * 3600, 24 * 3600, 24 * 3600]);
    expect(maxTtls([cluster('prod', { ttl: '24h' }), cluster('staging', { ttl: '72h' })])).toEqual([
      72 * 3600,
      72 * 3600,
      72 * 3600,
    ]);
  });

  it('refuse extra server names Nomad verifies as a client, a CLI or another region', () => {
    const issues = clusterDisagreements(spec, [
      cluster('prod', {
        serverExtraDnsSans: [
          'nomad.global.nomad',
          'client.global.nomad',
          'x.cli.global.nomad',
          'server.eu.nomad',
          'a.server.global.nomad',
        ],
      }),
    ]);

    expect(issues.map((issue) => issue.split(' is a name')[0])).toEqual([
      'clusters[0] (prod).certificates.serverExtraDnsSans: client.global.nomad',
      'clusters[0] (prod).certificates.serverExtraDnsSans: x.cli.global.nomad',
      'clusters[0] (prod).certificates.serverExtraDnsSans: server.eu.nomad',
    ]);
  });
});

describe('rotation event', () => {
  it('accepts the camelCase steps and refuses anything else', () => {
    const event = { SecretId: 'nomad/prod/vault-token', ClientRequestToken: 'a'.repeat(36) };

    expect(rotationEventSchema.safeParse({ ...event, Step: 'finishSecret' }).success).toBe(true);
    expect(rotationEventSchema.safeParse({ ...event, Step: 'finish_secret' }).success).toBe(false);
    expect(
      rotationEventSchema.safeParse({ ...event, Step: 'createSecret', ClientRequestToken: 'short' }).success,
    ).toBe(false);
  });
});
