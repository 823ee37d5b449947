import NodeVault from 'node-vault';
import type { RotatorError } from '../errors';
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

/**
 * The one place that talks HTTP to Vault. Retries transient failures with jittered exponential
 * backoff, re-reads the token once after a 403 (it may have been rotated under us), and turns every
 * failure into a typed error without the token in it.
 */
export class VaultClient {
  readonly #vault: NodeVault.client;
  readonly #options: VaultClientOptions;

  constructor(options: VaultClientOptions) {
    this.#options = options;
    this.#vault = NodeVault({
      endpoint: options.address,
      // node-vault sends LIST by default, which some proxies and Node's http parser refuse.
      noCustomHTTPVerbs: true,
      ...(options.namespace ? { namespace: options.namespace } : {}),
      requestOptions: {
        timeout: options.timeoutMs,
        // Explicit, so VAULT_SKIP_VERIFY in the environment can never turn verification off.
        strictSSL: true,
        ...(options.caBundlePem ? { ca: options.caBundlePem } : {}),
      },
    });
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

  /** sys/health answers with a body for every status; node-vault resolves it for any status code. */
  async health(): Promise<{ initialized: boolean; sealed: boolean; standby: boolean; version?: string }> {
    return this.#vault.health({ standbyok: false });
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
    // Per-request header, so concurrent calls with different tokens never share state in node-vault.
    const requestOptions = { headers: { 'X-Vault-Token': token } };
    switch (operation) {
      case 'read':
        return this.#vault.read(path, requestOptions);
      case 'write':
        return this.#vault.write(path, body ?? {}, requestOptions);
      case 'list':
        return this.#vault.list(path, requestOptions);
      case 'delete':
        return this.#vault.delete(path, requestOptions);
    }
  }
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
