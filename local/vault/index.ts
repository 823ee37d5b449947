import { createPrivateKey, webcrypto } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { type Clock, systemClock } from '../../shared/clock';
import { type Capability, capabilitiesFor, DEFAULT_POLICY, parsePolicy } from './acl';
import { AwsAuthMethod, IamDirectory } from './aws-auth';
import { PkiMount, type PkiResult } from './pki';
import { createCertificate, generateKeys, pem } from './pki-x509';
import {
  badRequest,
  DEFAULT_MAX_TTL,
  envelope,
  INVALID_TOKEN,
  list,
  NOT_FOUND,
  PERMISSION_DENIED,
  seconds,
  VaultHttpError,
} from './protocol';
import { type Token, TokenStore } from './tokens';

export interface VaultEmulatorOptions {
  clock?: Clock;
  /** What STS would answer for a signing access key id: the caller ARN. */
  awsIdentities?: Record<string, string>;
  /**
   * Listen with TLS, as every production Vault does: a certificate for 127.0.0.1 and localhost from a
   * CA of its own, whose PEM the emulator returns as `caPem` (what `vault.caBundlePem` would hold).
   */
  tls?: boolean;
}

interface Mount {
  type: string;
  accessor: string;
  description: string;
  maxLeaseTtl: number;
  defaultLeaseTtl: number;
  pki?: PkiMount;
}

type Reply = { status: number; body?: unknown; raw?: { text: string | Uint8Array; contentType: string } };

/** sys/ routes whose `data` Vault also copies to the top level of the body (http/handler.go). */
const INJECTED = [/^sys\/mounts(\/|$)/, /^sys\/auth(\/|$)/, /^sys\/policy(\/|$)/, /^sys\/capabilities-self$/];
const PKI_UNAUTHENTICATED = /^(ca|ca\/pem|ca_chain|crl|crl\/pem|cert\/[^/]+|issuers)$/;

export type VaultEmulator = Awaited<ReturnType<typeof startVaultEmulator>>;

/**
 * A Vault server on loopback for the local world, covering what nomad-rotator calls, with Vault's
 * envelopes, statuses and error texts (real samples of Vault's answers in test/fixtures/vault/): seal state, mounts, ACL policies on
 * every request, the token store, AWS IAM login and the PKI engine with real X.509.
 */
export async function startVaultEmulator(options: VaultEmulatorOptions = {}) {
  const clock = options.clock ?? systemClock;
  const tokens = new TokenStore(clock);
  const root = tokens.createRoot();
  const policies = new Map<string, string>([['default', DEFAULT_POLICY]]);
  const mounts = new Map<string, Mount>();
  const authMethods = new Map<string, AwsAuthMethod>();
  const iam = new IamDirectory();
  const requestLog: { method: string; path: string; status: number }[] = [];
  let sealed = false;
  /** Requests still to be answered 412, as a performance standby behind the active node answers them. */
  let indexNotPresentAnswers = 0;
  /** Injected failures by path: what a broken or misconfigured Vault would answer there. */
  const injectedFailures = new Map<string, { status: number; text: string; times: number }>();

  const healthBody = () => ({
    initialized: true,
    sealed,
    standby: sealed,
    performance_standby: false,
    replication_performance_mode: sealed ? 'unknown' : 'disabled',
    replication_dr_mode: sealed ? 'unknown' : 'disabled',
    server_time_utc: Math.floor(clock.now() / 1000),
    version: '1.17.0',
    ...(sealed
      ? {}
      : { cluster_name: 'vault-cluster-local', cluster_id: '00000000-0000-0000-0000-000000000000' }),
  });

  const describeMount = (mount: Mount) => ({
    accessor: mount.accessor,
    config: {
      default_lease_ttl: mount.defaultLeaseTtl,
      force_no_cache: false,
      max_lease_ttl: mount.maxLeaseTtl,
    },
    description: mount.description,
    external_entropy_access: false,
    local: false,
    options: null,
    seal_wrap: false,
    type: mount.type,
    uuid: mount.accessor,
  });

  const capabilitiesOf = (token: Token, path: string): Set<Capability> | 'root' =>
    token.policies.includes('root')
      ? 'root'
      : capabilitiesFor(
          token.policies.map((name) => parsePolicy(policies.get(name) ?? '')),
          path,
        );

  const require = (token: Token, path: string, needed: Capability[]) => {
    const granted = capabilitiesOf(token, path);
    if (granted === 'root') return;
    if (granted.has('deny') || !needed.some((capability) => granted.has(capability)))
      throw PERMISSION_DENIED();
  };

  const sudo = (token: Token, path: string) => {
    const granted = capabilitiesOf(token, path);
    return granted === 'root' || granted.has('sudo');
  };

  const createToken = (token: Token, path: string, body: Record<string, unknown>) => {
    const orphan = path === 'auth/token/create-orphan' || body.no_parent === true;
    if (body.period !== undefined && !sudo(token, path))
      throw badRequest('root or sudo privileges required to create periodic token');
    if (path === 'auth/token/create' && body.no_parent === true && !sudo(token, path)) {
      throw badRequest('root or sudo privileges required to create orphan token');
    }
    const requested = list(body.policies);
    if (
      !sudo(token, path) &&
      requested.some((policy) => !token.policies.includes(policy) && policy !== 'default')
    ) {
      throw badRequest('child policies must be subset of parent');
    }
    const { token: created, warnings } = tokens.create(body, { parent: token, path, orphan });
    for (const policy of created.policies)
      if (!policies.has(policy) && policy !== 'root') warnings.push(`Policy "${policy}" does not exist`);
    return { status: 200, body: envelope({ auth: tokens.auth(created), warnings, mountType: 'token' }) };
  };

  const tokenRoute = (token: Token, path: string, method: string, body: Record<string, unknown>): Reply => {
    const op = path.slice('auth/token/'.length);
    switch (op) {
      case 'create':
      case 'create-orphan':
        return createToken(token, path, body);
      case 'lookup-self':
        return { status: 200, body: envelope({ data: tokens.describe(token), mountType: 'token' }) };
      case 'lookup': {
        const target = tokens.lookup(String(body.token ?? ''));
        if (target === undefined) throw new VaultHttpError(403, 'bad token');
        return { status: 200, body: envelope({ data: tokens.describe(target), mountType: 'token' }) };
      }
      case 'lookup-accessor': {
        const target = tokens.byAccessor(String(body.accessor ?? ''));
        if (target === undefined) throw badRequest('invalid accessor');
        return {
          status: 200,
          body: envelope({ data: tokens.describe(target, { hideId: true }), mountType: 'token' }),
        };
      }
      case 'renew-self':
      case 'renew': {
        const target = op === 'renew-self' ? token : tokens.lookup(String(body.token ?? ''));
        if (target === undefined) throw badRequest('token not found');
        const { warnings } = tokens.renew(target, body.increment);
        return { status: 200, body: envelope({ auth: tokens.auth(target), warnings, mountType: 'token' }) };
      }
      case 'revoke':
        if (body.token === undefined) throw badRequest('missing token ID');
        tokens.revoke(String(body.token));
        return { status: 204 };
      case 'revoke-self':
        tokens.revoke(token.id);
        return { status: 204 };
      case 'revoke-accessor': {
        // vault/token_store.go handleUpdateRevokeAccessor: three distinct answers before any revocation.
        const accessor = String(body.accessor ?? '');
        if (accessor === '') throw badRequest('missing accessor');
        const target = tokens.heldAccessor(accessor);
        if (target === undefined)
          return {
            status: 200,
            body: envelope({ warnings: ['No token found with this accessor'], mountType: 'token' }),
          };
        // The accessor entry outlives an expired token until the expiration manager has revoked it.
        if (tokens.lookup(target.id) === undefined) throw badRequest('token not found');
        tokens.revoke(target.id);
        return { status: 204 };
      }
      default:
        void method;
        throw new VaultHttpError(404, `no handler for route "${path}". route entry not found.`);
    }
  };

  const sysRoute = (path: string, method: string, body: Record<string, unknown>, listing: boolean): Reply => {
    const rest = path.slice('sys/'.length);
    if (rest === 'mounts' && method === 'GET') {
      return {
        status: 200,
        body: envelope({
          data: Object.fromEntries([...mounts].map(([name, mount]) => [`${name}/`, describeMount(mount)])),
        }),
      };
    }
    const tune = /^mounts\/(.+)\/tune$/.exec(rest);
    if (tune) {
      const mount = mounts.get(tune[1]!);
      if (mount === undefined) throw badRequest(`cannot fetch sysview for path "${tune[1]}/"`);
      if (method === 'GET')
        return {
          status: 200,
          body: envelope({
            data: {
              default_lease_ttl: mount.defaultLeaseTtl,
              max_lease_ttl: mount.maxLeaseTtl,
              force_no_cache: false,
              description: mount.description,
            },
          }),
        };
      if (body.max_lease_ttl !== undefined) mount.maxLeaseTtl = seconds(body.max_lease_ttl);
      if (body.default_lease_ttl !== undefined) mount.defaultLeaseTtl = seconds(body.default_lease_ttl);
      return { status: 204 };
    }
    const mountPath = /^mounts\/(.+)$/.exec(rest);
    if (mountPath) {
      const name = mountPath[1]!;
      if (method === 'DELETE') {
        mounts.delete(name);
        return { status: 204 };
      }
      if (method === 'GET') {
        const mount = mounts.get(name);
        if (mount === undefined) throw NOT_FOUND();
        return { status: 200, body: envelope({ data: describeMount(mount) }) };
      }
      if (mounts.has(name)) throw badRequest(`path is already in use at ${name}/`);
      const config = (body.config ?? {}) as Record<string, unknown>;
      const mount: Mount = {
        type: String(body.type ?? ''),
        accessor: `${String(body.type)}_${Math.random().toString(16).slice(2, 10)}`,
        description: String(body.description ?? ''),
        maxLeaseTtl: seconds(config.max_lease_ttl, 0),
        defaultLeaseTtl: seconds(config.default_lease_ttl, 0),
      };
      if (mount.type === 'pki') mount.pki = new PkiMount(clock, () => mount.maxLeaseTtl || DEFAULT_MAX_TTL);
      mounts.set(name, mount);
      return { status: 204 };
    }
    if (rest === 'auth' && method === 'GET') {
      const methods: Record<string, unknown> = {
        'token/': { type: 'token', description: 'token based credentials' },
      };
      for (const name of authMethods.keys()) methods[`${name}/`] = { type: 'aws', description: '' };
      return { status: 200, body: envelope({ data: methods }) };
    }
    const auth = /^auth\/(.+)$/.exec(rest);
    if (auth) {
      if (authMethods.has(auth[1]!)) throw badRequest(`path is already in use at ${auth[1]}/`);
      if (body.type !== 'aws') throw badRequest(`unknown auth method type "${String(body.type)}"`);
      authMethods.set(auth[1]!, new AwsAuthMethod(options.awsIdentities ?? {}, iam));
      return { status: 204 };
    }
    const policy = /^(?:policies\/acl|policy)(?:\/(.+))?$/.exec(rest);
    if (policy) {
      const name = policy[1]?.toLowerCase();
      if (name === undefined || listing) {
        const keys = [...policies.keys(), 'root'].sort();
        return {
          status: 200,
          body: envelope({ data: { keys, ...(rest.startsWith('policy') ? { policies: keys } : {}) } }),
        };
      }
      if (method === 'GET') {
        const text = policies.get(name);
        if (text === undefined) throw NOT_FOUND();
        return {
          status: 200,
          body: envelope({
            data: { name, policy: text, ...(rest.startsWith('policy') ? { rules: text } : {}) },
          }),
        };
      }
      if (method === 'DELETE') {
        policies.delete(name);
        return { status: 204 };
      }
      const text = String(body.policy ?? body.rules ?? '');
      parsePolicy(text);
      policies.set(name, text);
      return { status: 204 };
    }
    throw new VaultHttpError(404, `no handler for route "${path}". route entry not found.`);
  };

  const route = async (
    method: string,
    path: string,
    body: Record<string, unknown>,
    listing: boolean,
    tokenId: string | undefined,
  ): Promise<Reply> => {
    if (path === 'sys/health') return { status: sealed ? 503 : 200, body: healthBody() };
    if (path === 'sys/seal-status')
      return {
        status: 200,
        body: {
          type: 'shamir',
          initialized: true,
          sealed,
          t: 1,
          n: 1,
          progress: 0,
          nonce: '',
          version: '1.17.0',
          migration: false,
          recovery_seal: false,
          storage_type: 'inmem',
        },
      };
    if (sealed) throw new VaultHttpError(503, 'Vault is sealed');
    if (indexNotPresentAnswers > 0) {
      indexNotPresentAnswers -= 1;
      throw new VaultHttpError(412, 'required index state not present');
    }
    const injected = injectedFailures.get(path);
    if (injected !== undefined && injected.times > 0) {
      injected.times -= 1;
      throw new VaultHttpError(injected.status, injected.text);
    }
    const login = /^auth\/(.+)\/login$/.exec(path);
    if (login && authMethods.has(login[1]!) && method !== 'GET') {
      const result = authMethods.get(login[1]!)!.login(body);
      const { token } = tokens.create(
        {
          policies: result.policies,
          ttl: result.ttl || undefined,
          period: result.period || undefined,
          meta: result.metadata,
          display_name: `aws-${result.role}`,
        },
        { path, orphan: true },
      );
      return { status: 200, body: envelope({ auth: tokens.auth(token), mountType: 'aws' }) };
    }
    const [mountName, ...rest] = path.split('/');
    const mount = mounts.get(mountName ?? '');
    if (mount?.pki && PKI_UNAUTHENTICATED.test(rest.join('/')) && method === 'GET')
      return reply(await mount.pki.handle(method, rest.join('/'), body, listing));

    const token = tokens.lookup(tokenId);
    if (token === undefined) throw INVALID_TOKEN();
    const needed: Capability[] =
      method === 'GET'
        ? [listing ? 'list' : 'read']
        : method === 'DELETE'
          ? ['delete']
          : ['update', 'create'];
    if (path === 'sys/capabilities-self') {
      require(token, path, ['update']);
      const paths = list(body.paths ?? body.path);
      const data: Record<string, string[]> = {};
      for (const each of paths) {
        const granted = capabilitiesOf(token, each);
        data[each] = granted === 'root' ? ['root'] : granted.size === 0 ? ['deny'] : [...granted].sort();
      }
      if (paths.length === 1) data.capabilities = data[paths[0]!]!;
      return { status: 200, body: envelope({ data }) };
    }
    require(token, path, needed);
    if (path.startsWith('auth/token/')) return tokenRoute(token, path, method, body);
    if (path.startsWith('sys/')) return sysRoute(path, method, body, listing);
    const awsConfig = /^auth\/(.+)\/(config\/client|role\/(.+))$/.exec(path);
    if (awsConfig && authMethods.has(awsConfig[1]!)) {
      const methodState = authMethods.get(awsConfig[1]!)!;
      if (awsConfig[2] === 'config/client') {
        if (method === 'GET') {
          const config = methodState.config();
          if (config === undefined) throw NOT_FOUND();
          return { status: 200, body: envelope({ data: config }) };
        }
        methodState.writeConfig(body);
        return { status: 204 };
      }
      if (method === 'GET') {
        const role = methodState.role(awsConfig[3]!);
        if (role === undefined) throw NOT_FOUND();
        return { status: 200, body: envelope({ data: role }) };
      }
      methodState.writeRole(awsConfig[3]!, body);
      return { status: 204 };
    }
    if (mount?.pki) return reply(await mount.pki.handle(method, rest.join('/'), body, listing));
    throw new VaultHttpError(404, `no handler for route "${path}". route entry not found.`);
  };

  const handle = async (request: IncomingMessage, response: ServerResponse) => {
    const url = new URL(request.url ?? '/', 'http://vault');
    const path = url.pathname.replace(/^\/v1\//, '').replace(/\/$/, '');
    const listing = ['true', '1', 't', 'True', 'TRUE'].includes(url.searchParams.get('list') ?? '');
    const method = request.method === 'PUT' ? 'POST' : (request.method ?? 'GET');
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const header = request.headers['x-vault-token'];
    const bearer = /^Bearer (.+)$/.exec(String(request.headers.authorization ?? ''))?.[1];
    const tokenId = (typeof header === 'string' && header !== '' ? header : undefined) ?? bearer;
    let result: Reply;
    try {
      const body =
        text.length > 0
          ? (JSON.parse(text) as Record<string, unknown>)
          : Object.fromEntries(url.searchParams);
      result = await route(method === 'HEAD' ? 'GET' : method, path, body, listing, tokenId);
    } catch (error) {
      result =
        error instanceof VaultHttpError
          ? { status: error.status, body: { errors: error.text === undefined ? [] : [error.text] } }
          : { status: 500, body: { errors: [error instanceof Error ? error.message : String(error)] } };
    }
    requestLog.push({ method, path, status: result.status });
    if (result.raw !== undefined) {
      response.writeHead(result.status, { 'content-type': result.raw.contentType });
      response.end(result.raw.text);
      return;
    }
    if (result.status === 204 || result.body === undefined) {
      response.writeHead(204);
      response.end();
      return;
    }
    const payload = result.body as Record<string, unknown>;
    const injected =
      INJECTED.some((pattern) => pattern.test(path)) && payload.data
        ? { ...(payload.data as object), ...payload }
        : payload;
    response.writeHead(result.status, { 'content-type': 'application/json' });
    response.end(`${JSON.stringify(injected)}\n`);
  };

  const listener = (request: IncomingMessage, response: ServerResponse) => void handle(request, response);
  const tls = options.tls ? await listenerCertificate() : undefined;
  const server: Server = tls
    ? createHttpsServer({ cert: tls.certificatePem, key: tls.keyPem }, listener)
    : createServer(listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `${tls ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}`,
    caPem: tls?.caPem,
    rootToken: root.id,
    /** Method, path and status of every request; never a token or a body. */
    requestLog,
    seal: () => {
      sealed = true;
    },
    unseal: () => {
      sealed = false;
    },
    /**
     * Answer the next `times` requests (health and seal status aside) with 412 "required index state
     * not present", as an Enterprise performance standby does until it has replayed the client's index.
     */
    answerIndexNotPresent: (times: number) => {
      indexNotPresentAnswers = times;
    },
    /** IAM as Vault's AWS auth method sees it: recreate a role (new unique id), or deny Vault iam:GetRole. */
    iam,
    /** Answer the next `times` requests to `path` (e.g. `auth/token/revoke-accessor`) with this error. */
    answerWithError: (path: string, status: number, text: string, times = 1) => {
      injectedFailures.set(path, { status, text, times });
    },
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A CA and a server certificate for the listener, made fresh for each emulator. */
async function listenerCertificate(): Promise<{ caPem: string; certificatePem: string; keyPem: string }> {
  const now = Date.now();
  const validity = { notBefore: new Date(now - 60_000), notAfter: new Date(now + 30 * 86_400_000) };
  const caKeys = await generateKeys('ec', 256);
  const ca = await createCertificate({
    commonName: 'Vault listener CA (local world)',
    publicKey: caKeys.publicKey,
    issuer: { selfSigned: caKeys },
    ca: true,
    ...validity,
  });
  const serverKeys = await generateKeys('ec', 256);
  const server = await createCertificate({
    commonName: 'vault.local-world',
    publicKey: serverKeys.publicKey,
    issuer: { certificate: ca.certificate, keys: caKeys },
    ca: false,
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
    serverAuth: true,
    ...validity,
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', serverKeys.privateKey));
  return {
    caPem: pem(ca.certificate),
    certificatePem: pem(server.certificate),
    keyPem: createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({
      format: 'pem',
      type: 'pkcs8',
    }) as string,
  };
}

function reply(result: PkiResult): Reply {
  return {
    status: result.status ?? 200,
    ...(result.body !== undefined ? { body: result.body } : {}),
    ...(result.raw ? { raw: result.raw } : {}),
  };
}
