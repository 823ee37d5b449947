import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { x509 } from '../../shared/certificates/x509';
import { buildIamLoginData } from '../../shared/vault/aws-login';
import { VaultClient } from '../../shared/vault/client';
import {
  credentialsFor,
  csrPem,
  ROTATOR_KEY_ID,
  ROTATOR_ROLE_ARN,
  SERVER_ID_HEADER,
  startBootstrappedVault,
} from '../helpers/vault-access-world';

/**
 * The facts of Vault's behaviour, read from OpenBao / Vault source, that nomad-rotator
 * relies on, replayed against the emulator: where they disagree, the emulator is wrong.
 */

type World = Awaited<ReturnType<typeof startBootstrappedVault>>;

let world: World;
beforeEach(async () => {
  world = await startBootstrappedVault();
  await world.bootstrap();
});
afterEach(async () => {
  await world.emulator.stop();
});

const HOUR = 3_600_000;

async function raw(method: string, path: string, body?: unknown, token = world.emulator.rootToken) {
  const response = await fetch(`${world.emulator.address}/v1/${path}`, {
    method,
    headers: token === '' ? {} : { 'X-Vault-Token': token },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined };
}

type KeyAlgorithm =
  | { name: 'ECDSA'; namedCurve: string }
  | { name: 'RSASSA-PKCS1-v1_5'; modulusLength: number; publicExponent: Uint8Array; hash: string };

async function csrOf(algorithm: KeyAlgorithm): Promise<string> {
  const keys = (await crypto.subtle.generateKey(algorithm, false, ['sign', 'verify'])) as Parameters<
    typeof x509.Pkcs10CertificateRequestGenerator.create
  >[0]['keys'];
  const hash = 'hash' in algorithm ? algorithm.hash : 'SHA-256';
  return (
    await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=node',
      keys,
      signingAlgorithm: { ...algorithm, hash },
    })
  ).toString('pem');
}

const sign = async (csr: string, names: Record<string, unknown> = {}, role = 'nomad-server') =>
  raw('POST', `pki_int/sign/${role}`, {
    csr,
    common_name: 'server.global.nomad',
    alt_names: 'server.global.nomad',
    ttl: '1h',
    ...names,
  });

const refusal = (text: string) => ({ status: 400, body: { errors: [text] } });

describe('Vault: pki/sign/:role checks the CSR key against the role (cert_util.go signCert)', () => {
  it('key_type must match: an RSA key on an ec role is refused', async () => {
    const csr = await csrOf({
      name: 'RSASSA-PKCS1-v1_5',
      modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: 'SHA-256',
    });

    expect(await sign(csr)).toEqual(refusal('role requires keys of type ec'));
  });

  it('key_bits is a minimum: P-384 passes an ec/256 role, P-256 is refused by an ec/384 role', async () => {
    await raw('POST', 'pki_int/roles/strict', {
      allowed_domains: 'global.nomad',
      allow_subdomains: true,
      key_type: 'ec',
      key_bits: 384,
      use_csr_common_name: false,
      use_csr_sans: false,
    });

    expect((await sign(await csrOf({ name: 'ECDSA', namedCurve: 'P-384' }))).status).toBe(200);
    expect(await sign(await csrPem(), {}, 'strict')).toEqual(
      refusal("role requires a minimum of a 384-bit key, but CSR's key is 256 bits"),
    );
  });

  it('key_type any accepts RSA and EC keys alike', async () => {
    await raw('POST', 'pki_int/roles/any', {
      allowed_domains: 'global.nomad',
      allow_subdomains: true,
      key_type: 'any',
      use_csr_common_name: false,
      use_csr_sans: false,
    });
    const rsa = await csrOf({
      name: 'RSASSA-PKCS1-v1_5',
      modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: 'SHA-256',
    });

    expect((await sign(rsa, {}, 'any')).status).toBe(200);
    expect((await sign(await csrPem(), {}, 'any')).status).toBe(200);
  });
});

describe('Vault: names (cert_util.go validateNames)', () => {
  it('allow_bare_domains without allow_subdomains: each role admits its own name, not the others nor subdomains', async () => {
    const roles = [
      ['nomad-server', 'server.global.nomad'],
      ['nomad-client', 'client.global.nomad'],
    ] as const;
    for (const [role, commonName] of roles) {
      const signed = await sign(
        await csrPem(),
        { common_name: commonName, alt_names: `${commonName},localhost`, ip_sans: '127.0.0.1,fd00::1' },
        role,
      );
      expect(signed.status, commonName).toBe(200);
      for (const other of [
        'server.global.nomad',
        'client.global.nomad',
        'cli.global.nomad',
        `x.${commonName}`,
      ]) {
        if (other === commonName) continue;
        expect(await sign(await csrPem(), { common_name: other, alt_names: other }, role), other).toEqual(
          refusal(`common name ${other} not allowed by this role`),
        );
      }
    }
  });

  it('any other DNS SAN: 400 "subject alternate name X not allowed by this role"', async () => {
    expect(await sign(await csrPem(), { alt_names: 'server.global.nomad,nomad.example.com' })).toEqual(
      refusal('subject alternate name nomad.example.com not allowed by this role'),
    );
  });
});

describe('Vault: leaf_not_after_behavior=err', () => {
  it('a leaf that would outlive the issuer fails; signing stops in the last TTL before the CA ends', async () => {
    const issuer = await raw('GET', 'pki_int/cert/ca', undefined, '');
    const caEnd = new x509.X509Certificate(issuer.body.data.certificate).notAfter;
    world.clock.set(caEnd.getTime() - HOUR / 2);

    const refused = await sign(await csrPem(), { ttl: '1h' });

    expect(refused.status).toBe(400);
    expect(refused.body.errors[0]).toBe(
      `cannot satisfy request, as TTL would result in notAfter of ${new Date(world.clock.now() + HOUR).toISOString().replace('.000Z', 'Z')} that is beyond the expiration of the CA certificate at ${caEnd.toISOString().replace('.000Z', 'Z')}`,
    );
  });
});

describe('Vault: storage, auto-tidy and URLs (path_tidy.go, path_config_urls.go)', () => {
  it('issued certificates are stored (no_store=false): the serial is listed and readable until tidied', async () => {
    const signed = await sign(await csrPem());

    const listed = await raw('GET', 'pki_int/certs?list=true');
    const read = await raw('GET', `pki_int/cert/${signed.body.data.serial_number}`, undefined, '');

    expect(listed.body.data.keys).toContain(signed.body.data.serial_number);
    expect(read.body.data.certificate).toBe(signed.body.data.certificate);
  });

  it('a mount never configured has no URLs (leaves get no CRL/AIA) and auto-tidy off, which needs an operation to enable', async () => {
    await raw('POST', 'sys/mounts/pki_bare', { type: 'pki' });
    const urls = await raw('GET', 'pki_bare/config/urls');
    const tidy = await raw('GET', 'pki_bare/config/auto-tidy');

    expect(urls.body.data).toMatchObject({ issuing_certificates: [], crl_distribution_points: [] });
    expect(tidy.body.data).toMatchObject({
      enabled: false,
      interval_duration: 43_200,
      safety_buffer: 259_200,
      tidy_cert_store: false,
    });
    expect(
      await raw('POST', 'pki_bare/config/auto-tidy', { enabled: true }).then((reply) => reply.status),
    ).toBe(400);
  });
});

describe('Vault: issuers (storage.go importIssuer, path_manage_issuers.go)', () => {
  async function importSecondIntermediate(): Promise<string> {
    const generated = await raw('POST', 'pki_int/intermediate/generate/internal', {
      common_name: 'second intermediate',
      key_type: 'ec',
    });
    const signed = await raw('POST', 'pki/root/sign-intermediate', {
      csr: generated.body.data.csr,
      ttl: '8760h',
      format: 'pem',
    });
    const imported = await raw('POST', 'pki_int/intermediate/set-signed', {
      certificate: `${signed.body.data.certificate}\n${signed.body.data.issuing_ca}`,
    });
    return imported.body.data.imported_issuers[0];
  }

  it('a later import does not move the default issuer unless default_follows_latest_issuer=true', async () => {
    const before = await raw('GET', 'pki_int/config/issuers');

    const second = await importSecondIntermediate();
    const after = await raw('GET', 'pki_int/config/issuers');
    const signedBy = await sign(await csrPem());

    expect(before.body.data).toMatchObject({ default_follows_latest_issuer: false });
    expect(after.body.data.default).toBe(before.body.data.default);
    expect(after.body.data.default).not.toBe(second);
    expect(new x509.X509Certificate(signedBy.body.data.issuing_ca).subject).toContain(
      'global.nomad intermediate CA',
    );
  });

  it('with default_follows_latest_issuer=true the next import becomes the default', async () => {
    await raw('POST', 'pki_int/config/issuers', { default_follows_latest_issuer: true });

    const second = await importSecondIntermediate();

    expect((await raw('GET', 'pki_int/config/issuers')).body.data.default).toBe(second);
  });
});

describe('Vault: revoke-accessor answers (vault/token_store.go)', () => {
  const mint = async () =>
    (await raw('POST', 'auth/token/create-orphan', { policies: ['tls-policy'], ttl: '1h' })).body.auth;

  it('an unknown accessor: 200 with the warning "No token found with this accessor"', async () => {
    const reply = await raw('POST', 'auth/token/revoke-accessor', { accessor: 'NoSuchAccessor00000000000' });

    expect(reply.status).toBe(200);
    expect(reply.body.warnings).toEqual(['No token found with this accessor']);
  });

  it('an expired token Vault has not yet revoked: 400 "token not found"', async () => {
    const { accessor } = await mint();
    world.clock.advance(2 * HOUR);

    expect(await raw('POST', 'auth/token/revoke-accessor', { accessor })).toEqual(refusal('token not found'));
  });

  it('an empty accessor: 400 "missing accessor"; a live one: 204, and the token is gone', async () => {
    const { accessor, client_token } = await mint();

    expect(await raw('POST', 'auth/token/revoke-accessor', { accessor: '' })).toEqual(
      refusal('missing accessor'),
    );
    expect((await raw('POST', 'auth/token/revoke-accessor', { accessor })).status).toBe(204);
    expect((await raw('GET', 'auth/token/lookup-self', undefined, client_token)).status).toBe(403);
  });
});

describe('Vault: PKI revoke answers (path_revoke.go, crl_util.go revokeCert)', () => {
  it('unknown serial 400 "… not found."; revoked again 200 with the first time; expired 200 with a warning', async () => {
    const signed = await sign(await csrPem());
    const serial = signed.body.data.serial_number as string;

    const first = await raw('POST', 'pki_int/revoke', { serial_number: serial });
    world.clock.advance(5_000);
    const again = await raw('POST', 'pki_int/revoke', { serial_number: serial });
    const other = await sign(await csrPem());
    world.clock.advance(2 * HOUR);
    const expired = await raw('POST', 'pki_int/revoke', { serial_number: other.body.data.serial_number });

    expect(await raw('POST', 'pki_int/revoke', { serial_number: '0a-0b' })).toEqual(
      refusal('certificate with serial 0a-0b not found.'),
    );
    expect(again.body.data).toEqual(first.body.data);
    expect(expired.status).toBe(200);
    expect(expired.body.warnings[0]).toMatch(/already expired; refusing to add to CRL/);
  });
});

describe('Vault: 412 "required index state not present" (api/client.go DefaultRetryPolicy)', () => {
  it('is retried by the product’s client, as by Vault’s Go client', async () => {
    const client = new VaultClient({
      address: world.emulator.address,
      timeoutMs: 5_000,
      attempts: 2,
      sleep: async () => {},
    });
    world.emulator.answerIndexNotPresent(1);

    await expect(client.read('auth/token/lookup-self', world.emulator.rootToken)).resolves.toBeDefined();
  });
});

describe('Vault: AWS auth role and IAM login (path_role.go, path_login.go)', () => {
  /** Signed with the server id header bootstrap configured; `null` sends none. */
  const loginBody = async (
    overrides: Record<string, unknown> = {},
    serverIdHeader: string | null = SERVER_ID_HEADER,
  ) => ({
    role: 'nomad-rotator-admin',
    ...(await buildIamLoginData({
      credentials: credentialsFor(ROTATOR_KEY_ID),
      ...(serverIdHeader === null ? {} : { serverIdHeader }),
    })),
    ...overrides,
  });
  const login = async (overrides: Record<string, unknown> = {}, serverIdHeader?: string | null) =>
    raw('POST', 'auth/aws/login', await loginBody(overrides, serverIdHeader), '');
  const base64 = (text: string) => Buffer.from(text).toString('base64');

  it('resolve_aws_unique_ids defaults to true: the role binds the unique id, a recreated role is refused', async () => {
    await raw('POST', 'auth/aws/role/plain', {
      auth_type: 'iam',
      bound_iam_principal_arn: [ROTATOR_ROLE_ARN],
    });
    const role = await raw('GET', 'auth/aws/role/plain');
    expect((await login({ role: 'plain' })).status).toBe(200);

    world.emulator.iam.recreate(ROTATOR_ROLE_ARN);

    expect(role.body.data.resolve_aws_unique_ids).toBe(true);
    expect((await login({ role: 'plain' })).body.errors[0]).toMatch(/does not belong to the role "plain"/);
  });

  it('Vault without iam:GetRole: 400 "unable to resolve ARN … to internal ID"; true → false is refused', async () => {
    world.emulator.iam.vaultCanGetRole = false;
    const unresolved = await raw('POST', 'auth/aws/role/other', {
      auth_type: 'iam',
      bound_iam_principal_arn: [ROTATOR_ROLE_ARN],
    });
    world.emulator.iam.vaultCanGetRole = true;

    expect(unresolved.status).toBe(400);
    expect(unresolved.body.errors[0]).toMatch(
      new RegExp(`^unable to resolve ARN "${ROTATOR_ROLE_ARN}" to internal ID: `),
    );
    expect(
      await raw('POST', 'auth/aws/role/nomad-rotator-admin', {
        bound_iam_principal_arn: [ROTATOR_ROLE_ARN],
        resolve_aws_unique_ids: false,
      }),
    ).toEqual(refusal('changing resolve_aws_unique_ids from true to false is not allowed'));
  });

  it('login is POST only, with no query in iam_request_url and only Action and Version in the body', async () => {
    expect((await login()).status).toBe(200);
    expect(await login({ iam_http_request_method: 'GET' })).toEqual(
      refusal("invalid iam_http_request_method; currently only 'POST' is supported"),
    );
    expect(
      await login({ iam_request_url: base64('https://sts.amazonaws.com/?Action=GetCallerIdentity') }),
    ).toEqual(refusal('invalid request'));
    expect(
      await login({ iam_request_body: base64('Action=GetCallerIdentity&Version=2011-06-15&Extra=1') }),
    ).toEqual(refusal('iam request body is invalid'));
  });

  it('X-Vault-AWS-IAM-Server-ID, once configured, must be sent and signed', async () => {
    await raw('POST', 'auth/aws/config/client', { iam_server_id_header_value: 'vault.test' });

    const missing = await login({}, null);
    const signed = await raw(
      'POST',
      'auth/aws/login',
      {
        role: 'nomad-rotator-admin',
        ...(await buildIamLoginData({
          credentials: credentialsFor(ROTATOR_KEY_ID),
          serverIdHeader: 'vault.test',
        })),
      },
      '',
    );

    expect(missing).toEqual(
      refusal(
        'error validating X-Vault-AWS-IAM-Server-ID header: missing header "X-Vault-AWS-IAM-Server-ID"',
      ),
    );
    expect(signed.status).toBe(200);
  });

  it('Vault replays to sts_endpoint (default global); use_sts_region_from_client takes the signature’s region', async () => {
    const china = { endpoint: 'https://sts.cn-north-1.amazonaws.com.cn', region: 'cn-north-1' };
    const chinaLogin = async () =>
      raw(
        'POST',
        'auth/aws/login',
        {
          role: 'nomad-rotator-admin',
          ...(await buildIamLoginData({
            credentials: credentialsFor(ROTATOR_KEY_ID),
            serverIdHeader: SERVER_ID_HEADER,
            sts: china,
          })),
        },
        '',
      );

    const againstGlobal = await chinaLogin();
    await raw('POST', 'auth/aws/config/client', { use_sts_region_from_client: true });
    const fromClient = await chinaLogin();

    expect(againstGlobal.status).toBe(400);
    expect(againstGlobal.body.errors[0]).toContain('SignatureDoesNotMatch');
    expect(fromClient.status).toBe(200);
  });
});

describe('Vault: token roles (vault/token_store.go)', () => {
  const policyFor = (path: string) => ({ policy: `path "${path}" {\n  capabilities = ["update"]\n}` });

  /** A token whose only power is update on `path` (and the default policy). */
  async function tokenAllowedOnly(path: string): Promise<string> {
    await raw('POST', 'sys/policies/acl/only-this', policyFor(path));
    const created = await raw('POST', 'auth/token/create', { policies: ['only-this'] });
    return created.body.auth.client_token as string;
  }

  it('create/<role> needs update on that path only: orphan and period come from the role, without sudo', async () => {
    await raw('POST', 'auth/token/roles/narrow', {
      allowed_policies: ['tls-policy'],
      orphan: true,
      token_period: '1h',
    });
    const caller = await tokenAllowedOnly('auth/token/create/narrow');

    const created = await raw('POST', 'auth/token/create/narrow', {}, caller);
    const periodInBody = await raw('POST', 'auth/token/create/narrow', { period: '2h' }, caller);
    const elsewhere = await raw('POST', 'auth/token/create/other', {}, caller);

    expect(created.status).toBe(200);
    expect(created.body.auth).toMatchObject({
      policies: ['default', 'tls-policy'],
      orphan: true,
      lease_duration: 3600,
    });
    expect(periodInBody).toEqual({
      status: 400,
      body: { errors: ['root or sudo privileges required to create periodic token'] },
    });
    expect(elsewhere.status).toBe(403);
  });

  it('refuses policies outside allowed_policies and inside disallowed_policies with Vault’s texts', async () => {
    await raw('POST', 'auth/token/roles/narrow', {
      allowed_policies: ['tls-policy', 'other'],
      disallowed_policies: ['other'],
      token_no_default_policy: true,
    });

    const outside = await raw('POST', 'auth/token/create/narrow', { policies: ['root-ish'] });
    const disallowed = await raw('POST', 'auth/token/create/narrow', { policies: ['other'] });
    const unknown = await raw('POST', 'auth/token/create/missing', {});
    // With no policies asked for, the role's allowed ones are taken, and then disallowed ones still refuse.
    const defaulted = await raw('POST', 'auth/token/create/narrow', {});
    const allowed = await raw('POST', 'auth/token/create/narrow', { policies: ['tls-policy'] });

    expect(outside).toEqual({
      status: 400,
      body: {
        errors: [
          'token policies (["root-ish"]) must be subset of the role\'s allowed policies (["other" "tls-policy"]) or glob policies ([])',
        ],
      },
    });
    expect(disallowed.body.errors).toEqual(['token policy "other" is disallowed by this role']);
    expect(unknown).toEqual({ status: 400, body: { errors: ['unknown role missing'] } });
    expect(defaulted.body.errors).toEqual(['token policy "other" is disallowed by this role']);
    expect(allowed.body.auth.policies).toEqual(['tls-policy']);
  });

  it('a role write updates the fields it names and keeps the rest; a missing role reads 404', async () => {
    await raw('POST', 'auth/token/roles/narrow', { allowed_policies: ['tls-policy'], orphan: true });
    await raw('POST', 'auth/token/roles/narrow', { token_period: '24h' });

    const read = await raw('GET', 'auth/token/roles/narrow');
    const missing = await raw('GET', 'auth/token/roles/missing');

    expect(read.body.data).toMatchObject({
      allowed_policies: ['tls-policy'],
      orphan: true,
      renewable: true,
      token_period: 86_400,
      token_type: 'default-service',
    });
    expect(missing).toEqual({ status: 404, body: { errors: [] } });
  });

  it('the explicit max TTL ends a periodic token whatever its renewals', async () => {
    await raw('POST', 'auth/token/roles/narrow', {
      allowed_policies: ['tls-policy'],
      token_period: '1h',
      token_explicit_max_ttl: '2h',
    });
    const token = (await raw('POST', 'auth/token/create/narrow', {})).body.auth.client_token as string;

    world.clock.advance(0.9 * HOUR);
    const renewed = await raw('POST', 'auth/token/renew-self', {}, token);
    world.clock.advance(0.9 * HOUR);
    const capped = await raw('POST', 'auth/token/renew-self', {}, token);
    world.clock.advance(0.3 * HOUR);
    const after = await raw('GET', 'auth/token/lookup-self', undefined, token);

    expect(renewed.body.auth.lease_duration).toBe(3600);
    expect(capped.body.auth.lease_duration).toBeLessThan(3600);
    expect(capped.body.warnings[0]).toMatch(/exceeded the effective max_ttl/);
    expect(after.status).toBe(403);
  });

  it('revoke-self answers 204, and a token already revoked gets 403 "invalid token"', async () => {
    const token = (await raw('POST', 'auth/token/create', { policies: ['tls-policy'] })).body.auth
      .client_token as string;

    const first = await raw('POST', 'auth/token/revoke-self', {}, token);
    const second = await raw('POST', 'auth/token/revoke-self', {}, token);

    expect(first.status).toBe(204);
    expect(second.status).toBe(403);
    expect(second.body.errors[0]).toContain('invalid token');
  });
});
