import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { DisableRuleCommand, EnableRuleCommand } from '@aws-sdk/client-eventbridge';
import { GetSecretValueCommand } from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DOCUMENT_NAMES, EVENT_RULES, startWorld, TICK_SCHEDULE, type World } from '../../local/world';
import { SignedHttp } from '../../shared/aws/signed-http';
import { commandDocument } from '../../shared/documents';
import { CHECK_NAMES } from '../../shared/preflight/checks';
import type { CheckResult } from '../../shared/preflight/report';

const execute = promisify(execFile);
let world: World;
/** Every Vault token the rotator's secret has held: none may appear in the doctor's output. */
let tokens: string[];

/** The real `npx nomad-rotator doctor`, with the environment an operator would export. */
async function doctor(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execute(
      process.execPath,
      ['bin/nomad-rotator.mjs', 'doctor', '--cluster', 'doc', ...args],
      {
        env: { PATH: process.env.PATH, HOME: process.env.HOME, USER: 'operator', ...world.cliEnvironment() },
      },
    );
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

/** `doctor --json`, parsed, with what every run must hold checked on the way. */
async function report(): Promise<{ code: number; results: Record<string, CheckResult> }> {
  const { code, stdout, stderr } = await doctor('--json');
  expect(stderr).toBe('');
  for (const token of tokens) expect(stdout).not.toContain(token);
  const results = JSON.parse(stdout) as CheckResult[];
  expect(results.map(({ check }) => check)).toEqual([...CHECK_NAMES]);
  return { code, results: Object.fromEntries(results.map((result) => [result.check, result])) };
}

/** The checks that are not ok. */
const unhealthy = (results: Record<string, CheckResult>) =>
  Object.values(results)
    .filter(({ status }) => status !== 'ok')
    .map(({ check, status }) => `${check}:${status}`);

/** A signed AWS JSON 1.0 call as the operator, for the APIs the SDK clients here do not cover. */
function awsJson(service: 'sqs' | 'monitoring', target: string, input: Record<string, unknown>) {
  const environment = world.cliEnvironment();
  return new SignedHttp({
    signingName: service,
    endpointId: service === 'sqs' ? 'SQS' : 'CLOUDWATCH',
    region: environment.AWS_REGION!,
    credentials: async () => ({
      accessKeyId: environment.AWS_ACCESS_KEY_ID!,
      secretAccessKey: environment.AWS_SECRET_ACCESS_KEY!,
    }),
    environment,
    timeoutMs: 5_000,
  }).json(target, input);
}

beforeAll(async () => {
  world = await startWorld({ servers: 1, clients: 2, cluster: { name: 'doc' } });
  await world.tick();
  await world.settle();
  const secret = await world.clients.secretsManager.send(
    new GetSecretValueCommand({ SecretId: world.tokenSecretArn }),
  );
  tokens = [(JSON.parse(secret.SecretString!) as { token: string }).token, world.vault.rootToken];
});

afterAll(async () => {
  await world?.stop();
});

describe('nomad-rotator doctor against the local world', () => {
  it('reports every check ok on a healthy world, one line each, and exits 0', async () => {
    const text = await doctor();
    expect(text.stderr).toBe('');
    expect(text.code).toBe(0);
    for (const check of CHECK_NAMES) expect(text.stdout).toMatch(new RegExp(`^ok {2,}${check} `, 'm'));
    expect(text.stdout).toContain('0 fail, 0 warn, 9 ok');

    const { code, results } = await report();
    expect(code).toBe(0);
    expect(unhealthy(results)).toEqual([]);
    expect(results.nodes?.detail).toBe('1/1 servers online, 2/2 clients online');
  });

  it('fails the Vault checks on a sealed Vault, and still reports the rest', async () => {
    world.vault.seal();
    try {
      const { code, results } = await report();
      expect(code).toBe(1);
      expect(unhealthy(results)).toEqual(['vault:fail', 'vault-token:fail', 'vault-ca:fail']);
      expect(results.vault?.detail).toMatch(/is sealed/);
      expect(results.vault?.action).toMatch(/unseal/);
      expect(results['vault-token']).toMatchObject({
        detail: expect.stringMatching(/^not checked: VaultSealedError/),
        action: 'make Vault answer first (see the vault check)',
      });
    } finally {
      world.vault.unseal();
    }
  });

  it('fails documents when an SSM document is not the code’s', async () => {
    const install = commandDocument('install', [world.cluster]);
    world.ssm.registerDocument(DOCUMENT_NAMES.install, {
      ...install,
      description: `${install.description} (edited in the console)`,
    });
    try {
      const { code, results } = await report();
      expect(code).toBe(1);
      expect(unhealthy(results)).toEqual(['documents:fail']);
      expect(results.documents?.detail).toMatch(
        new RegExp(
          `^${DOCUMENT_NAMES.install} \\(version 2\\) is sha256:[0-9a-f]{12}, this release's is sha256:`,
        ),
      );
    } finally {
      world.ssm.registerDocument(DOCUMENT_NAMES.install, install);
    }
  });

  it('warns about an offline client (exit 0), fails when no server is online (exit 1)', async () => {
    const client = world.fleet.nodes().find((node) => node.role === 'client')!;
    const server = world.fleet.nodes().find((node) => node.role === 'server')!;
    client.setOnline(false);
    try {
      const warned = await report();
      expect(warned.code).toBe(0);
      expect(unhealthy(warned.results)).toEqual(['nodes:warn']);
      expect(warned.results.nodes?.detail).toBe(
        `1/1 servers online, 1/2 clients online; offline: ${client.instanceId}`,
      );
      server.setOnline(false);
      const failed = await report();
      expect(failed.code).toBe(1);
      expect(unhealthy(failed.results)).toEqual(['nodes:fail']);
    } finally {
      client.setOnline(true);
      server.setOnline(true);
    }
  });

  it('warns about messages in a dead-letter queue', async () => {
    const queueUrl = world.deadLetterQueues['event-delivery'];
    await awsJson('sqs', 'AmazonSQS.SendMessage', { QueueUrl: queueUrl, MessageBody: '{"undelivered":1}' });
    await awsJson('sqs', 'AmazonSQS.SendMessage', { QueueUrl: queueUrl, MessageBody: '{"undelivered":2}' });
    try {
      const { code, results } = await report();
      expect(code).toBe(0);
      expect(unhealthy(results)).toEqual(['dead-letters:warn']);
      expect(results['dead-letters']?.detail).toBe('event-delivery: 2 message(s)');
    } finally {
      await awsJson('sqs', 'AmazonSQS.PurgeQueue', { QueueUrl: queueUrl });
    }
  });

  it('fails alarms when one of the stack’s alarms is in ALARM, naming it', async () => {
    const alarm = 'NomadRotator-doc-PushFailed';
    await awsJson('monitoring', 'GraniteServiceVersion20100801.SetAlarmState', {
      AlarmName: alarm,
      StateValue: 'ALARM',
      StateReason: 'Threshold Crossed: 1 datapoint [1.0] was >= the threshold (1.0).',
    });
    try {
      const { code, results } = await report();
      expect(code).toBe(1);
      expect(unhealthy(results)).toEqual(['alarms:fail']);
      expect(results.alarms?.detail).toBe(`in ALARM: ${alarm}`);
    } finally {
      world.cloudWatch.setState(alarm, 'OK', 'recovered');
    }
  });

  it('fails schedules when the tick schedule or an event rule is disabled', async () => {
    world.scheduler.setState(TICK_SCHEDULE.name, TICK_SCHEDULE.group, 'DISABLED');
    await world.clients.eventBridge.send(new DisableRuleCommand({ Name: EVENT_RULES.commandEvents }));
    try {
      const { code, results } = await report();
      expect(code).toBe(1);
      expect(unhealthy(results)).toEqual(['schedules:fail']);
      expect(results.schedules?.detail).toBe(
        `schedule default/${TICK_SCHEDULE.name} is disabled; rule ${EVENT_RULES.commandEvents} is disabled`,
      );
    } finally {
      world.scheduler.setState(TICK_SCHEDULE.name, TICK_SCHEDULE.group, 'ENABLED');
      await world.clients.eventBridge.send(new EnableRuleCommand({ Name: EVENT_RULES.commandEvents }));
    }
  });

  it('fails config, and every check that needs it, for a cluster that is not deployed; usage errors exit 2', async () => {
    const { code, stdout, stderr } = await execute(
      process.execPath,
      ['bin/nomad-rotator.mjs', 'doctor', '--cluster', 'nope', '--json'],
      { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...world.cliEnvironment() } },
    ).then(
      (answer) => ({ code: 0, ...answer }),
      (error: { code: number; stdout: string; stderr: string }) => error,
    );
    expect(code).toBe(1);
    expect(stderr).toBe('');
    const results = JSON.parse(stdout) as CheckResult[];
    expect(results[0]).toMatchObject({ check: 'config', status: 'fail' });
    expect(results[0]?.detail).toMatch(/cluster nope is not among the deployed clusters \(doc\)/);
    expect(results.every(({ status }) => status === 'fail')).toBe(true);

    const usage = await doctor('--bogus');
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/^nomad-rotator: .*--bogus/);
  });
});
