import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { bootstrapVault } from '../ops/vault-bootstrap/apply';
import { renderBootstrapReport } from '../ops/vault-bootstrap/report';
import { parseClustersConfig } from '../shared/config';
import { isFinished } from '../shared/rollout/model';
import { StateTable } from '../shared/state/table';
import { VaultClient } from '../shared/vault/client';
import { renderFleetTable } from './fleet-table';

const USAGE = `nomad-rotator <command> [options]

Commands
  status   --cluster C [--table T]                     fleet table from the state table
  plan     --cluster C [--targets X] [--function F]    what a rotation would do, and why
  rotate   --cluster C --targets X --reason R [--restart] [--function F]
  reissue  --cluster C --targets X --reason R [--no-revoke] [--function F]
                                                       emergency: restart + revoke replaced serials
  vault-bootstrap --spec FILE [--clusters FILE] [--dry-run] [--vault-ca FILE]
                                                       set Vault up idempotently (VAULT_ADDR, VAULT_TOKEN);
                                                       prints created/updated/unchanged and the policy HCL;
                                                       with --clusters (the deployed clusters file), refuses
                                                       before writing anything if the roles would refuse them

Targets: all | servers | clients | i-0123...,i-0456...
Defaults: --table $NOMAD_ROTATOR_TABLE, --function $NOMAD_ROTATOR_FUNCTION (the rotate-certs Lambda).
AWS credentials, region and endpoints come from the usual AWS SDK environment
(AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_LAMBDA).`;

interface Options {
  cluster?: string;
  table?: string;
  function?: string;
  targets?: string;
  reason?: string;
  restart?: boolean;
  'no-revoke'?: boolean;
  spec?: string;
  clusters?: string;
  'dry-run'?: boolean;
  'vault-ca'?: string;
  help?: boolean;
}

export async function main(argv: string[], environment: Record<string, string | undefined>): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      cluster: { type: 'string' },
      table: { type: 'string' },
      function: { type: 'string' },
      targets: { type: 'string' },
      reason: { type: 'string' },
      restart: { type: 'boolean' },
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
      const functionName = required(options.function ?? environment.NOMAD_ROTATOR_FUNCTION, '--function');
      return invoke(functionName, payload);
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
  process.stdout.write(`${renderBootstrapReport(report)}\n`);
  return 0;
}

async function invoke(functionName: string, payload: unknown): Promise<number> {
  const result = await new LambdaClient({}).send(
    new InvokeCommand({ FunctionName: functionName, Payload: Buffer.from(JSON.stringify(payload)) }),
  );
  const body = result.Payload ? Buffer.from(result.Payload).toString('utf8') : '';
  if (result.FunctionError) {
    const error = JSON.parse(body || '{}') as { errorType?: string; errorMessage?: string };
    process.stderr.write(`${error.errorType ?? 'Error'}: ${error.errorMessage ?? body}\n`);
    return 1;
  }
  process.stdout.write(`${JSON.stringify(JSON.parse(body || 'null'), null, 2)}\n`);
  return 0;
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
    process.stderr.write(`nomad-rotator: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode =
      error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') ? 2 : 1;
  }
}
