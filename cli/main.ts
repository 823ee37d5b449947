import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Sha256 } from '@aws-crypto/sha256-js';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { fromNodeProviderChain } from '@aws-sdk/credential-providers';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { bootstrapVault } from '../ops/vault-bootstrap/apply';
import { renderBootstrapReport } from '../ops/vault-bootstrap/report';
import { parseClustersConfig } from '../shared/config';
import { isFinished } from '../shared/rollout/model';
import { StateTable } from '../shared/state/table';
import { stripControlCharacters } from '../shared/terminal-text';
import { VaultClient } from '../shared/vault/client';
import { DOCTOR_USAGE, doctor } from './doctor';
import { renderFleetTable } from './fleet-table';

const USAGE = `nomad-rotator <command> [options]

Commands
${DOCTOR_USAGE}
  status   --cluster C [--table T]                     fleet table from the state table
  plan     --cluster C [--targets X] [--url U]         what a rotation would do, and why
  rotate   --cluster C --targets X --reason R [--restart] [--url U]
  reissue  --cluster C --targets X --reason R [--no-revoke] [--url U]
                                                       emergency: restart + revoke replaced serials
  rotate-gossip --cluster C --reason R [--restart none|staged] [--dry-run] [--url U]
                                                       new gossip key on every server: install, use,
                                                       remove, persist; --restart staged then restarts
                                                       the servers one at a time behind the health
                                                       gate (default: the cluster's
                                                       gossip.restartAfterRotation); --dry-run names
                                                       the servers and changes nothing
  enable-gossip --cluster C --reason R [--dry-run] [--url U]
                                                       a cluster gossiping in clear: a new key, then
                                                       each server restarted encrypted, the leader
                                                       last; --dry-run names the order
  repair-gossip --cluster C --reason R [--dry-run] [--url U]
                                                       servers the current key no longer reaches:
                                                       stop, keyring rewritten, start, one at a time
  gossip-status --cluster C [--url U]                  each server's keys, primary, members and health,
                                                       by fingerprint, and the secret's stages
  vault-bootstrap --spec FILE [--clusters FILE] [--dry-run] [--vault-ca FILE]
                                                       set Vault up idempotently (VAULT_ADDR, VAULT_TOKEN);
                                                       prints created/updated/unchanged and the policy HCL;
                                                       with --clusters (the deployed clusters file), refuses
                                                       before writing anything if the roles would refuse them

Targets: all | servers | clients | i-0123...,i-0456...
Defaults: --table $NOMAD_ROTATOR_TABLE, --url $NOMAD_ROTATOR_URL (the stack output ManualOpsUrl).
plan, rotate, reissue and the gossip commands are SigV4-signed requests to the manual-ops function URL: the rotator
records the IAM identity AWS verified ($USER goes along only as a claimed label), and only the
operator roles named at deploy (operatorRoleArns) are let in. AWS credentials, region and endpoints
come from the usual AWS SDK environment (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL_DYNAMODB).`;

interface Options {
  cluster?: string;
  table?: string;
  url?: string;
  targets?: string;
  reason?: string;
  /** A flag for rotate; `none` or `staged` for rotate-gossip. */
  restart?: boolean | string;
  'no-revoke'?: boolean;
  spec?: string;
  clusters?: string;
  'dry-run'?: boolean;
  'vault-ca'?: string;
  help?: boolean;
}

export async function main(argv: string[], environment: Record<string, string | undefined>): Promise<number> {
  // doctor parses its own options.
  if (argv[0] === 'doctor') return doctor(argv.slice(1), environment);
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      cluster: { type: 'string' },
      table: { type: 'string' },
      url: { type: 'string' },
      targets: { type: 'string' },
      reason: { type: 'string' },
      restart: { type: argv[0] === 'rotate-gossip' ? 'string' : 'boolean' },
      'no-revoke': { type: 'boolean' },
      spec: { type: 'string' },
      clusters: { type: 'string' },
      'dry-run': { type: 'boolean' },
      'vault-ca': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const options = values as Options;
  const command = positionals[0];
  if (options.help || command === undefined) {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined && !options.help ? 2 : 0;
  }
  if (command === 'vault-bootstrap') return vaultBootstrap(options, environment);
  const cluster = required(options.cluster, '--cluster');
  switch (command) {
    case 'status': {
      const table = new StateTable(
        new DynamoDBClient({}),
        required(options.table ?? environment.NOMAD_ROTATOR_TABLE, '--table'),
      );
      const active = await table.getActiveRollout(cluster);
      const attempts = active === undefined ? [] : await table.listAttempts(cluster, active.rolloutId);
      const inFlight = new Map(
        attempts.filter((attempt) => !isFinished(attempt)).map((attempt) => [attempt.target, attempt]),
      );
      process.stdout.write(`${renderFleetTable(await table.listNodes(cluster), Date.now(), inFlight)}\n`);
      return 0;
    }
    case 'plan':
    case 'rotate':
    case 'reissue': {
      const payload = {
        action: command,
        cluster,
        targets: parseTargets(
          command === 'plan' ? (options.targets ?? 'all') : required(options.targets, '--targets'),
        ),
        reason: command === 'plan' ? 'plan requested from the CLI' : required(options.reason, '--reason'),
        ...(options.restart ? { restart: true } : {}),
        // Only an explicit choice is sent: the rotator's default (a reissue revokes) applies otherwise.
        ...(command === 'reissue' && options['no-revoke'] ? { revokePrevious: false } : {}),
        requestedBy: `cli:${environment.USER ?? 'unknown'}`,
      };
      const url = required(options.url ?? environment.NOMAD_ROTATOR_URL, '--url');
      return manualRequest(url, payload, environment);
    }
    case 'rotate-gossip':
    case 'enable-gossip':
    case 'repair-gossip':
    case 'gossip-status': {
      const payload = {
        action: command,
        cluster,
        ...(command !== 'gossip-status'
          ? {
              reason: required(options.reason, '--reason'),
              ...(options['dry-run'] ? { dryRun: true } : {}),
              // Checked by the rotator, which names what is allowed.
              ...(options.restart === undefined ? {} : { restart: options.restart }),
            }
          : {}),
        requestedBy: `cli:${environment.USER ?? 'unknown'}`,
      };
      const url = required(options.url ?? environment.NOMAD_ROTATOR_URL, '--url');
      return manualRequest(url, payload, environment);
    }
    default:
      throw new UsageError(`unknown command ${command}`);
  }
}

async function vaultBootstrap(
  options: Options,
  environment: Record<string, string | undefined>,
): Promise<number> {
  const spec: unknown = JSON.parse(readFileSync(required(options.spec, '--spec'), 'utf8'));
  const vault = new VaultClient({
    address: required(environment.VAULT_ADDR, 'VAULT_ADDR'),
    timeoutMs: 10_000,
    ...(options['vault-ca'] ? { caBundlePem: readFileSync(options['vault-ca'], 'utf8') } : {}),
  });
  const clusters = options.clusters
    ? parseClustersConfig(JSON.parse(readFileSync(options.clusters, 'utf8')))
    : undefined;
  const report = await bootstrapVault(vault, required(environment.VAULT_TOKEN, 'VAULT_TOKEN'), spec, {
    dryRun: options['dry-run'] ?? false,
    ...(clusters ? { clusters } : {}),
  });
  process.stdout.write(`${stripControlCharacters(renderBootstrapReport(report))}\n`);
  return 0;
}

/**
 * POST the request to the manual-ops function URL, signed with SigV4 (service `lambda`) by the caller's
 * credentials: Lambda checks the signature and the function's resource policy before the function
 * runs, and hands it the identity it verified.
 */
async function manualRequest(
  functionUrl: string,
  payload: unknown,
  environment: Record<string, string | undefined>,
): Promise<number> {
  const url = new URL(functionUrl);
  if (url.protocol !== 'https:' && !['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname))
    throw new UsageError(`--url ${functionUrl}: must be https (plain http only to a loopback address)`);
  const region = regionOf(url) ?? environment.AWS_REGION ?? environment.AWS_DEFAULT_REGION;
  if (region === undefined)
    throw new UsageError(`--url ${functionUrl}: names no region; set AWS_REGION to the stack's region`);
  const body = JSON.stringify(payload);
  const signed = await new SignatureV4({
    credentials: fromNodeProviderChain(),
    region,
    service: 'lambda',
    sha256: Sha256,
  }).sign(
    new HttpRequest({
      method: 'POST',
      protocol: url.protocol,
      hostname: url.hostname,
      ...(url.port === '' ? {} : { port: Number(url.port) }),
      path: url.pathname,
      headers: { host: url.host, 'content-type': 'application/json' },
      body,
    }),
  );
  // fetch sets Host itself, to the same value that was signed.
  const { host: _host, ...headers } = signed.headers;
  const response = await fetch(url, { method: 'POST', headers, body });
  const text = await response.text();
  if (!response.ok) {
    const error = parseJson(text) as
      | { errorType?: string; errorMessage?: string; Message?: string }
      | undefined;
    const message =
      error?.errorMessage === undefined
        ? `${response.status} ${error?.Message ?? text}${response.status === 403 ? ' (is your role one of the deployment’s operatorRoleArns?)' : ''}`
        : `${error.errorType ?? 'Error'}: ${error.errorMessage}`;
    process.stderr.write(`${stripControlCharacters(message)}\n`);
    return 1;
  }
  process.stdout.write(`${JSON.stringify(parseJson(text) ?? null, null, 2)}\n`);
  return 0;
}

/** The region of a function URL (`https://<id>.lambda-url.<region>.on.aws/`). */
function regionOf(url: URL): string | undefined {
  return /^[a-z0-9]+\.lambda-url\.([a-z0-9-]+)\.on\.aws$/.exec(url.hostname)?.[1];
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function parseTargets(text: string): string | string[] {
  return ['all', 'servers', 'clients'].includes(text) ? text : text.split(',').map((id) => id.trim());
}

class UsageError extends Error {}

function required(value: string | undefined, flag: string): string {
  if (value === undefined || value === '') throw new UsageError(`${flag} is required`);
  return value;
}

export async function run(): Promise<void> {
  try {
    process.exitCode = await main(process.argv.slice(2), process.env);
  } catch (error) {
    process.stderr.write(
      `nomad-rotator: ${stripControlCharacters(error instanceof Error ? error.message : String(error))}\n`,
    );
    process.exitCode =
      error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') ? 2 : 1;
  }
}
