// The Nomad stand-in: one process per node, started by the node's supervisor (systemd's role).
// It serves HTTPS with mutual TLS from the node's certificate files and reloads them on SIGHUP the
// way Nomad does (DESIGN §6, nomad-facts §1.2): content checksum decides, a bad key pair keeps the
// old one, a bad CA file makes the agent exit (Nomad >= 1.10.1). On servers it also runs a real serf
// agent, as Nomad embeds serf: same lifetime as the agent, keyring persisted in the data dir, and the
// gossip keyring API answered from it (nomad-facts §2.3).
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { appendFileSync, closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { createServer, type Server } from 'node:https';
import { createSecureContext } from 'node:tls';
import { type KeyOperation, type SerfAddress, serfHandshake, serfKeys, serfMembers } from './serf-rpc';

export interface GossipConfig {
  /** Nomad names a server's serf member `<node name>.<region>`. */
  memberName: string;
  bindPort: number;
  rpcPort: number;
  /** `<data_dir>/server/serf.keyring`: loaded when present; without it the agent gossips in clear. */
  keyringFile: string;
  /** The other servers' serf addresses, joined with retries as Nomad's `server_join` does. */
  join: string[];
  tags: Record<string, string>;
}

export interface KnownServer {
  nodeName: string;
  serfRpcPort: number;
}

export interface StandinConfig {
  role: 'server' | 'client';
  nodeName: string;
  region: string;
  datacenter: string;
  port: number;
  caFile: string;
  certFile: string;
  keyFile: string;
  logFile: string;
  /** A file whose presence makes the agent ignore SIGHUP (a reload that silently does nothing). */
  ignoreSighupFile: string;
  leader: string;
  peers: string[];
  /** Servers only. */
  gossip?: GossipConfig;
  /** Where a client's server RPCs (here: the member list) go. */
  servers: KnownServer[];
}

/** A message to the supervisor once the agent serves: its helper processes belong to the unit. */
export interface ReadyMessage {
  ready: true;
  processes: number[];
}

interface Material {
  ca: string;
  cert: string;
  key: string;
  checksum: string;
}

interface Reply {
  status: number;
  body: unknown;
}

const LOOPBACK = '127.0.0.1';
// serf answers a keyring query within its own timeout (3.2 s with the LAN profile); a silent
// agent (stopped, frozen) must not hang the HTTP request forever.
const SERF_RPC_TIMEOUT_MS = 10_000;
const SERF_START_TIMEOUT_MS = 5_000;
const SERF_STOP_GRACE_MS = 2_000;
/** A client tries the next server when one does not answer within this. */
const SERVER_MEMBERS_TIMEOUT_MS = 2_000;
/** Nomad's ErrInvalidMethod, its answer to a wrong method and to server-only calls on a client. */
const INVALID_METHOD = 'Invalid method';

const config = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as StandinConfig;

function log(message: string): void {
  appendFileSync(config.logFile, `${new Date().toISOString()} [${config.nodeName}] ${message}\n`);
}

function readMaterial(): Material {
  const [ca, cert, key] = [config.caFile, config.certFile, config.keyFile].map((path) =>
    readFileSync(path, 'utf8'),
  );
  return {
    ca: ca!,
    cert: cert!,
    key: key!,
    checksum: createHash('sha256').update(`${ca}${cert}${key}`).digest('hex'),
  };
}

/** Nomad builds its CA pool with AppendCertsFromPEM: every block must parse, at least one must exist. */
function assertValidCa(ca: string): void {
  const blocks = ca.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new Error('no certificate in ca_file');
  for (const block of blocks) new X509Certificate(block);
}

function secureOptions(material: Material) {
  return {
    ca: material.ca,
    cert: material.cert,
    key: material.key,
    requestCert: true,
    rejectUnauthorized: true,
  };
}

function serial(material: Material): string {
  return new X509Certificate(material.cert).serialNumber.toLowerCase();
}

/** The serf agent a Nomad server embeds. Its output goes to the agent's log, as Nomad's does. */
class GossipAgent {
  readonly #child: ChildProcess;
  readonly #spawnFailed: Promise<never>;
  readonly address: SerfAddress;
  #stopping = false;

  constructor(readonly gossip: GossipConfig) {
    this.address = { host: LOOPBACK, port: gossip.rpcPort };
    const args = [
      'agent',
      `-node=${gossip.memberName}`,
      `-bind=${LOOPBACK}:${gossip.bindPort}`,
      `-rpc-addr=${LOOPBACK}:${gossip.rpcPort}`,
      // Nomad gossips with memberlist's WAN timings: a keyring query waits 8 s for a silent server.
      // Loopback needs no such slack, so the LAN profile (3.2 s). Not `local` (1.6 s, 200 ms probe
      // timeout): on a loaded machine a server then now and then missed a `use`, and once the old key
      // was removed it could decrypt no one, a straggler the rotation under test did not cause.
      '-profile=lan',
      // Servers start one at a time on first issuance; serf's shortest retry lets the first one find
      // the others within a second (Nomad's retry_join default is 30 s).
      '-retry-interval=1s',
      '-log-level=warn',
      ...gossip.join.map((address) => `-retry-join=${address}`),
      ...Object.entries(gossip.tags).flatMap(([name, value]) => ['-tag', `${name}=${value}`]),
      ...(existsSync(gossip.keyringFile) ? [`-keyring-file=${gossip.keyringFile}`] : []),
    ];
    const output = openSync(config.logFile, 'a');
    this.#child = spawn('serf', args, { stdio: ['ignore', output, output] });
    closeSync(output);
    this.#spawnFailed = new Promise<never>((_, reject) => this.#child.once('error', reject));
    this.#spawnFailed.catch(() => {});
    this.#child.on('exit', (code, signal) => {
      if (this.#stopping) return;
      log(`==> serf agent exited unexpectedly (${signal ?? code}); the agent stops with it`);
      process.exit(1);
    });
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  async started(): Promise<void> {
    const deadline = Date.now() + SERF_START_TIMEOUT_MS;
    for (;;) {
      try {
        await Promise.race([serfHandshake(this.address, 500), this.#spawnFailed]);
        return;
      } catch (error) {
        if (Date.now() > deadline || (error as NodeJS.ErrnoException).syscall?.startsWith('spawn'))
          throw error;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  }

  /**
   * SIGTERM: serf shuts down without a graceful leave, as Nomad does with leave_on_interrupt=false.
   * SIGKILL: the agent crashed, and its embedded gossip goes down with it.
   */
  async stop(signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    this.#stopping = true;
    if (!this.running) return;
    const exited = new Promise<void>((resolve) => this.#child.once('exit', () => resolve()));
    this.#child.kill(signal);
    const forced = setTimeout(() => this.#child.kill('SIGKILL'), SERF_STOP_GRACE_MS);
    await exited;
    clearTimeout(forced);
  }

  /** The last resort when the agent dies unexpectedly (nothing can be awaited in an exit handler). */
  kill(): void {
    this.#stopping = true;
    if (this.running) this.#child.kill('SIGKILL');
  }

  get running(): boolean {
    return this.#child.exitCode === null && this.#child.signalCode === null;
  }
}

let material: Material;
try {
  material = readMaterial();
  assertValidCa(material.ca);
  createSecureContext(secureOptions(material));
} catch (error) {
  log(`==> Error starting agent: ${(error as Error).message}`);
  process.exit(1);
}

const gossip = config.gossip === undefined ? undefined : new GossipAgent(config.gossip);
process.on('exit', () => gossip?.kill());

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Decodes `{"Key": "..."}` as Go's encoding/json would into Nomad's KeyringRequest. */
function keyFromBody(text: string): { key: string } | { error: string } {
  if (text.trim() === '') return { error: 'EOF' };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // JavaScript's parse errors quote the input, which here holds a secret.
    return { error: 'invalid JSON in request body' };
  }
  if (parsed === null) return { key: '' };
  if (typeof parsed !== 'object' || Array.isArray(parsed)) {
    return { error: 'json: cannot unmarshal non-object into Go value of type structs.KeyringRequest' };
  }
  // encoding/json matches field names case-insensitively.
  const value = Object.entries(parsed).find(([name]) => name.toLowerCase() === 'key')?.[1] ?? '';
  if (typeof value !== 'string') {
    return {
      error: 'json: cannot unmarshal non-string into Go struct field KeyringRequest.Key of type string',
    };
  }
  return { key: value };
}

const KEY_OPERATIONS: Record<string, KeyOperation> = {
  list: 'list-keys',
  install: 'install-key',
  use: 'use-key',
  remove: 'remove-key',
};

/** `/v1/agent/keyring/<op>`: Nomad ignores the method, answers 501 on clients, 500 with serf's error. */
async function keyring(op: string, request: IncomingMessage): Promise<Reply> {
  if (gossip === undefined) return { status: 501, body: INVALID_METHOD };
  const operation = KEY_OPERATIONS[op];
  if (operation === undefined) return { status: 404, body: 'resource not found' };
  let key: string | undefined;
  if (operation !== 'list-keys') {
    const decoded = keyFromBody(await readBody(request));
    if ('error' in decoded) return { status: 400, body: decoded.error };
    key = decoded.key;
  }
  try {
    const answer = await serfKeys(gossip.address, operation, key, SERF_RPC_TIMEOUT_MS);
    if (answer.error) return { status: 500, body: answer.error };
    return { status: 200, body: { Messages: answer.Messages, Keys: answer.Keys, NumNodes: answer.NumNodes } };
  } catch (error) {
    return { status: 500, body: (error as Error).message };
  }
}

/**
 * `/v1/agent/members`: Nomad answers with Status.Members, which a client forwards to a server; either
 * way it is one server's gossip view.
 */
async function members(request: IncomingMessage): Promise<Reply> {
  if (request.method !== 'GET') return { status: 405, body: INVALID_METHOD };
  const candidates: KnownServer[] =
    gossip === undefined
      ? config.servers
      : [{ nodeName: config.nodeName, serfRpcPort: gossip.gossip.rpcPort }];
  if (candidates.length === 0) return { status: 500, body: 'no servers' };
  let failure = '';
  for (const server of candidates) {
    try {
      const list = await serfMembers({ host: LOOPBACK, port: server.serfRpcPort }, SERVER_MEMBERS_TIMEOUT_MS);
      return {
        status: 200,
        body: {
          ServerName: server.nodeName,
          ServerRegion: config.region,
          ServerDC: config.datacenter,
          Members: list,
        },
      };
    } catch (error) {
      failure = (error as Error).message;
    }
  }
  return { status: 500, body: gossip === undefined ? `rpc error: ${failure}` : failure };
}

async function route(request: IncomingMessage): Promise<Reply> {
  const path = (request.url ?? '').split('?')[0] ?? '';
  if (path === '/v1/agent/health')
    return { status: 200, body: { [config.role]: { ok: true, message: 'ok' } } };
  if (path === '/v1/status/leader') return { status: 200, body: config.leader };
  if (path === '/v1/status/peers') return { status: 200, body: config.peers };
  if (path === '/v1/agent/members') return members(request);
  if (path.startsWith('/v1/agent/keyring/')) return keyring(path.slice('/v1/agent/keyring/'.length), request);
  return { status: 404, body: 'Invalid URL path' };
}

const server: Server = createServer(secureOptions(material), (request, response) => {
  void route(request).then(({ status, body }) => {
    // Nomad encodes results as JSON and writes errors as bare text.
    const text = typeof body === 'string' && status >= 400;
    response.writeHead(status, { 'content-type': text ? 'text/plain; charset=utf-8' : 'application/json' });
    response.end(text ? body : `${JSON.stringify(body)}\n`);
  });
});

process.on('SIGHUP', () => {
  if (existsSync(config.ignoreSighupFile)) {
    log('SIGHUP received; ignored (fault injected)');
    return;
  }
  let next: Material;
  try {
    next = readMaterial();
  } catch (error) {
    log(`failed to reload the config: parsing TLS certificate: ${(error as Error).message}`);
    return;
  }
  if (next.checksum === material.checksum) {
    log('SIGHUP received; TLS files unchanged, nothing reloaded');
    return;
  }
  try {
    assertValidCa(next.ca);
  } catch (error) {
    log(`Fatal error while reloading: ${(error as Error).message}`);
    void exitWith(1);
    return;
  }
  try {
    server.setSecureContext(secureOptions(next));
  } catch (error) {
    log(`failed to reload the config: ${(error as Error).message}`);
    return;
  }
  material = next;
  log(`reloading TLS: now serving serial ${serial(material)}`);
});

let shuttingDown = false;
/** Stops serving and waits for serf to go, so the unit has no process left once the agent exits. */
async function exitWith(code: 0 | 1): Promise<void> {
  if (shuttingDown) return;
  shuttingDown = true;
  server.close();
  server.closeAllConnections();
  await gossip?.stop(code === 0 ? 'SIGTERM' : 'SIGKILL');
  process.exit(code);
}
process.on('SIGINT', () => void exitWith(0));
process.on('SIGTERM', () => void exitWith(0));
// The supervisor went away without stopping the unit (a killed test run): leave nothing behind.
process.on('disconnect', () => void exitWith(0));

async function start(): Promise<void> {
  try {
    await gossip?.started();
  } catch (error) {
    log(`==> Error starting agent: serf: ${(error as Error).message}`);
    return exitWith(1);
  }
  server.listen(config.port, LOOPBACK, () => {
    log(`agent started, serving serial ${serial(material)} on ${LOOPBACK}:${config.port}`);
    if (gossip !== undefined) {
      log(`serf agent ${gossip.gossip.memberName} gossiping on ${LOOPBACK}:${gossip.gossip.bindPort}`);
    }
    const ready: ReadyMessage = { ready: true, processes: gossip?.pid === undefined ? [] : [gossip.pid] };
    process.send?.(ready);
  });
}

void start();
