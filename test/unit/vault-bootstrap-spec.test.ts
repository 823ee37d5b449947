import { describe, expect, it } from 'vitest';
import { renderBootstrapReport } from '../../ops/vault-bootstrap/report';
import { adminPolicyHcl, bootstrapSpecSchema, tlsPolicyHcl } from '../../ops/vault-bootstrap/spec';
import { rotationEventSchema } from '../../shared/vault-token/rotation';

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
      agentRole: 'nomad-cluster',
      cliRole: 'nomad-cli',
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
      'pki_int/sign/nomad-cluster',
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
