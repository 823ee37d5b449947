import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { type Clock, systemClock } from '../../shared/clock';
import { type Capability, DEFAULT_POLICY, requireCapability } from './acl';
import { awsConfigRoute, awsLogin, tokenRoute } from './auth-routes';
import { type AwsAuthMethod, IamDirectory } from './aws-auth';
import { listenerCertificate } from './listener-tls';
import { INVALID_TOKEN, PERMISSION_DENIED, type PkiResult, type Reply, VaultHttpError } from './protocol';
import {
  capabilitiesSelf,
  healthBody,
  type Mount,
  type SysState,
  sealStatusBody,
  sysRoute,
} from './sys-routes';
import { TokenStore } from './tokens';

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
  const sys: SysState = {
    clock,
    mounts,
    authMethods,
    policies,
    awsIdentities: options.awsIdentities ?? {},
    iam,
  };
  const requestLog: { method: string; path: string; status: number }[] = [];
  let sealed = false;
  /** Requests still to be answered 412, as a performance standby behind the active node answers them. */
  let indexNotPresentAnswers = 0;
  /** Injected failures by path: what a broken or misconfigured Vault would answer there. */
  const injectedFailures = new Map<string, { status: number; text: string; times: number }>();

  const route = async (
    method: string,
    path: string,
    body: Record<string, unknown>,
    listing: boolean,
    tokenId: string | undefined,
    remoteAddress: string | undefined,
  ): Promise<Reply> => {
    if (path === 'sys/health') return { status: sealed ? 503 : 200, body: healthBody(sealed, clock.now()) };
    if (path === 'sys/seal-status') return { status: 200, body: sealStatusBody(sealed) };
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
    if (login && authMethods.has(login[1]!) && method !== 'GET')
      return awsLogin(authMethods.get(login[1]!)!, tokens, path, body);
    const [mountName, ...rest] = path.split('/');
    const mount = mounts.get(mountName ?? '');
    if (mount?.pki && PKI_UNAUTHENTICATED.test(rest.join('/')) && method === 'GET')
      return reply(await mount.pki.handle(method, rest.join('/'), body, listing));

    const token = tokens.lookup(tokenId);
    if (token === undefined) throw INVALID_TOKEN();
    if (!tokens.usableFrom(token, remoteAddress)) throw PERMISSION_DENIED();
    const needed: Capability[] =
      method === 'GET'
        ? [listing ? 'list' : 'read']
        : method === 'DELETE'
          ? ['delete']
          : ['update', 'create'];
    if (path === 'sys/capabilities-self') return capabilitiesSelf(policies, token, path, body);
    requireCapability(policies, token, path, needed);
    if (path.startsWith('auth/token/'))
      return tokenRoute(tokens, policies, token, path, body, method, listing);
    if (path.startsWith('sys/')) return sysRoute(sys, path, method, body, listing);
    const awsConfig = /^auth\/(.+)\/(config\/client|role\/.+)$/.exec(path);
    if (awsConfig && authMethods.has(awsConfig[1]!))
      return awsConfigRoute(authMethods.get(awsConfig[1]!)!, method, awsConfig[2]!, body);
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
      result = await route(
        method === 'HEAD' ? 'GET' : method,
        path,
        body,
        listing,
        tokenId,
        request.socket.remoteAddress,
      );
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

function reply(result: PkiResult): Reply {
  return {
    status: result.status ?? 200,
    ...(result.body !== undefined ? { body: result.body } : {}),
    ...(result.raw ? { raw: result.raw } : {}),
  };
}
