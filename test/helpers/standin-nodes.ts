import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type PeerCertificate } from 'node:tls';
import { promisify } from 'node:util';
import type { NodeSandbox } from '../../local/node/sandbox';
import type { opensslCa } from './openssl-ca';

// Certificates and calls for tests of the Nomad stand-in itself: files written straight onto a node
// (the documents' issuance is node-sandbox.test's), the agent reached like an operator on the node.

export type TestCa = Awaited<ReturnType<typeof opensslCa>>;

const run = promisify(execFile);

export interface IssueOptions {
  /** The agent certificate's SANs; by default `<role>.<region>.nomad`, localhost and 127.0.0.1. */
  names?: string;
  /** What goes into ca.crt; by default the issuing CA's bundle. */
  caFile?: string;
  region?: string;
  /** An Ed25519 agent key instead of P-256. */
  ed25519?: boolean;
}

export interface Issued {
  serial: string;
  cert: string;
  key: string;
}

/** A fresh key, a CSR and a leaf signed by `ca`, with openssl. */
export async function leaf(ca: TestCa, names: string, usages: string, ed25519 = false): Promise<Issued> {
  const dir = await mkdtemp(join(tmpdir(), 'standin-leaf-'));
  try {
    const algorithm = ed25519 ? ['ed25519'] : ['ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
    await run(
      'openssl',
      [
        'req',
        '-new',
        '-newkey',
        ...algorithm,
        '-nodes',
        '-keyout',
        'leaf.key',
        '-out',
        'leaf.csr',
        '-subj',
        '/CN=leaf',
      ],
      { cwd: dir },
    );
    const signed = await ca.sign((await readFile(join(dir, 'leaf.csr'))).toString('base64'), names, usages);
    // As Node reports served certificates, so the two compare equal.
    const serial = new X509Certificate(signed.pem).serialNumber.toLowerCase();
    return { serial, cert: signed.pem, key: await readFile(join(dir, 'leaf.key'), 'utf8') };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Writes agent and CLI certificates and ca.crt onto `node`; returns the agent leaf. */
export async function issue(node: NodeSandbox, ca: TestCa, options: IssueOptions = {}): Promise<Issued> {
  const region = options.region ?? 'global';
  const agent = await leaf(
    ca,
    options.names ?? `DNS:${node.role}.${region}.nomad,DNS:localhost,IP:127.0.0.1`,
    'serverAuth,clientAuth',
    options.ed25519,
  );
  const cli = await leaf(ca, `DNS:cli.${region}.nomad`, 'clientAuth');
  const agentDir = join(node.root, 'opt/nomad/agent-certs');
  const cliDir = join(node.root, 'opt/nomad/cli-certs');
  await mkdir(agentDir, { recursive: true });
  await mkdir(cliDir, { recursive: true });
  await writeFile(join(agentDir, 'agent.crt'), `${agent.cert}${ca.intermediate}`);
  await writeFile(join(agentDir, 'agent.key'), agent.key);
  await writeFile(join(agentDir, 'ca.crt'), options.caFile ?? ca.bundle);
  await writeFile(join(cliDir, 'cli.crt'), cli.cert);
  await writeFile(join(cliDir, 'cli.key'), cli.key);
  return agent;
}

export interface Answer {
  status: number;
  text: string;
  /** The serial of the certificate the agent served, lower-case hex. */
  servedSerial: string;
}

export interface CallOptions {
  /** Present the node's CLI certificate (the default), or no client certificate at all. */
  clientCertificate?: boolean;
  /** Verify the agent with this CA instead of the node's ca.crt. */
  ca?: string;
}

/** An HTTPS GET to a node's agent, as an operator on the node would make it with its CLI certificate. */
export async function api(node: NodeSandbox, path: string, options: CallOptions = {}): Promise<Answer> {
  const read = (file: string) => readFile(join(node.root, file), 'utf8');
  const ca = options.ca ?? (await read('opt/nomad/agent-certs/ca.crt'));
  const identity =
    options.clientCertificate === false
      ? {}
      : { cert: await read('opt/nomad/cli-certs/cli.crt'), key: await read('opt/nomad/cli-certs/cli.key') };
  return new Promise((resolve, reject) => {
    const call = request(
      {
        host: '127.0.0.1',
        port: node.httpsPort,
        path,
        ca,
        ...identity,
        agent: false,
        servername: 'localhost',
      },
      (response) => {
        const peer = (
          response.socket as unknown as { getPeerCertificate(): PeerCertificate }
        ).getPeerCertificate();
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            text: Buffer.concat(chunks).toString('utf8'),
            servedSerial: peer.serialNumber.toLowerCase(),
          }),
        );
      },
    );
    call.on('error', reject);
    call.end();
  });
}

/** The serial a new TLS connection to `port` is served, without checking who serves it. */
export function servedSerial(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      resolve(socket.getPeerCertificate().serialNumber.toLowerCase());
      socket.destroy();
    });
    socket.on('error', reject);
  });
}

/** Polls `probe` until `done` holds or the time is up; returns the last value either way. */
export async function eventually<T>(
  probe: () => Promise<T>,
  done: (value: T) => boolean,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch((error: unknown) => error as T);
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
