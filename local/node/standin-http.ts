import type { IncomingMessage } from 'node:http';
import { createServer, type Server } from 'node:https';
import { Server as NetServer } from 'node:net';
import type { TlsFiles } from './rpc';

export const LOOPBACK = '127.0.0.1';
/** The old HTTP listener's port may take a moment to be released when the listener is rebuilt. */
const HTTP_REBIND_ATTEMPTS = 50;
const HTTP_REBIND_DELAY_MS = 10;

export interface Reply {
  status: number;
  body: unknown;
}

export interface AgentHttpOptions {
  port: number;
  /** Nomad's verify_https_client: ask for a client certificate and refuse a handshake without one. */
  verifyHttpsClient: boolean;
  route: (request: IncomingMessage) => Promise<Reply>;
}

/** The agent's HTTPS API on the node's port. */
export class AgentHttp {
  /** The listener taking new connections. */
  #server: Server;
  /** Retired listeners still serving their open keep-alives. */
  readonly #retired = new Set<Server>();

  constructor(
    private readonly options: AgentHttpOptions,
    files: TlsFiles,
  ) {
    this.#server = this.#create(files);
  }

  listen(): Promise<void> {
    return this.#listen(this.#server);
  }

  /** The new leaf for new connections on the current listener. */
  useLeaf(files: TlsFiles): void {
    this.#server.setSecureContext(this.#tlsOptions(files));
  }

  /**
   * Nomad's reloadHTTPServer: the listener is shut and a new one built with the new TLS configuration.
   * Connections already open, idle keep-alives included, stay with the old server object and so with
   * the old certificate. Nomad closes only the listener; Node's https close() would also drop idle
   * connections, hence net.Server's own close.
   */
  async rebuild(files: TlsFiles): Promise<void> {
    const old = this.#server;
    this.#retired.add(old);
    NetServer.prototype.close.call(old, () => this.#retired.delete(old));
    this.#server = this.#create(files);
    await this.#listen(this.#server);
  }

  /** Every listener shut and every connection dropped, retired ones included. */
  close(): void {
    for (const server of [this.#server, ...this.#retired]) {
      server.close();
      server.closeAllConnections();
    }
  }

  #tlsOptions(files: TlsFiles) {
    return {
      ...files,
      requestCert: this.options.verifyHttpsClient,
      rejectUnauthorized: this.options.verifyHttpsClient,
    };
  }

  #create(files: TlsFiles): Server {
    const server = createServer(this.#tlsOptions(files), (request, response) => {
      void this.options.route(request).then(({ status, body }) => {
        // Nomad encodes results as JSON and writes errors as bare text.
        const text = typeof body === 'string' && status >= 400;
        response.writeHead(status, {
          'content-type': text ? 'text/plain; charset=utf-8' : 'application/json',
        });
        response.end(text ? body : `${JSON.stringify(body)}\n`);
      });
    });
    // A client without the certificate we ask for, or one we cannot verify: its handshake fails, as in Go.
    server.on('tlsClientError', () => {});
    return server;
  }

  async #listen(server: Server): Promise<void> {
    for (let attempt = 1; ; attempt += 1) {
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(this.options.port, LOOPBACK, () => {
            server.off('error', reject);
            resolve();
          });
        });
        return;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= HTTP_REBIND_ATTEMPTS)
          throw error;
        await new Promise((resolve) => setTimeout(resolve, HTTP_REBIND_DELAY_MS));
      }
    }
  }
}
