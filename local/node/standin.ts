// The Nomad stand-in: one process per node, started by the node's supervisor (systemd's role).
// What it models, and from where (Nomad's source: command/agent, nomad/, helper/tlsutil):
// - TLS. HTTPS on the node's port from agent.crt/agent.key/ca.crt, asking for a client certificate
//   only with verify_https_client (no name is checked on it). Servers also listen for RPC on their
//   rpcPort, always mutual TLS with the current files and Nomad's name rules (./rpc.ts). A CA bundle
//   loads the blocks that parse and fails only when none does; an Ed25519 key fails like a bad CA.
// - Raft. Servers form a modelled Raft cluster over that RPC (./raft.ts): leader, peers, health and
//   autopilot's dead-server cleanup follow from which servers can reach each other.
// - Health and leader as Nomad answers them: a server's health and /v1/status/leader forward
//   Status.Leader to the leader (which its serf agent must know as alive) and hold up to
//   RPCHoldTimeout without one; a client's health only needs a known server, while its
//   /v1/status/leader goes over its own RPC to a server.
// - SIGHUP reloads only when the files' contents changed, in Nomad's order: the new leaf is live at
//   once (HTTPS and RPC), then the server's RPC listener is rebuilt with its connections closed,
//   then the HTTP listener (a short port gap; open keep-alive connections keep the old certificate).
//   Bad files follow the configured Nomad version (see reload()).
// - On servers, the serf agent Nomad embeds and the gossip endpoints (./gossip.ts).
// - Raft also waits for bootstrap_expect (every configured server alive in serf) before its first
//   election, and autopilot prunes serf-failed voters (./raft.ts).
// Not modelled: a Raft log, persisted terms, leadership transfer, PUT /v1/agent/reload (2.0.3+),
// ACLs outside the keyring endpoints, and everything in Nomad that is not TLS, Raft or gossip.
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync, rmSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { createServer, type Server } from 'node:https';
import { Server as NetServer } from 'node:net';
import { join } from 'node:path';
import { createSecureContext } from 'node:tls';
import { type AgentBehaviour, exitsOnReloadError } from './agent-options';
import { GossipAgent, type GossipConfig, type KnownServer, keyring, members } from './gossip';
import { type LeaderAnswer, RaftModel } from './raft';
import { RpcListener, type RpcRequest, rpcCall, type TlsFiles } from './rpc';
import { serfMembers } from './serf-rpc';

export type { GossipConfig, KnownServer } from './gossip';

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
  /**
   * A file whose presence makes the next reload fail after the new leaf is live, as a server reload
   * that errors does: the agent exits a moment later and systemd starts it again. Used once.
   */
  failNextReloadFile: string;
  /** Every configured server's Nomad RPC address: bootstrap_expect is their number; clients dial them. */
  rpcServers: RpcServer[];
  /** Servers only: the RPC port and Raft state directory. */
  server?: ServerRole;
  behaviour: AgentBehaviour;
  /** Servers only. */
  gossip?: GossipConfig;
  /** Where a client's server RPCs (here: the member list) go. */
  servers: KnownServer[];
}

export interface ServerRole {
  /** Where this server's RPC listens (Nomad's 4647). */
  rpcPort: number;
  /** `<data_dir>/server/raft`, where the modelled Raft marks that it has state. */
  raftDir: string;
}

export interface RpcServer {
  nodeName: string;
  rpcPort: number;
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
const NO_LEADER = 'No cluster leader';
/** How long a server's serf agent may take to list its members for autopilot. */
const SERF_MEMBERS_TIMEOUT_MS = 2_000;
/** The old HTTP listener's port may take a moment to be released when the listener is rebuilt. */
const HTTP_REBIND_ATTEMPTS = 50;
const HTTP_REBIND_DELAY_MS = 10;
/** How long a failed reload's new leaf is served before the agent exits (fail-next-reload fault). */
const FAILED_RELOAD_EXIT_DELAY_MS = 300;

const config = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as StandinConfig;
const behaviour = config.behaviour;

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

/**
 * Nomad builds its CA pool with Go's AppendCertsFromPEM: blocks that are not certificates or do not
 * parse are skipped silently, and only a file without a single good certificate is an error.
 */
function caPool(ca: string): string[] {
  const blocks = ca.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  const pool = blocks.filter((block) => {
    try {
      new X509Certificate(block);
      return true;
    } catch {
      return false;
    }
  });
  if (pool.length === 0) throw new Error('Failed to parse any CA certificates');
  return pool;
}

/** Node's TLS would serve an Ed25519 key; Nomad's TLS configuration refuses it (helper/tlsutil/config.go). */
function assertSupportedKey(key: string): void {
  const type = createPrivateKey(key).asymmetricKeyType;
  if (type === 'ed25519') throw new Error(`unsupported private key type ${type}`);
}

/** The TLS configuration Nomad builds from the files: errors here are the "bad CA" class. */
function tlsFiles(material: Material): TlsFiles {
  assertSupportedKey(material.key);
  return { ca: caPool(material.ca), cert: material.cert, key: material.key };
}

function httpOptions(tls: TlsFiles) {
  return {
    ...tls,
    requestCert: behaviour.verifyHttpsClient,
    rejectUnauthorized: behaviour.verifyHttpsClient,
  };
}

function serial(pem: string): string {
  return new X509Certificate(pem).serialNumber.toLowerCase();
}

let material: Material;
/** The files in force: the CA pools, and the leaf both listeners serve and RPC presents. */
let files: TlsFiles;
try {
  material = readMaterial();
  files = tlsFiles(material);
  createSecureContext(files);
} catch (error) {
  log(`==> Error starting agent: ${(error as Error).message}`);
  process.exit(1);
}

const gossip = config.gossip === undefined ? undefined : new GossipAgent(config.gossip, config.logFile, log);
process.on('exit', () => gossip?.kill());

const rpc =
  config.server === undefined
    ? undefined
    : new RpcListener(config.server.rpcPort, config.region, files, answerRpc);

const raft =
  config.server === undefined
    ? undefined
    : new RaftModel({
        self: {
          id: config.nodeName,
          rpcPort: config.server.rpcPort,
          serfName: `${config.nodeName}.${config.region}`,
        },
        members: config.rpcServers.map((server) => ({
          id: server.nodeName,
          rpcPort: server.rpcPort,
          serfName: `${server.nodeName}.${config.region}`,
        })),
        behaviour,
        bootstrapMarker: join(config.server.raftDir, 'bootstrapped'),
        call: (member, request, timeoutMs) =>
          rpcCall(member.rpcPort, request, {
            files: rpc!.files,
            region: config.region,
            timeoutMs,
            track: rpc!.outgoing,
          }),
        serfStatuses: async () => {
          const port = config.gossip?.rpcPort ?? 0;
          const list = await serfMembers({ host: LOOPBACK, port }, SERF_MEMBERS_TIMEOUT_MS);
          return new Map(list.map((member) => [member.Name, member.Status]));
        },
        log,
      });

/** A server's answer to an RPC from a server or (Status and Operator reads only) a client. */
async function answerRpc(request: RpcRequest): Promise<unknown> {
  if (raft === undefined) throw new Error('not a server');
  if (request.op === 'leader') return raft.leader(request.forwarded === true);
  if (request.op === 'peers') return raft.peers();
  if (request.op === 'configuration') return raft.configurationReply();
  return raft.handle(request);
}

/**
 * A client's RPC: its current agent certificate to one server after another, as Nomad's client
 * tries the next server when one cannot be reached. Holding for a leader happens on the server.
 */
async function clientRpc(op: string): Promise<{ answer: unknown } | { error: string }> {
  let failure = NO_LEADER;
  for (const server of config.rpcServers) {
    try {
      const answer = await rpcCall(
        server.rpcPort,
        { op },
        { files, region: config.region, timeoutMs: behaviour.rpcHoldTimeoutMs + 2_000 },
      );
      if (op !== 'leader' || 'leader' in (answer as LeaderAnswer)) return { answer };
      failure = (answer as { error: string }).error;
    } catch {
      // Unreachable, or it refused our certificate: the next server, as Nomad's client does.
    }
  }
  return { error: failure };
}

async function leaderReply(stale: boolean): Promise<Reply> {
  if (raft !== undefined && stale) return { status: 200, body: raft.staleLeader() };
  if (raft !== undefined) {
    const answer = await raft.leader(false);
    return 'leader' in answer ? { status: 200, body: answer.leader } : { status: 500, body: answer.error };
  }
  const answer = await clientRpc('leader');
  if ('error' in answer) return { status: 500, body: answer.error };
  return { status: 200, body: (answer.answer as { leader: string }).leader };
}

async function healthReply(): Promise<Reply> {
  if (raft !== undefined) {
    const answer = await raft.leader(false);
    const ok = 'leader' in answer;
    return { status: ok ? 200 : 500, body: { server: { ok, message: ok ? 'ok' : answer.error } } };
  }
  // A client's part checks only that it knows a server: no RPC (agent_endpoint.go).
  const ok = config.rpcServers.length > 0;
  return { status: ok ? 200 : 500, body: { client: { ok, message: ok ? 'ok' : 'no known servers' } } };
}

/** Status.Peers and the Raft configuration: a server's own view; a client asks a server. */
async function raftReadReply(op: 'peers' | 'configuration'): Promise<Reply> {
  if (raft !== undefined) {
    return { status: 200, body: op === 'peers' ? raft.peers() : raft.configurationReply() };
  }
  const answer = await clientRpc(op);
  return 'error' in answer ? { status: 500, body: answer.error } : { status: 200, body: answer.answer };
}

async function route(request: IncomingMessage): Promise<Reply> {
  const url = new URL(request.url ?? '/', 'https://agent');
  const path = url.pathname;
  if (path === '/v1/agent/health') return healthReply();
  if (path === '/v1/status/leader') return leaderReply(url.searchParams.has('stale'));
  if (path === '/v1/status/peers') return raftReadReply('peers');
  if (path === '/v1/operator/raft/configuration') return raftReadReply('configuration');
  if (path === '/v1/agent/members') return members(gossip, config, request);
  if (path.startsWith('/v1/agent/keyring/'))
    return keyring(gossip, path.slice('/v1/agent/keyring/'.length), request);
  return { status: 404, body: 'Invalid URL path' };
}

function createHttp(tls: TlsFiles): Server {
  const server = createServer(httpOptions(tls), (request, response) => {
    void route(request).then(({ status, body }) => {
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

/** The listener taking new connections, and the retired ones still serving their open keep-alives. */
let http = createHttp(files);
const retiredHttp = new Set<Server>();

async function listenHttp(server: Server): Promise<void> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(config.port, LOOPBACK, () => {
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

/**
 * Nomad's reloadHTTPServer: the listener is shut and a new one built with the new TLS configuration.
 * Connections already open, idle keep-alives included, stay with the old server object and so with
 * the old certificate. Nomad closes only the listener; Node's https close() would also drop idle
 * connections, hence net.Server's own close.
 */
async function rebuildHttp(): Promise<void> {
  const old = http;
  retiredHttp.add(old);
  NetServer.prototype.close.call(old, () => retiredHttp.delete(old));
  http = createHttp(files);
  await listenHttp(http);
}

async function reload(): Promise<void> {
  if (existsSync(config.ignoreSighupFile)) {
    log('SIGHUP received; ignored (fault injected)');
    return;
  }
  const exitsOnError = exitsOnReloadError(behaviour.nomadVersion);
  let next: Material;
  try {
    next = readMaterial();
  } catch (error) {
    // From 1.10.1 a client's reload error ends the agent; a server's TLS reload error is only logged.
    if (exitsOnError && config.role === 'client') {
      log(`Fatal error while reloading: ${(error as Error).message}`);
      return exitWith(1);
    }
    log(`failed to reload the config: parsing TLS certificate: ${(error as Error).message}`);
    return;
  }
  if (next.checksum === material.checksum) {
    log('SIGHUP received; TLS files unchanged, nothing reloaded');
    return;
  }
  // 1. The shared key loader: the new leaf is live at once on HTTPS and RPC, with the old CA pools.
  //    A pair that does not match is refused here and the old one stays.
  let leaf: TlsFiles;
  try {
    leaf = { ...files, cert: next.cert, key: next.key };
    createSecureContext(leaf);
  } catch (error) {
    log(`failed to reload the config: loading key pair: ${(error as Error).message}`);
    return;
  }
  files = leaf;
  http.setSecureContext(httpOptions(files));
  rpc?.useLeaf(next.cert, next.key);
  log(`reloading TLS: now serving serial ${serial(next.cert)}`);
  if (existsSync(config.failNextReloadFile)) {
    rmSync(config.failNextReloadFile, { force: true });
    log('Fatal error while reloading: server reload failed (fault injected)');
    setTimeout(() => void exitWith(1), FAILED_RELOAD_EXIT_DELAY_MS);
    return;
  }
  // 2. The TLS configuration from the new files. A CA without a good certificate (or an Ed25519 key)
  //    ends a >= 1.10.1 agent here, after its new leaf was served; older ones keep the old CA pools.
  let reloaded: TlsFiles;
  try {
    reloaded = tlsFiles(next);
  } catch (error) {
    if (exitsOnError) {
      log(`Fatal error while reloading: ${(error as Error).message}`);
      return exitWith(1);
    }
    log(`failed to reload the config: ${(error as Error).message}`);
    return;
  }
  material = next;
  files = reloaded;
  // 3. Server reload: a new RPC listener, every RPC and Raft connection closed.
  if (rpc !== undefined) {
    log('reloading server connections due to configuration changes');
    await rpc.reload(files);
  }
  // 4. The HTTP listener, last.
  log('reloading HTTP server with new TLS configuration');
  await rebuildHttp();
}

// Signals are handled one reload at a time, as Nomad's signal loop does.
let reloads: Promise<void> = Promise.resolve();
process.on('SIGHUP', () => {
  reloads = reloads
    .then(reload)
    .catch((error: Error) => log(`failed to reload the config: ${error.message}`));
});

let shuttingDown = false;
/** Stops serving and waits for serf to go, so the unit has no process left once the agent exits. */
async function exitWith(code: 0 | 1): Promise<void> {
  if (shuttingDown) return;
  shuttingDown = true;
  for (const server of [http, ...retiredHttp]) {
    server.close();
    server.closeAllConnections();
  }
  await Promise.all([raft?.stop(), rpc?.close()]);
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
  try {
    await rpc?.listen();
    await listenHttp(http);
  } catch (error) {
    log(`==> Error starting agent: ${(error as Error).message}`);
    return exitWith(1);
  }
  raft?.start();
  log(`agent started, serving serial ${serial(files.cert)} on ${LOOPBACK}:${config.port}`);
  if (gossip !== undefined) {
    log(`serf agent ${gossip.gossip.memberName} gossiping on ${LOOPBACK}:${gossip.gossip.bindPort}`);
  }
  if (rpc !== undefined) log(`RPC listening with mutual TLS on ${LOOPBACK}:${rpc.port}`);
  const ready: ReadyMessage = { ready: true, processes: gossip?.pid === undefined ? [] : [gossip.pid] };
  process.send?.(ready);
}

void start();
