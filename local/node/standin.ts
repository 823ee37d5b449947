// The Nomad stand-in: one process per node, started by the node's supervisor (systemd's role).
// It serves HTTPS with mutual TLS from the node's certificate files and reloads them on SIGHUP the
// way Nomad does (DESIGN §6, nomad-facts §1.2): content checksum decides, a bad key pair keeps the
// old one, a bad CA file makes the agent exit (Nomad >= 1.10.1). On servers it also runs a real serf
// agent, as Nomad embeds serf: same lifetime as the agent, keyring persisted in the data dir, and the
// gossip keyring API answered from it (nomad-facts §2.3).
import { createHash, X509Certificate } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { createServer, type Server } from 'node:https';
import { createSecureContext } from 'node:tls';
import { GossipAgent, type GossipConfig, type KnownServer, keyring, members } from './gossip';

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

let material: Material;
try {
  material = readMaterial();
  assertValidCa(material.ca);
  createSecureContext(secureOptions(material));
} catch (error) {
  log(`==> Error starting agent: ${(error as Error).message}`);
  process.exit(1);
}

const gossip = config.gossip === undefined ? undefined : new GossipAgent(config.gossip, config.logFile, log);
process.on('exit', () => gossip?.kill());

async function route(request: IncomingMessage): Promise<Reply> {
  const path = (request.url ?? '').split('?')[0] ?? '';
  if (path === '/v1/agent/health')
    return { status: 200, body: { [config.role]: { ok: true, message: 'ok' } } };
  if (path === '/v1/status/leader') return { status: 200, body: config.leader };
  if (path === '/v1/status/peers') return { status: 200, body: config.peers };
  if (path === '/v1/agent/members') return members(gossip, config, request);
  if (path.startsWith('/v1/agent/keyring/'))
    return keyring(gossip, path.slice('/v1/agent/keyring/'.length), request);
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
