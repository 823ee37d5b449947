import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { promisify } from 'node:util';
import type { NodeFleet } from '../../local/node/fleet';
import type { NodeSandbox } from '../../local/node/sandbox';
import { type AgentCallOptions, callAgentServed, type ServedAgentAnswer } from './agent-calls';
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
        '-outform',
        'DER',
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

/** An HTTPS GET to a node's agent, as an operator on the node would make it with its CLI certificate. */
export const api = (
  node: NodeSandbox,
  path: string,
  options: Pick<AgentCallOptions, 'clientCertificate' | 'ca'> = {},
): Promise<ServedAgentAnswer> => callAgentServed(node, 'GET', path, options);

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

/**
 * Polls `probe` until `done` holds or the time is up; returns the last value either way. A probe
 * that throws (an agent not listening yet) or a value `done` cannot read counts as not done; a
 * probe still throwing at the deadline throws its error.
 */
export async function eventually<T>(
  probe: () => Promise<T>,
  done: (value: T) => boolean,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const outcome = await probe().then(
      (value) => ({ value, holds: holdsSafely(done, value) }),
      (error: unknown) => ({ error }),
    );
    if ('value' in outcome && (outcome.holds || Date.now() > deadline)) return outcome.value;
    if ('error' in outcome && Date.now() > deadline) throw outcome.error;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function holdsSafely<T>(done: (value: T) => boolean, value: T): boolean {
  try {
    return done(value);
  } catch {
    return false;
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Reload a node through its supervisor and wait until the reload has gone through all its steps. */
export async function reloadAndWait(fleet: Pick<NodeFleet, 'supervisor'>, node: NodeSandbox): Promise<void> {
  const reloads = async () => ((await node.log()).match(/reloading HTTP server/g) ?? []).length;
  const before = await reloads();
  await fleet.supervisor.command(node.instanceId, 'reload');
  await eventually(reloads, (count) => count > before);
}
