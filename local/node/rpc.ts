// Nomad's RPC port (4647) as the stand-in models it: mutual TLS with the agent's current files, one
// JSON request and one JSON answer per connection. The names are checked as Nomad checks them
// (helper/tlsutil, nomad/rpc.go): outgoing connections to servers verify `server.<region>.nomad`;
// incoming peers must present `server.<region>.nomad` (Raft and server RPC) or, for client RPC,
// `client.<region>.nomad` of this server's own region.
import { connect, createServer, type SecureContextOptions, type Server, type TLSSocket } from 'node:tls';

export interface TlsFiles {
  /** Only the CA blocks that parse: Nomad's pool skips the others. */
  ca: string[];
  cert: string;
  key: string;
}

type PeerRole = 'server' | 'client';

/** One RPC: the operation and its arguments. What the operations mean is the Raft model's business. */
export interface RpcRequest {
  op: string;
  [argument: string]: unknown;
}

/**
 * What a client certificate may call: Status.Leader, Status.Peers, Operator.RaftGetConfiguration and
 * the autopilot calls a client agent forwards for its HTTP API; Raft traffic needs a server certificate.
 */
const CLIENT_OPERATIONS = new Set([
  'leader',
  'peers',
  'configuration',
  'autopilot-health',
  'autopilot-get-configuration',
  'autopilot-set-configuration',
]);

export const serverName = (region: string) => `server.${region}.nomad`;

const LOOPBACK = '127.0.0.1';
/** Requests are a few hundred bytes; anything longer is not ours. */
const MAX_MESSAGE_BYTES = 64 * 1024;

/** The role a peer certificate grants in `region`, or undefined: then Nomad closes the connection. */
function peerRole(socket: TLSSocket, region: string): PeerRole | undefined {
  const names = (socket.getPeerX509Certificate()?.subjectAltName ?? '')
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry.startsWith('DNS:'))
    .map((entry) => entry.slice('DNS:'.length));
  if (names.includes(serverName(region))) return 'server';
  if (names.includes(`client.${region}.nomad`)) return 'client';
  return undefined;
}

/** Reads one newline-terminated JSON message. */
function readMessage(socket: TLSSocket): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      const end = buffered.indexOf('\n');
      if (end >= 0) {
        cleanup();
        try {
          resolve(JSON.parse(buffered.slice(0, end)));
        } catch (error) {
          reject(error);
        }
      } else if (buffered.length > MAX_MESSAGE_BYTES) {
        cleanup();
        reject(new Error('message too long'));
      }
    };
    const onEnd = () => {
      cleanup();
      reject(new Error('EOF'));
    };
    const cleanup = () => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onEnd);
      socket.off('close', onEnd);
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', onEnd);
    socket.on('close', onEnd);
  });
}

function contextOptions(files: TlsFiles): SecureContextOptions {
  return { ca: files.ca, cert: files.cert, key: files.key };
}

/**
 * One outgoing RPC to a server: a fresh mTLS connection with `files`, ServerName
 * `server.<region>.nomad`, closed after the answer. `track` lets a server close it on reload.
 */
export function rpcCall(
  port: number,
  request: RpcRequest,
  options: { files: TlsFiles; region: string; timeoutMs: number; track?: Set<TLSSocket> },
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: LOOPBACK,
      port,
      servername: serverName(options.region),
      ...contextOptions(options.files),
    });
    options.track?.add(socket);
    let settled = false;
    const settle = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.track?.delete(socket);
      socket.destroy();
      outcome();
    };
    const timer = setTimeout(() => settle(() => reject(new Error('rpc timeout'))), options.timeoutMs);
    // Errors after the answer (the peer resetting a closed connection) must not go unhandled.
    socket.on('error', (error) => settle(() => reject(error)));
    socket.once('secureConnect', () => {
      socket.write(`${JSON.stringify(request)}\n`);
      readMessage(socket).then(
        (answer) => settle(() => resolve(answer)),
        (error: Error) => settle(() => reject(error)),
      );
    });
  });
}

/** Answers an RPC that passed the name checks. */
export type RpcHandler = (request: RpcRequest) => Promise<unknown>;

/**
 * A server's RPC listener. `useLeaf` swaps the served certificate in place (Nomad's shared key loader);
 * `reload` is Nomad's server TLS reload: a new listener with the new files, and every open RPC and
 * Raft connection, in or out, closed.
 */
export class RpcListener {
  #server: Server;
  #files: TlsFiles;
  readonly #sockets = new Set<TLSSocket>();
  /** Outgoing connections, so a reload closes them too. */
  readonly outgoing = new Set<TLSSocket>();

  constructor(
    readonly port: number,
    readonly region: string,
    files: TlsFiles,
    readonly handle: RpcHandler,
  ) {
    this.#files = files;
    this.#server = this.#create(files);
  }

  get files(): TlsFiles {
    return this.#files;
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.port, LOOPBACK, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
  }

  /** The new leaf for incoming and outgoing connections, with the CA pools unchanged. */
  useLeaf(cert: string, key: string): void {
    this.#files = { ...this.#files, cert, key };
    this.#server.setSecureContext(contextOptions(this.#files));
  }

  async reload(files: TlsFiles): Promise<void> {
    await this.close();
    this.#files = files;
    this.#server = this.#create(files);
    await this.listen();
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const socket of [...this.#sockets, ...this.outgoing]) socket.destroy();
    await closed;
  }

  #create(files: TlsFiles): Server {
    const server = createServer({ ...contextOptions(files), requestCert: true, rejectUnauthorized: true });
    server.on('secureConnection', (socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
      socket.on('error', () => socket.destroy());
      const role = peerRole(socket, this.region);
      if (role === undefined) {
        socket.destroy();
        return;
      }
      readMessage(socket)
        .then(async (request) => {
          const typed = request as RpcRequest;
          if (role !== 'server' && !CLIENT_OPERATIONS.has(typed.op)) throw new Error('permission denied');
          const answer = await this.handle(typed);
          socket.end(`${JSON.stringify(answer)}\n`);
        })
        .catch(() => socket.destroy());
    });
    server.on('tlsClientError', () => {});
    return server;
  }
}
