// tsx bench/vault-cost.ts --nodes 50: what certificates for a fleet cost Vault, the seed's way (Consul
// Template on every node asking Vault to issue: Vault makes the RSA keys) against ours (each node
// makes its EC P-256 key and CSR, and Vault only signs).
import { type ChildProcess, fork } from 'node:child_process';
import diagnostics from 'node:diagnostics_channel';
import { mkdir, writeFile } from 'node:fs/promises';
import type { ClientRequest } from 'node:http';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { pendingKey } from '../local/sim/node-certificates';
import { type CertificateKind, certificateNames, type NodeRole } from '../shared/certificates/names';
import { x509 } from '../shared/certificates/x509';
import { VaultCertificateAuthority } from '../shared/vault/authority';
import { VaultClient, type VaultResponse } from '../shared/vault/client';
import { median, say } from './measure';
import type { ChildMessage, ParentMessage } from './vault-process';

export interface ApproachCost {
  /** HTTP requests this client sent to Vault, per node. */
  requestsPerNode: number;
  /** Requests Vault's log recorded, per node: the same number unless something else talked to it. */
  serverRequestsPerNode: number;
  /** Vault's CPU time (user + system, all its threads) per node: the median over the repetitions. */
  cpuMsPerNode: number;
  /** Each repetition's CPU time per node, in the order they ran. */
  cpuMsPerNodeRuns: number[];
}

export interface VaultCostResult {
  nodes: number;
  concurrency: number;
  repetitions: number;
  seed: ApproachCost;
  ours: ApproachCost;
  /** seed.cpuMsPerNode / ours.cpuMsPerNode. */
  cpuRatio: number;
  /** Wall time of the whole measurement, Vault's start and bootstrap included. */
  seconds: number;
}

export interface VaultCostOptions {
  nodes: number;
  /** Requests in flight at once, the same for both approaches (default 8). */
  concurrency?: number;
  /** Runs of both approaches; the CPU times reported are their medians (default 3). */
  repetitions?: number;
}

const REGION = 'global';
/** A fleet's first nodes are its servers (up to three, as a Raft quorum), the others clients. */
const SERVER_COUNT = 3;
/** Runs of both approaches on this many nodes before any is measured: the JIT warms on them. */
const WARM_UP_NODES = 2;
/** The seed's role and TTL (the Vault PKI guide for Nomad); its key type is Vault's default, RSA 2048. */
const SEED_ROLE = 'nomad-cluster';
const SEED_TTL = '24h';
const OUR_TTL_SECONDS = 86_400;

interface Node {
  role: NodeRole;
  ip: string;
}

interface Approach {
  name: 'seed' | 'ours';
  /** What happens before the measured window: nothing for the seed, the nodes' own keys and CSRs for ours. */
  prepare(nodes: Node[]): Promise<(() => Promise<unknown>)[]>;
}

/**
 * Vault's CPU time per node and requests per node for both approaches, measured side by side on one
 * Vault (the emulator, bootstrapped as nomad-rotator's deployment is: an EC P-256 intermediate signs
 * every leaf, whichever approach asked) for the same fleet at the same concurrency. The approaches
 * alternate which goes first, so neither always runs on the warmer process.
 *
 * The emulator does its cryptography with Node's OpenSSL where Vault uses Go's crypto. The comparison
 * assumes the one tracks the other: both costs are dominated by the same operations, RSA-2048 key
 * generation (prime search) for every issue against one ECDSA signature for every sign, and the rest
 * (HTTP, TLS, JSON, certificate encoding, storing the certificate) is paid per request by both.
 */
export async function measureVaultCost(options: VaultCostOptions): Promise<VaultCostResult> {
  const concurrency = options.concurrency ?? 8;
  const repetitions = options.repetitions ?? 3;
  if (!Number.isInteger(options.nodes) || options.nodes < 1) throw new Error('nodes: a positive integer');
  const started = performance.now();
  const vault = await VaultProcess.start();
  try {
    const approaches = await operatorSetup(vault);
    const sent = countRequestsTo(new URL(vault.address).host);
    try {
      const runs = new Map<Approach['name'], Window[]>([
        ['seed', []],
        ['ours', []],
      ]);
      for (const approach of approaches) await measureWindow(vault, sent, approach, fleet(WARM_UP_NODES), 1);
      for (let repetition = 0; repetition < repetitions; repetition += 1) {
        const order = repetition % 2 === 0 ? approaches : [...approaches].reverse();
        for (const approach of order)
          runs
            .get(approach.name)!
            .push(await measureWindow(vault, sent, approach, fleet(options.nodes), concurrency));
      }
      const seed = summarise(runs.get('seed')!, options.nodes);
      const ours = summarise(runs.get('ours')!, options.nodes);
      return {
        nodes: options.nodes,
        concurrency,
        repetitions,
        seed,
        ours,
        cpuRatio: round(seed.cpuMsPerNode / ours.cpuMsPerNode, 2),
        seconds: round((performance.now() - started) / 1000, 1),
      };
    } finally {
      sent.stop();
    }
  } finally {
    await vault.stop();
  }
}

function fleet(size: number): Node[] {
  return Array.from({ length: size }, (_, index) => ({
    role: index < SERVER_COUNT ? 'server' : 'client',
    ip: `10.0.${Math.floor(index / 250)}.${(index % 250) + 4}`,
  }));
}

/**
 * What an operator sets up after bootstrap, over the API with the root token: for ours, the issuing
 * functions' tls-policy token; for the seed, its role (issue with Vault-made keys), a policy that
 * issues on it and the token every node's Consul Template holds.
 */
async function operatorSetup(vault: VaultProcess): Promise<Approach[]> {
  const root = vault.client();
  const orphan = async (policies: string[]) =>
    (
      await root.write<VaultResponse>(
        'auth/token/create-orphan',
        { policies, period: '24h', no_default_policy: true, display_name: 'bench' },
        vault.rootToken,
      )
    ).auth!.client_token;
  await root.write(
    `pki_int/roles/${SEED_ROLE}`,
    {
      allowed_domains: `${REGION}.nomad`,
      allow_subdomains: true,
      max_ttl: '86400s',
      require_cn: false,
      generate_lease: true,
      key_type: 'rsa',
      key_bits: 2048,
    },
    vault.rootToken,
  );
  await root.write(
    'sys/policies/acl/nomad-seed-issue',
    { policy: `path "pki_int/issue/${SEED_ROLE}" { capabilities = ["update"] }` },
    vault.rootToken,
  );
  const seedVault = vault.client(await orphan(['nomad-seed-issue']));
  const authority = new VaultCertificateAuthority(vault.client(await orphan(['tls-policy'])), {
    mount: 'pki_int',
    serverRole: 'nomad-server',
    clientRole: 'nomad-client',
    cliRole: 'nomad-cli',
  });
  const cluster = { region: REGION, certificates: { serverExtraDnsSans: [], serverExtraIpSans: [] } };

  const seed: Approach = {
    name: 'seed',
    // Three templates per node, each with its own `with secret "pki_int/issue/..."` arguments, so
    // Consul Template sends each its own issue: the agent's RPC certificate, its HTTP one (which also
    // names the node's address) and the CLI's.
    prepare: async (nodes) =>
      nodes.flatMap((node) => {
        const agent = `${node.role}.${REGION}.nomad`;
        const issue = (body: Record<string, string>) => () =>
          seedVault.write(`pki_int/issue/${SEED_ROLE}`, { ttl: SEED_TTL, ...body });
        return [
          issue({ common_name: agent, alt_names: 'localhost', ip_sans: '127.0.0.1' }),
          issue({ common_name: agent, alt_names: 'localhost', ip_sans: `127.0.0.1,${node.ip}` }),
          issue({ common_name: `cli.${REGION}.nomad` }),
        ];
      }),
  };
  const ours: Approach = {
    name: 'ours',
    prepare: async (nodes) => {
      const signs: (() => Promise<unknown>)[] = [];
      for (const node of nodes) {
        for (const kind of [node.role, 'cli'] as CertificateKind[]) {
          const csrPem = await nodeCsr();
          const names = certificateNames(kind, cluster, kind === 'server' ? node.ip : undefined);
          signs.push(() => authority.sign({ kind, csrPem, names, ttlSeconds: OUR_TTL_SECONDS }));
        }
      }
      return signs;
    },
  };
  return [seed, ours];
}

/** What a node makes for itself: a fresh EC P-256 key and its CSR, as the simulated fleet's nodes do. */
async function nodeCsr(): Promise<string> {
  const { csrDerBase64 } = pendingKey('node');
  return new x509.Pkcs10CertificateRequest(Buffer.from(csrDerBase64, 'base64')).toString('pem');
}

interface Window {
  cpuMs: number;
  sent: number;
  served: number;
}

async function measureWindow(
  vault: VaultProcess,
  sent: RequestCounter,
  approach: Approach,
  nodes: Node[],
  concurrency: number,
): Promise<Window> {
  const requests = await approach.prepare(nodes);
  const before = await vault.usage();
  const sentBefore = sent.count;
  await inFlight(requests, concurrency);
  const after = await vault.usage();
  return {
    cpuMs: (after.userMicros + after.systemMicros - before.userMicros - before.systemMicros) / 1000,
    sent: sent.count - sentBefore,
    served: after.requests - before.requests,
  };
}

/** Run the requests in order, `concurrency` of them at any moment. */
async function inFlight(requests: (() => Promise<unknown>)[], concurrency: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < requests.length) {
      const request = requests[next]!;
      next += 1;
      await request();
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, requests.length) }, worker));
}

function summarise(windows: Window[], nodes: number): ApproachCost {
  const cpuMsPerNodeRuns = windows.map((window) => round(window.cpuMs / nodes, 3));
  return {
    requestsPerNode: round(median(windows.map((window) => window.sent / nodes)), 2),
    serverRequestsPerNode: round(median(windows.map((window) => window.served / nodes)), 2),
    cpuMsPerNode: median(cpuMsPerNodeRuns),
    cpuMsPerNodeRuns,
  };
}

const round = (value: number, digits: number) => Number(value.toFixed(digits));

interface RequestCounter {
  readonly count: number;
  stop(): void;
}

/**
 * Every HTTP request this process starts to `host`, counted where Node's http client starts it:
 * retries and any request outside the product's client would be counted too.
 */
function countRequestsTo(host: string): RequestCounter {
  let count = 0;
  const onStart = (message: unknown) => {
    if ((message as { request: ClientRequest }).request.getHeader('host') === host) count += 1;
  };
  diagnostics.subscribe('http.client.request.start', onStart);
  return {
    get count() {
      return count;
    },
    stop: () => diagnostics.unsubscribe('http.client.request.start', onStart),
  };
}

const ENTRY = fileURLToPath(new URL('./vault-process.ts', import.meta.url));
const REPOSITORY = fileURLToPath(new URL('..', import.meta.url));

/** The forked Vault emulator and the one question asked of it at a time over IPC. */
class VaultProcess {
  private constructor(
    private readonly child: ChildProcess,
    readonly address: string,
    readonly caPem: string,
    readonly rootToken: string,
  ) {}

  static start(): Promise<VaultProcess> {
    const child = fork(ENTRY, [], {
      cwd: REPOSITORY,
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`the Vault process exited (${code})`));
      child.once('exit', onExit);
      child.once('message', (message: ChildMessage) => {
        if (message.type === 'ready') {
          child.off('exit', onExit);
          resolve(new VaultProcess(child, message.address, message.caPem, message.rootToken));
        } else reject(new Error(`the Vault process failed: ${'message' in message ? message.message : ''}`));
      });
    });
  }

  client(token?: string): VaultClient {
    return new VaultClient({
      address: this.address,
      caBundlePem: this.caPem,
      timeoutMs: 30_000,
      attempts: 1,
      ...(token ? { tokens: { token: async () => token, invalidate: () => {} } } : {}),
    });
  }

  usage(): Promise<Extract<ChildMessage, { type: 'usage' }>> {
    return new Promise((resolve, reject) => {
      this.child.once('message', (message: ChildMessage) =>
        message.type === 'usage' ? resolve(message) : reject(new Error(`unexpected ${message.type}`)),
      );
      this.#send({ type: 'usage' });
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.#send({ type: 'stop' });
    await exited;
  }

  #send(message: ParentMessage): void {
    this.child.send(message);
  }
}

function numberFlag(args: string[], name: string): number | undefined {
  const index = args.indexOf(`--${name}`);
  if (index === -1) return undefined;
  const value = Number(args[index + 1]);
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name}: a positive integer`);
  return value;
}

async function main(args: string[]): Promise<void> {
  const repetitions = numberFlag(args, 'repetitions');
  const concurrency = numberFlag(args, 'concurrency');
  const result = await measureVaultCost({
    nodes: numberFlag(args, 'nodes') ?? 50,
    ...(repetitions === undefined ? {} : { repetitions }),
    ...(concurrency === undefined ? {} : { concurrency }),
  });
  const text = JSON.stringify({ date: new Date().toISOString(), ...result }, null, 2);
  say(text);
  await mkdir('bench/results', { recursive: true });
  await writeFile('bench/results/vault-cost-latest.json', `${text}\n`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    process.stderr.write(
      `bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exitCode = 1;
  });
}
