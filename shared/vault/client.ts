import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { type RotatorError, ValidationError } from '../errors';
import { secureOrLoopback } from '../validation';
import { toVaultError, VaultPermissionDeniedError } from './errors';

export interface TokenSource {
  /** The token to use now (cached). */
  token(): Promise<string>;
  /** Forget the cached token: the next call re-reads it (after a 403, the token may have rotated). */
  invalidate(): void;
}

export interface VaultClientOptions {
  address: string;
  caBundlePem?: string;
  namespace?: string;
  timeoutMs: number;
  tokens?: TokenSource;
  /** Attempts for retryable failures (5xx, 429, 412, sealed, network); other 4xx are never retried. */
  attempts?: number;
  backoffBaseMs?: number;
  sleep?: (ms: number) => Promise<void>;
}

type Operation = 'read' | 'write' | 'list' | 'delete';

const sleepFor = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;

/**
 * The one place that talks HTTP to Vault, on Node's own http(s) modules: every setting comes from
 * the options (no VAULT_* environment variable is read), TLS is always verified, and a redirect is
 * an error, never followed, so the token goes to vault.address and nowhere else. Retries transient
 * failures with jittered exponential backoff, re-reads the token once after a 403 (it may have been
 * rotated under us), and turns every failure into a typed error without the token in it.
 */
export class VaultClient {
  readonly #options: VaultClientOptions;
  readonly #origin: URL;

  constructor(options: VaultClientOptions) {
    this.#options = options;
    this.#origin = vaultOrigin(options.address);
  }

  get address(): string {
    return this.#options.address;
  }

  read<T = VaultResponse>(path: string, token?: string): Promise<T> {
    return this.#call('read', path, undefined, token);
  }

  write<T = VaultResponse>(path: string, body: Record<string, unknown>, token?: string): Promise<T> {
    return this.#call('write', path, body, token);
  }

  list<T = VaultResponse>(path: string, token?: string): Promise<T> {
    return this.#call('list', path, undefined, token);
  }

  delete<T = VaultResponse>(path: string, token?: string): Promise<T> {
    return this.#call('delete', path, undefined, token);
  }

  /** sys/health answers with a body for every status (429 standby, 501, 503 sealed). */
  async health(): Promise<{ initialized: boolean; sealed: boolean; standby: boolean; version?: string }> {
    try {
      const { body } = await this.#send('GET', 'sys/health?standbyok=false', undefined, undefined);
      return body as { initialized: boolean; sealed: boolean; standby: boolean; version?: string };
    } catch (raw) {
      throw toVaultError(raw, 'read', 'sys/health');
    }
  }

  async #call<T>(
    operation: Operation,
    path: string,
    body: Record<string, unknown> | undefined,
    explicitToken?: string,
  ): Promise<T> {
    const attempts = this.#options.attempts ?? 3;
    const sleep = this.#options.sleep ?? sleepFor;
    let reReadToken = explicitToken === undefined && this.#options.tokens !== undefined;
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await this.#once<T>(operation, path, body, explicitToken);
      } catch (raw) {
        const error: RotatorError = toVaultError(raw, operation, path);
        if (error instanceof VaultPermissionDeniedError && reReadToken) {
          reReadToken = false;
          this.#options.tokens?.invalidate();
          continue;
        }
        if (!error.retryable || attempt >= attempts) throw error;
        const base = (this.#options.backoffBaseMs ?? 200) * 2 ** (attempt - 1);
        await sleep(base / 2 + Math.random() * base);
      }
    }
  }

  async #once<T>(
    operation: Operation,
    path: string,
    body: Record<string, unknown> | undefined,
    explicitToken?: string,
  ): Promise<T> {
    const token = explicitToken ?? (await this.#options.tokens?.token()) ?? '';
    // LIST as `GET ?list=true`, which Vault accepts everywhere; some proxies refuse the LIST verb.
    const [method, target] =
      operation === 'list'
        ? ['GET', `${path}?list=true`]
        : [{ read: 'GET', write: 'POST', delete: 'DELETE' }[operation], path];
    const answer = await this.#send(method, target, body, token);
    if (answer.status === 200 || answer.status === 204) return answer.body as T;
    throw { response: { statusCode: answer.status, body: answer.body } };
  }

  /** One request; resolves with any status Vault answers, rejects only when no answer came. */
  #send(
    method: string,
    target: string,
    body: Record<string, unknown> | undefined,
    token: string | undefined,
  ): Promise<{ status: number; body: unknown }> {
    const url = new URL(`/v1/${target}`, this.#origin);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = {
      accept: 'application/json',
      ...(token ? { 'x-vault-token': token } : {}),
      ...(this.#options.namespace ? { 'x-vault-namespace': this.#options.namespace } : {}),
      ...(payload === undefined
        ? {}
        : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) }),
    };
    const secure = url.protocol === 'https:';
    const send = secure ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const request = send(
        url,
        {
          method,
          headers,
          timeout: this.#options.timeoutMs,
          ...(secure
            ? {
                rejectUnauthorized: true,
                ...(this.#options.caBundlePem ? { ca: this.#options.caBundlePem } : {}),
              }
            : {}),
        },
        (response) => readBody(response).then(resolve, reject),
      );
      request.on('timeout', () =>
        request.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })),
      );
      request.on('error', (error: NodeJS.ErrnoException) => reject({ code: error.code ?? 'ECONNRESET' }));
      request.end(payload);
    });
  }
}

function readBody(response: IncomingMessage): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    response.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_RESPONSE_BYTES)
        response.destroy(Object.assign(new Error('too large'), { code: 'E2BIG' }));
      else chunks.push(chunk);
    });
    response.on('error', (error: NodeJS.ErrnoException) => reject({ code: error.code ?? 'ECONNRESET' }));
    response.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      // Raw endpoints (ca/pem, crl/pem) answer text, everything else JSON.
      let body: unknown = text === '' ? undefined : text;
      try {
        if (text !== '') body = JSON.parse(text);
      } catch {}
      resolve({ status: response.statusCode ?? 0, body });
    });
  });
}

/** The address's origin; https, or http only on a loopback host (the local world). */
function vaultOrigin(address: string): URL {
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    throw new ValidationError('invalid Vault client options', ['vault.address: not a URL']);
  }
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || !secureOrLoopback(url)) {
    throw new ValidationError('invalid Vault client options', [
      'vault.address: https:// required (plain http only on a loopback address)',
    ]);
  }
  if (url.pathname !== '/' || url.search !== '' || url.username !== '' || url.password !== '') {
    throw new ValidationError('invalid Vault client options', [
      'vault.address: scheme, host and port only (no path, query or credentials)',
    ]);
  }
  return url;
}

export interface VaultResponse {
  data?: Record<string, unknown> | null;
  auth?: {
    client_token: string;
    accessor: string;
    policies: string[];
    lease_duration: number;
    renewable: boolean;
  } | null;
  warnings?: string[] | null;
}
