import { readFileSync } from 'node:fs';
import { Logger as PowertoolsLogger } from '@aws-lambda-powertools/logger';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EC2Client } from '@aws-sdk/client-ec2';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { DescribeSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SSMClient } from '@aws-sdk/client-ssm';
import type { Context, SQSEvent, SQSRecord } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { commandStatusHandler } from '../../functions/command-status';
import { instanceStateHandler, MAX_REGISTRATION_CHECKS } from '../../functions/instance-state';
import { rotateCertsHandler } from '../../functions/rotate-certs';
import { rotateTokenHandler } from '../../functions/rotate-token';
import { ManualClock } from '../../local/clock';
import { RecordingLogger } from '../../local/world/recording';
import type { CommandGateway, InvocationOutcome } from '../../shared/aws/ports';
import type { CertificateRotation } from '../../shared/certificates/rotation';
import { parseClusterConfig } from '../../shared/config';
import { ConflictError, TransientError } from '../../shared/errors';
import type { CommandStatusRuntime } from '../../shared/intake/command-status';
import type { InstanceStateRuntime } from '../../shared/intake/instance-state';
import type { Logger } from '../../shared/logger';
import { RolloutEngine } from '../../shared/rollout/engine';
import { Runtime } from '../../shared/runtime';
import { fakeCluster } from '../helpers/fake-cluster';
import { callManualOps, functionUrlEvent, OPERATOR_SESSION_ARN } from '../helpers/fake-cluster-handler';
import { testInventory } from '../helpers/inventory';
import { findSecrets } from '../helpers/secret-scan';
import { UNCHECKED_TRUST_ANCHORS } from '../helpers/trust-anchors';

const INSTANCE_A = 'i-0aaaaaaaaaaaaaaa1';
const INSTANCE_B = 'i-0bbbbbbbbbbbbbbb2';
const INSTANCE_C = 'i-0ccccccccccccccc3';
const VAULT_TOKEN = `hvs.${'S'.repeat(24)}`;
const PRIVATE_KEY = '-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg\n-----END EC PRIVATE KEY-----';

afterEach(() => {
  vi.restoreAllMocks();
  vi.unstubAllEnvs();
});

function sqsRecord(messageId: string, body: unknown, receiveCount = 1): SQSRecord {
  return {
    messageId,
    receiptHandle: `handle-${messageId}`,
    body: typeof body === 'string' ? body : JSON.stringify(body),
    attributes: {
      ApproximateReceiveCount: String(receiveCount),
      SentTimestamp: '0',
      SenderId: 'test',
      ApproximateFirstReceiveTimestamp: '0',
    },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:eu-west-1:123456789012:command-status',
    awsRegion: 'eu-west-1',
  };
}

const batch = (...records: SQSRecord[]): SQSEvent => ({ Records: records });

const awsFixture = (name: string) =>
  JSON.parse(readFileSync(new URL(`../fixtures/aws/${name}`, import.meta.url), 'utf8')) as {
    detail: Record<string, unknown>;
  };

/** The command each test sends to one instance of its own, so that the handler's calls tell them apart. */
const COMMAND_TO: Record<string, string> = {
  'cmd-a': INSTANCE_A,
  'cmd-b': INSTANCE_B,
  'cmd-c': INSTANCE_C,
};
const PROD_KEY = 'nomad-rotator:prod:certs:prepare:abc123-00000001';

/** An SSM command status event as EventBridge delivers it (test/fixtures/aws/ssm-command-status-change.json). */
function commandEvent(commandId: string, status = 'Success', documentName = 'nomad-rotator-prepare') {
  return {
    ...awsFixture('ssm-command-status-change.json'),
    detail: {
      ...awsFixture('ssm-command-status-change.json').detail,
      'command-id': commandId,
      'document-name': documentName,
      status,
    },
  };
}

function stateChangeEvent(instanceId: string, state: string) {
  return {
    source: 'aws.ec2',
    'detail-type': 'EC2 Instance State-change Notification',
    detail: { 'instance-id': instanceId, state },
  };
}

/** A Lambda context with the given time left, as the Lambda runtime passes it. */
function lambdaContext(remainingMs: number, awsRequestId = 'request-1'): Context {
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: 'nomad-rotator-command-status',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:eu-west-1:123456789012:function:nomad-rotator-command-status',
    memoryLimitInMB: '512',
    awsRequestId,
    logGroupName: '/aws/lambda/nomad-rotator-command-status',
    logStreamName: 'stream',
    getRemainingTimeInMillis: () => remainingMs,
    done: () => {},
    fail: () => {},
    succeed: () => {},
  };
}

type RotationCalls = Pick<CertificateRotation, 'onCommand' | 'retire' | 'onInstanceRunning'>;

/** The runtime parts the two SQS handlers use, with the engine of every cluster replaced by `rotation`. */
function fakeRuntime(options: {
  rotation: Partial<RotationCalls>;
  logger?: Logger;
  /** The listing of a command; by default its one instance (COMMAND_TO) succeeded under a prod key. */
  invocations?: CommandGateway['invocations'];
  invocation?: CommandGateway['invocation'];
  /** What EC2 and SSM say about instances; one not listed is unknown to EC2. */
  instances?: Record<string, { state: string; autoScalingGroup?: string; online: boolean }>;
}): CommandStatusRuntime & InstanceStateRuntime & { clock: ManualClock } {
  const clusters = ['prod', 'staging'].map((name) =>
    parseClusterConfig({
      name,
      inventory: testInventory(name),
      certificates: UNCHECKED_TRUST_ANCHORS,
      vault: {
        address: 'https://vault.internal:8200',
        tokenSecretId: `nomad/${name}/token`,
        tokenRotation: { iamServerIdHeader: 'vault.internal' },
      },
    }),
  );
  const invocations: CommandGateway['invocations'] =
    options.invocations ??
    (async (commandId) => ({
      comment: PROD_KEY,
      results: new Map([[COMMAND_TO[commandId]!, { state: 'succeeded', stdout: '{}' }]]),
      cut: [],
    }));
  const invocation: CommandGateway['invocation'] =
    options.invocation ??
    (async () => {
      throw new Error('no single read expected');
    });
  return {
    clock: new ManualClock(1_800_000_000_000),
    logger: options.logger ?? new RecordingLogger(),
    config: { tableName: 'state', eventBusName: 'bus', documents: {} as never, clusters },
    clusterNames: () => clusters.map((cluster) => cluster.name),
    commands: { send: async () => 'unused', invocation, invocations, findSent: async () => undefined },
    instances: {
      describe: async (instanceId) => {
        const known = options.instances?.[instanceId];
        return known === undefined ? undefined : { instanceId, ...known };
      },
      online: async (instanceId) => options.instances?.[instanceId]?.online ?? false,
    },
    rotation: () => options.rotation as CertificateRotation,
  };
}

/** Every JSON line a Powertools logger wrote while `act` ran, parsed. */
async function powertoolsLines(act: () => Promise<void>): Promise<Record<string, unknown>[]> {
  const written: string[] = [];
  const capture = (chunk: string | Uint8Array) => {
    written.push(String(chunk));
    return true;
  };
  vi.spyOn(process.stdout, 'write').mockImplementation(capture);
  vi.spyOn(process.stderr, 'write').mockImplementation(capture);
  try {
    await act();
  } finally {
    vi.restoreAllMocks();
  }
  return written
    .flatMap((text) => text.split('\n'))
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe('command-status partial batches', () => {
  it('reports only the record that failed; the others are applied or dropped', async () => {
    const applied: string[] = [];
    const logger = new RecordingLogger();
    const runtime = fakeRuntime({
      logger,
      rotation: {
        onCommand: async (_key, results) => {
          if (results.has(INSTANCE_B)) throw new TransientError('DynamoDB throttled');
          applied.push(...results.keys());
          return true;
        },
      },
    });

    const response = await commandStatusHandler(runtime)(
      batch(
        sqsRecord('a', commandEvent('cmd-a')),
        sqsRecord('b', commandEvent('cmd-b')),
        sqsRecord('not-json', '{"truncated'),
        sqsRecord('not-ours', { source: 'aws.ec2', detail: {} }),
        sqsRecord('c', commandEvent('cmd-c', 'Failed')),
      ),
      lambdaContext(60_000),
    );

    expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: 'b' }] });
    expect(applied).toEqual([INSTANCE_A, INSTANCE_C]);
    expect(logger.lines.filter((line) => line.level === 'WARN').map((line) => line.messageId)).toEqual([
      'not-json',
      'not-ours',
    ]);
    expect(logger.lines.find((line) => line.level === 'ERROR')).toMatchObject({
      commandId: 'cmd-b',
      status: 'Success',
    });
  });

  it('answers a batch where every record failed with all of them, rather than throwing', async () => {
    const runtime = fakeRuntime({
      rotation: {
        onCommand: async () => {
          throw new TransientError('Vault sealed');
        },
      },
    });

    const response = await commandStatusHandler(runtime)(
      batch(sqsRecord('a', commandEvent('cmd-a')), sqsRecord('b', commandEvent('cmd-b'))),
      lambdaContext(60_000),
    );

    expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: 'a' }, { itemIdentifier: 'b' }] });
  });

  it('handles the records one at a time, in the order the queue delivered them', async () => {
    const order: string[] = [];
    let running = 0;
    const runtime = fakeRuntime({
      rotation: {
        onCommand: async (_key, results) => {
          running += 1;
          order.push(`${[...results.keys()].join()}:${running}`);
          await new Promise((resolve) => setTimeout(resolve, 5));
          running -= 1;
          return true;
        },
      },
    });

    await commandStatusHandler(runtime)(
      batch(sqsRecord('a', commandEvent('cmd-a')), sqsRecord('b', commandEvent('cmd-b'))),
      lambdaContext(60_000),
    );

    expect(order).toEqual([`${INSTANCE_A}:1`, `${INSTANCE_B}:1`]);
  });

  it('deletes lost races, statuses before the final one and commands of no configured cluster without applying', async () => {
    // Arrange
    const onCommand = vi.fn(async () => {
      throw new ConflictError('node moved on');
    });
    const comments: Record<string, string> = {
      'cmd-a': 'nomad-rotator:prod:certs:install:abc123-00000001',
      'cmd-b': 'nomad-rotator:elsewhere:certs:install:abc123-00000001',
    };
    const invocations = vi.fn(async (commandId: string) => ({
      comment: comments[commandId] ?? 'someone else',
      results: new Map([[COMMAND_TO[commandId]!, { state: 'succeeded' as const, stdout: '{}' }]]),
      cut: [],
    }));
    const runtime = fakeRuntime({ rotation: { onCommand }, invocations });

    // Act
    const response = await commandStatusHandler(runtime)(
      batch(
        sqsRecord('conflict', commandEvent('cmd-a')),
        sqsRecord('other-cluster', commandEvent('cmd-b', 'Cancelled')),
        sqsRecord('foreign', commandEvent('cmd-c', 'TimedOut')),
        ...['Pending', 'InProgress', 'Cancelling', 'Delayed'].map((status) =>
          sqsRecord(status, commandEvent('cmd-a', status)),
        ),
      ),
      lambdaContext(60_000),
    );

    // Assert
    expect(response).toEqual({ batchItemFailures: [] });
    expect(invocations.mock.calls.map(([commandId]) => commandId)).toEqual(['cmd-a', 'cmd-b', 'cmd-c']);
    expect(onCommand).toHaveBeenCalledTimes(1);
  });
});

describe('command-status events', () => {
  it("applies SSM's own sample event and drops what is not a command status event, with a warning", async () => {
    const logger = new RecordingLogger();
    const applied: string[] = [];
    const runtime = fakeRuntime({
      logger,
      invocations: async () => ({
        comment: PROD_KEY,
        results: new Map([[INSTANCE_A, { state: 'succeeded', stdout: '{}' }]]),
        cut: [],
      }),
      rotation: {
        onCommand: async (key) => {
          applied.push(key.token);
          return true;
        },
      },
    });
    const sample = awsFixture('ssm-command-status-change.json');
    const { 'document-name': _, ...noDocument } = sample.detail;

    const response = await commandStatusHandler(runtime)(
      batch(
        sqsRecord('sample', sample),
        sqsRecord('invocation-level', awsFixture('ssm-invocation-status-change.json')),
        sqsRecord('no-document', { ...sample, detail: noDocument }),
        sqsRecord('no-status', { ...sample, detail: { ...sample.detail, status: undefined } }),
      ),
      lambdaContext(60_000),
    );

    expect(response).toEqual({ batchItemFailures: [] });
    expect(applied).toEqual(['abc123-00000001']);
    expect(logger.lines.filter((line) => line.level === 'WARN').map((line) => line.messageId)).toEqual([
      'invocation-level',
      'no-document',
      'no-status',
    ]);
  });

  it('reads alone only a target whose output the listing cut, and hands the engine all of them at once', async () => {
    // Arrange
    const reads: string[] = [];
    const handed: string[][] = [];
    const runtime = fakeRuntime({
      invocations: async () => ({
        comment: PROD_KEY,
        results: new Map([
          [INSTANCE_A, { state: 'succeeded', stdout: '{}' }],
          [INSTANCE_B, { state: 'failed', detail: 'Failed', stdout: '' }],
        ]),
        cut: [INSTANCE_C],
      }),
      invocation: async (commandId, instanceId) => {
        reads.push(`${commandId}/${instanceId}`);
        return { state: 'succeeded', stdout: `{"long":"${'x'.repeat(3_000)}"}` };
      },
      rotation: {
        onCommand: async (_key, results) => {
          handed.push([...results].map(([target, result]) => `${target}:${result.state}`));
          return true;
        },
      },
    });

    // Act
    await commandStatusHandler(runtime)(batch(sqsRecord('m', commandEvent('cmd-a'))), lambdaContext(60_000));

    // Assert
    expect(reads).toEqual([`cmd-a/${INSTANCE_C}`]);
    expect(handed).toEqual([[`${INSTANCE_A}:succeeded`, `${INSTANCE_B}:failed`, `${INSTANCE_C}:succeeded`]]);
  });

  it('moves a three-node command with one listing, no single read and one advance', async () => {
    // Arrange: the prepare of a wave of three clients has finished on every node
    const clients = [INSTANCE_A, INSTANCE_B, INSTANCE_C].map((instanceId) => ({
      instanceId,
      role: 'client' as const,
    }));
    const h = await fakeCluster(clients, { rollout: { clientWaveSize: 3, maxAttempts: 2 } });
    await h.rotation().tick({ deadline: Number.MAX_SAFE_INTEGER, owner: 'tick-1', actor: 'schedule' });
    const [prepare] = h.fleet.commands;
    await h.fleet.complete(prepare!);
    const calls = { listings: 0, singles: 0 };
    const commands: CommandGateway = {
      send: (...args) => h.fleet.send(...args),
      findSent: (...args) => h.fleet.findSent(...args),
      invocations: (commandId) => {
        calls.listings += 1;
        return h.fleet.invocations(commandId);
      },
      invocation: (commandId, instanceId) => {
        calls.singles += 1;
        return h.fleet.invocation(commandId, instanceId);
      },
    };
    const advance = vi.spyOn(RolloutEngine.prototype, 'advance');
    const runtime = {
      clock: h.clock,
      logger: h.logger,
      commands,
      clusterNames: () => ['prod'],
      rotation: () => h.rotation(),
    };

    // Act
    const response = await commandStatusHandler(runtime)(
      batch(sqsRecord('m', commandEvent(prepare!.commandId))),
      lambdaContext(60_000),
    );

    // Assert
    expect(response).toEqual({ batchItemFailures: [] });
    expect(calls).toEqual({ listings: 1, singles: 0 });
    expect(advance).toHaveBeenCalledTimes(1);
    expect(h.fleet.commands.map((command) => `${command.kind}:${command.instanceIds.join()}`)).toEqual([
      `prepare:${INSTANCE_A},${INSTANCE_B},${INSTANCE_C}`,
      `install:${INSTANCE_A},${INSTANCE_B},${INSTANCE_C}`,
    ]);
  });
});

describe('instance-state partial batches', () => {
  it('retries a running instance until it registers with SSM, then drops it quietly', async () => {
    const logger = new RecordingLogger();
    const runtime = fakeRuntime({
      logger,
      rotation: {},
      instances: { [INSTANCE_A]: { state: 'running', autoScalingGroup: 'prod-clients', online: false } },
    });
    const handle = instanceStateHandler(runtime);

    const early = await handle(
      batch(sqsRecord('m', stateChangeEvent(INSTANCE_A, 'running'))),
      lambdaContext(60_000),
    );
    const last = await handle(
      batch(sqsRecord('m', stateChangeEvent(INSTANCE_A, 'running'), MAX_REGISTRATION_CHECKS)),
      lambdaContext(60_000),
    );

    expect(early).toEqual({ batchItemFailures: [{ itemIdentifier: 'm' }] });
    expect(last).toEqual({ batchItemFailures: [] });
    expect(logger.lines).toEqual([]);
  });

  it("gives a new node's rollout the invocation's own deadline, not a fixed minute", async () => {
    const deadlines: number[] = [];
    const runtime = fakeRuntime({
      instances: { [INSTANCE_A]: { state: 'running', autoScalingGroup: 'prod-clients', online: true } },
      rotation: {
        onInstanceRunning: async (_instanceId, _actor, deadline) => {
          deadlines.push(deadline);
          return 'rollout-1';
        },
      },
    });

    await instanceStateHandler(runtime)(
      batch(sqsRecord('running', stateChangeEvent(INSTANCE_A, 'running'))),
      lambdaContext(35_000),
    );

    // 35 s left, less the 20 s safety margin.
    expect(deadlines).toEqual([runtime.clock.now() + 15_000]);
  });

  it('starts an online node, retires a terminated one in every cluster, reports only the failure', async () => {
    const retired: string[] = [];
    const started: string[] = [];
    const logger = new RecordingLogger();
    const runtime = fakeRuntime({
      logger,
      instances: { [INSTANCE_A]: { state: 'running', autoScalingGroup: 'prod-clients', online: true } },
      rotation: {
        onInstanceRunning: async (instanceId) => {
          started.push(instanceId);
          return 'rollout-1';
        },
        retire: async (instanceId) => {
          if (instanceId === INSTANCE_C) throw new TransientError('Vault unreachable');
          retired.push(instanceId);
          return true;
        },
      },
    });

    const response = await instanceStateHandler(runtime)(
      batch(
        sqsRecord('running', stateChangeEvent(INSTANCE_A, 'running')),
        sqsRecord('terminated', stateChangeEvent(INSTANCE_B, 'terminated')),
        sqsRecord('failing', stateChangeEvent(INSTANCE_C, 'terminated')),
        sqsRecord('not-json', 'running'),
        sqsRecord('stopping', stateChangeEvent(INSTANCE_A, 'stopping')),
      ),
      lambdaContext(60_000),
    );

    expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: 'failing' }] });
    expect(started).toEqual([INSTANCE_A]);
    expect(retired).toEqual([INSTANCE_B, INSTANCE_B]);
    expect(logger.lines.map((line) => [line.level, line.instanceId])).toEqual([['ERROR', INSTANCE_C]]);
  });
});

describe('handler logs', () => {
  it('carry the invocation context and the ids of the record being handled, and no secret', async () => {
    // As Lambda sets it for an on-demand execution environment, where the first invocation is cold.
    vi.stubEnv('AWS_LAMBDA_INITIALIZATION_TYPE', 'on-demand');
    const logger = new PowertoolsLogger({ serviceName: 'nomad-rotator' });
    const runtime = fakeRuntime({
      logger,
      invocations: async (commandId) => ({
        comment: 'nomad-rotator:prod:certs:install:abc123-00000001',
        results: new Map<string, InvocationOutcome>([
          [
            COMMAND_TO[commandId]!,
            { state: 'failed', detail: 'install failed', stdout: `${PRIVATE_KEY}\n${VAULT_TOKEN}` },
          ],
        ]),
        cut: [],
      }),
      rotation: {
        onCommand: async (_key, results) => {
          logger.info('engine line');
          if (results.has(INSTANCE_A)) throw new TransientError('DynamoDB throttled');
          return true;
        },
      },
    });
    const handle = commandStatusHandler(runtime);

    const lines = await powertoolsLines(async () => {
      await handle(
        batch(
          sqsRecord('a', commandEvent('cmd-a')),
          sqsRecord('b', commandEvent('cmd-b')),
          sqsRecord('junk-1', 'not json'),
        ),
        lambdaContext(60_000, 'request-1'),
      );
      await handle(batch(sqsRecord('junk-2', 'not json')), lambdaContext(60_000, 'request-2'));
    });

    const engineLines = lines.filter((line) => line.message === 'engine line');
    expect(engineLines).toEqual([
      expect.objectContaining({
        function_request_id: 'request-1',
        cold_start: true,
        cluster: 'prod',
        commandId: 'cmd-a',
      }),
      expect.objectContaining({ cluster: 'prod', commandId: 'cmd-b' }),
    ]);
    expect(lines.find((line) => line.level === 'ERROR')).toMatchObject({
      function_request_id: 'request-1',
      commandId: 'cmd-a',
    });
    // A record's keys end with it; the next invocation has its own request id and is a warm start.
    const [sameBatch, nextInvocation] = ['junk-1', 'junk-2'].map((id) =>
      lines.find((line) => line.messageId === id),
    );
    expect(sameBatch).toMatchObject({ function_request_id: 'request-1' });
    expect(nextInvocation).toMatchObject({ function_request_id: 'request-2', cold_start: false });
    for (const line of [sameBatch, nextInvocation]) {
      expect(line).not.toHaveProperty('commandId');
      expect(line).not.toHaveProperty('cluster');
    }
    expect(findSecrets({ logs: lines }, [VAULT_TOKEN])).toEqual([]);
  });

  it('carry the invocation context in the token rotation function too', async () => {
    const logger = new PowertoolsLogger({ serviceName: 'nomad-rotator' });
    const secretsManager = new SecretsManagerClient({ region: 'eu-west-1' });
    mockClient(secretsManager)
      .on(DescribeSecretCommand)
      .resolves({ ARN: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:orphan', Name: 'orphan' });
    const runtime = new Runtime(
      fakeRuntime({ rotation: {} }).config,
      {
        dynamodb: new DynamoDBClient({ region: 'eu-west-1' }),
        ec2: new EC2Client({ region: 'eu-west-1' }),
        ssm: new SSMClient({ region: 'eu-west-1' }),
        eventBridge: new EventBridgeClient({ region: 'eu-west-1' }),
        secretsManager,
      },
      { logger },
    );
    const rotationEvent = { Step: 'createSecret', SecretId: 'orphan', ClientRequestToken: 'c'.repeat(36) };

    const lines = await powertoolsLines(async () => {
      await expect(
        rotateTokenHandler(runtime)(rotationEvent, lambdaContext(60_000, 'rotation-request')),
      ).rejects.toThrow(/no configured cluster uses token secret orphan/);
    });

    expect(lines.find((line) => line.message === 'no cluster uses this token secret')).toMatchObject({
      function_request_id: 'rotation-request',
    });
  });
});

describe('command-status deadline', () => {
  it('reaches the engine from the invocation the handler was given', async () => {
    const deadlines: number[] = [];
    const runtime = fakeRuntime({
      rotation: {
        onCommand: async (_key, _results, deadline) => {
          deadlines.push(deadline);
          return true;
        },
      },
    });
    const handle = commandStatusHandler(runtime);
    const start = runtime.clock.now();

    await handle(batch(sqsRecord('a', commandEvent('cmd-a'))), lambdaContext(90_000));
    await handle(batch(sqsRecord('b', commandEvent('cmd-b'))), lambdaContext(800));

    expect(deadlines).toEqual([start + 70_000, start]);
  });
});

describe('manual-ops', () => {
  const fleet = [
    { instanceId: INSTANCE_A, role: 'server' as const },
    { instanceId: INSTANCE_B, role: 'client' as const },
  ];
  const ROTATE = { action: 'rotate', cluster: 'prod', targets: 'all', reason: 'OPS-12' };

  it('refuses a direct Invoke, which carries no verified caller, with 403 and writes nothing', async () => {
    const harness = await fakeCluster(fleet);

    const response = await callManualOps(harness, { ...ROTATE, requestedBy: 'cli:alice' });

    expect(response.statusCode).toBe(403);
    expect(JSON.parse(response.body).errorMessage).toMatch(/requestContext\.authorizer\.iam\.userArn/);
    expect(await harness.table.listAudit('prod', harness.clock.now())).toEqual([]);
    expect(await harness.table.getActiveRollout('prod')).toBeUndefined();
    expect(harness.fleet.commands).toEqual([]);
  });

  it('records the invoker Lambda verified as the actor, and requestedBy only as a claimed label', async () => {
    const harness = await fakeCluster(fleet);
    const claimed = 'cli:root';

    const response = await callManualOps(harness, functionUrlEvent({ ...ROTATE, requestedBy: claimed }));

    expect(response.statusCode).toBe(200);
    const audit = await harness.table.listAudit('prod', harness.clock.now());
    const request = audit.find((entry) => entry.action === 'manual-rotate');
    expect(request).toMatchObject({
      actor: OPERATOR_SESSION_ARN,
      reason: 'OPS-12',
      details: {
        claimedRequestedBy: claimed,
        invokerAccountId: '123456789012',
        invokerVerifiedBy: 'lambda-function-url-aws-iam',
      },
    });
    expect(audit.find((entry) => entry.action === 'rollout-started')?.actor).toBe(OPERATOR_SESSION_ARN);
    expect((await harness.table.getActiveRollout('prod'))?.requestedBy).toBe(OPERATOR_SESSION_ARN);
    expect(audit.filter((entry) => entry.actor === claimed)).toEqual([]);
  });

  it('answers a bad body 400 with every bad field named, before anything is written', async () => {
    const harness = await fakeCluster(fleet);

    const bad = await callManualOps(
      harness,
      functionUrlEvent({ action: 'reissue', cluster: 'prod', targets: ['i-1'], reason: 'x', actor: 'me' }),
    );
    const notJson = await callManualOps(harness, functionUrlEvent('{"action":'));
    const unknownTarget = await callManualOps(
      harness,
      functionUrlEvent({ ...ROTATE, targets: ['i-0fffffffffffffff9'] }),
    );

    expect(bad.statusCode).toBe(400);
    expect(JSON.parse(bad.body)).toMatchObject({ errorType: 'ValidationError' });
    const message = JSON.parse(bad.body).errorMessage as string;
    for (const field of [
      'actor: unknown field',
      'targets.0: must be an EC2 instance id',
      'reason: must say why',
    ])
      expect(message).toContain(field);
    expect(JSON.parse(notJson.body).errorMessage).toMatch(/body: must be a JSON manual request/);
    expect(unknownTarget.statusCode).toBe(400);
    expect(await harness.table.listAudit('prod', harness.clock.now())).toEqual([]);
    expect(harness.fleet.commands).toEqual([]);
  });

  it('leaves rotate-certs to the tick: a manual payload is refused there, naming what it takes', async () => {
    const rotations: string[] = [];
    const runtime = {
      ...fakeRuntime({ rotation: {} }),
      rotation: (cluster: string) => {
        rotations.push(cluster);
        return {} as CertificateRotation;
      },
    } as unknown as Runtime;

    await expect(rotateCertsHandler(runtime)(ROTATE, lambdaContext(60_000))).rejects.toThrow(
      /manual-ops function URL/,
    );
    expect(rotations).toEqual([]);
  });
});
