// The Nomad stand-in: one process per node, started by the node's supervisor (systemd's role).
// It serves HTTPS with mutual TLS from the node's certificate files and reloads them on SIGHUP the
// way Nomad does (DESIGN §6, nomad-facts §1.2): content checksum decides, a bad key pair keeps the
// old one, a bad CA file makes the agent exit (Nomad >= 1.10.1).
import { createHash, X509Certificate } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { createSecureContext } from 'node:tls';

export interface StandinConfig {
  role: 'server' | 'client';
  nodeName: string;
  port: number;
  caFile: string;
  certFile: string;
  keyFile: string;
  logFile: string;
  /** A file whose presence makes the agent ignore SIGHUP (a reload that silently does nothing). */
  ignoreSighupFile: string;
  leader: string;
  peers: string[];
}

interface Material {
  ca: string;
  cert: string;
  key: string;
  checksum: string;
}

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

function json(body: unknown): string {
  return `${JSON.stringify(body)}\n`;
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

const server: Server = createServer(secureOptions(material), (request, response) => {
  const path = (request.url ?? '').split('?')[0];
  response.setHeader('content-type', 'application/json');
  if (path === '/v1/agent/health') {
    response.end(json({ [config.role]: { ok: true, message: 'ok' } }));
  } else if (path === '/v1/status/leader') {
    response.end(json(config.leader));
  } else if (path === '/v1/status/peers') {
    response.end(json(config.peers));
  } else {
    response.statusCode = 404;
    response.end('Invalid URL path\n');
  }
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
    process.exit(1);
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

process.on('SIGINT', () => server.close(() => process.exit(0)));
process.on('SIGTERM', () => server.close(() => process.exit(0)));

server.listen(config.port, '127.0.0.1', () => {
  log(`agent started, serving serial ${serial(material)} on 127.0.0.1:${config.port}`);
  process.send?.('ready');
});
