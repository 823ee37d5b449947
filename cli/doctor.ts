import { EC2Client } from '@aws-sdk/client-ec2';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SSMClient } from '@aws-sdk/client-ssm';
import { fromNodeProviderChain } from '@aws-sdk/credential-providers';
import { Ec2Inventory } from '../shared/aws/ec2';
import { SignedHttp } from '../shared/aws/signed-http';
import { systemClock } from '../shared/clock';
import {
  awsTriggers,
  cloudWatchAlarms,
  readDeployment,
  sqsQueues,
  ssmDocuments,
  vaultProbe,
} from '../shared/preflight/aws';
import { doctorChecks } from '../shared/preflight/checks';
import { type CheckResult, exitCodeFor, runChecks } from '../shared/preflight/report';
import { stripControlCharacters } from '../shared/terminal-text';
import { clusterOf, optionalString, UsageError } from './args';
import { CLUSTER_OPTION, type Command } from './context';

/** Each check's own deadline; a request that has not answered by then will not help the operator. */
const CHECK_TIMEOUT_MS = 15_000;
const DEFAULT_STACK = 'NomadRotator';

/**
 * `nomad-rotator doctor`: reads what the stack wrote about itself (SSM parameters under /<stack>/),
 * then runs every check at once and prints one line each; warnings print but exit 0.
 */
export const doctorCommand: Command = {
  name: 'doctor',
  summary: 'preflight: configuration, Vault, documents, nodes, schedules, alarms, dead letters',
  description:
    'Checks a deployment before the first rotation and after every change: the deployed configuration,\n' +
    'Vault (TLS verified, the token and its sign capability, the CA’s days to expiry), the SSM documents\n' +
    'against this release, nodes online per role, the schedules, alarms in ALARM and dead-letter\n' +
    'queue depths. One line a check (ok / warn / fail) with what to do; exit 1 on any fail.',
  options: {
    ...CLUSTER_OPTION,
    stack: {
      type: 'string',
      value: 'S',
      description: 'the stack name (default $NOMAD_ROTATOR_STACK, else NomadRotator)',
    },
  },
  examples: [
    'nomad-rotator doctor --cluster prod',
    'nomad-rotator doctor --cluster prod --stack NomadRotatorEu --json',
  ],
  run: async (values, context) => {
    const environment = context.environment;
    const cluster = clusterOf(values);
    const stackName = optionalString(values, 'stack') ?? environment.NOMAD_ROTATOR_STACK ?? DEFAULT_STACK;
    const region = environment.AWS_REGION ?? environment.AWS_DEFAULT_REGION;
    if (region === undefined) throw new UsageError('AWS_REGION is not set: set it to the stack’s region');
    const sdk = {
      region,
      maxAttempts: 2,
      requestHandler: { requestTimeout: CHECK_TIMEOUT_MS, connectionTimeout: 5_000 },
    };
    const ssm = new SSMClient(sdk);
    const credentials = fromNodeProviderChain();
    const signed = (signingName: string, endpointId: string) =>
      new SignedHttp({
        signingName,
        endpointId,
        region,
        credentials,
        environment,
        timeoutMs: CHECK_TIMEOUT_MS,
      });
    const secrets = new SecretsManagerClient(sdk);
    const configuration = await readDeployment(ssm, stackName).catch((error: unknown) => ({ error }));
    const results = await runChecks(
      doctorChecks({
        cluster,
        configuration,
        vault: (config) => vaultProbe(config, secrets, systemClock, CHECK_TIMEOUT_MS),
        documents: ssmDocuments(ssm),
        nodes: new Ec2Inventory(new EC2Client(sdk), ssm),
        triggers: awsTriggers(new EventBridgeClient(sdk), signed('scheduler', 'SCHEDULER')),
        alarms: cloudWatchAlarms(signed('monitoring', 'CLOUDWATCH')),
        queues: sqsQueues(signed('sqs', 'SQS')),
        now: () => systemClock.now(),
      }),
      CHECK_TIMEOUT_MS,
    );
    context.out.write(values.json === true ? `${renderJson(results)}\n` : renderText(results));
    return exitCodeFor(results);
  },
};

/** The stable machine form: exactly check, status, detail, action, in the checks' fixed order. */
export function renderJson(results: readonly CheckResult[]): string {
  return JSON.stringify(
    results.map(({ check, status, detail, action }) => ({
      check,
      status,
      detail: oneLine(detail),
      action: oneLine(action),
    })),
    null,
    2,
  );
}

/** One line a check, its action indented beneath, then the tally. */
export function renderText(results: readonly CheckResult[]): string {
  const width = Math.max(...results.map(({ check }) => check.length));
  const lines: string[] = [];
  for (const { check, status, detail, action } of results) {
    lines.push(`${status.padEnd(4)}  ${check.padEnd(width)}  ${oneLine(detail)}`);
    if (action !== '') lines.push(`${' '.repeat(width + 8)}→ ${oneLine(action)}`);
  }
  const count = (status: CheckResult['status']) =>
    results.filter((result) => result.status === status).length;
  lines.push(`${count('fail')} fail, ${count('warn')} warn, ${count('ok')} ok`);
  return `${lines.join('\n')}\n`;
}

/** A detail or action on one line, whatever a service put in its message. */
function oneLine(text: string): string {
  return stripControlCharacters(text.replace(/\s*\n\s*/g, ' '));
}
