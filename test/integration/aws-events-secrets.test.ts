import { PutEventsCommand } from '@aws-sdk/client-eventbridge';
import {
  CreateSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  InvalidParameterException,
  InvalidRequestException,
  PutSecretValueCommand,
  ResourceExistsException,
  RotateSecretCommand,
  UpdateSecretVersionStageCommand,
} from '@aws-sdk/client-secrets-manager';
import type { SQSEvent } from 'aws-lambda';
import { afterEach, describe, expect, it } from 'vitest';
import { matches, startEventBridgeEmulator } from '../../local/aws/eventbridge';
import { startQueue } from '../../local/aws/queue';
import { type RotationEvent, startSecretsManagerEmulator } from '../../local/aws/secrets-manager';

const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
});

describe('EventBridge and queue emulators', () => {
  it('accepts good entries, refuses bad ones per entry, and routes matches through a queue in batches', async () => {
    const bus = await startEventBridgeEmulator();
    stops.push(bus.stop);
    const batches: SQSEvent[] = [];
    const queue = startQueue({
      handler: async (event) => {
        batches.push(event);
        return { batchItemFailures: [] };
      },
    });
    stops.push(queue.stop);
    bus.addRule(
      'certificate-events',
      { source: ['nomad-rotator'], 'detail-type': [{ prefix: 'Certificate' }] },
      { queue },
    );

    const result = await bus.client().send(
      new PutEventsCommand({
        Entries: [
          { Source: 'nomad-rotator', DetailType: 'CertificateRotated', Detail: '{"instanceId":"i-1"}' },
          { Source: 'nomad-rotator', DetailType: 'RolloutStarted', Detail: '{}' },
          { Source: 'aws.ssm', DetailType: 'spoof', Detail: '{}' },
          { Source: 'nomad-rotator', DetailType: 'CertificatePushFailed' },
        ],
      }),
    );
    await queue.idle();

    expect(result.FailedEntryCount).toBe(2);
    expect(result.Entries?.map((entry) => entry.ErrorCode ?? 'ok')).toEqual([
      'ok',
      'ok',
      'NotAuthorizedForSourceException',
      'MalformedDetail',
    ]);
    expect(
      batches.flatMap((batch) => batch.Records.map((record) => JSON.parse(record.body)['detail-type'])),
    ).toEqual(['CertificateRotated']);
  });

  it('matches patterns with anything-but, exists and nested detail', () => {
    const event = { source: 'aws.ec2', detail: { state: 'running', 'instance-id': 'i-1' } };

    expect(matches({ detail: { state: [{ 'anything-but': ['terminated'] }] } }, event)).toBe(true);
    expect(
      matches({ detail: { state: ['running', 'terminated'], reason: [{ exists: false }] } }, event),
    ).toBe(true);
    expect(matches({ detail: { state: ['stopped'] } }, event)).toBe(false);
  });

  it('redelivers failed batch items with a higher receive count, then dead-letters them', async () => {
    const receives: string[] = [];
    const queue = startQueue({
      handler: async (event) => {
        receives.push(...event.Records.map((record) => record.attributes.ApproximateReceiveCount));
        return { batchItemFailures: event.Records.map((record) => ({ itemIdentifier: record.messageId })) };
      },
      visibilityTimeoutMs: 10,
      maxReceiveCount: 3,
    });
    stops.push(queue.stop);

    queue.send('poison');
    await queue.idle();

    expect(receives).toEqual(['1', '2', '3']);
    expect(queue.deadLetters).toEqual(['poison']);
  });
});

describe('Secrets Manager emulator', () => {
  it('runs a rotation function through the four steps and leaves CURRENT, PREVIOUS and no PENDING', async () => {
    const sm = await startSecretsManagerEmulator();
    stops.push(sm.stop);
    const client = sm.client();
    const steps: string[] = [];
    sm.registerRotationFunction('arn:fn', async (event: RotationEvent) => {
      steps.push(event.Step);
      if (event.Step === 'createSecret') {
        await client.send(
          new PutSecretValueCommand({
            SecretId: event.SecretId,
            ClientRequestToken: event.ClientRequestToken,
            SecretString: 'v2',
            VersionStages: ['AWSPENDING'],
          }),
        );
      }
      if (event.Step === 'finishSecret') {
        const described = await client.send(new DescribeSecretCommand({ SecretId: event.SecretId }));
        const current = Object.entries(described.VersionIdsToStages ?? {}).find(([, stages]) =>
          stages.includes('AWSCURRENT'),
        )![0];
        await client.send(
          new UpdateSecretVersionStageCommand({
            SecretId: event.SecretId,
            VersionStage: 'AWSCURRENT',
            MoveToVersionId: event.ClientRequestToken,
            RemoveFromVersionId: current,
          }),
        );
      }
    });
    const created = await client.send(new CreateSecretCommand({ Name: 's', SecretString: 'v1' }));

    await client.send(new RotateSecretCommand({ SecretId: created.ARN, RotationLambdaARN: 'arn:fn' }));
    await sm.idle();

    expect(steps).toEqual(['createSecret', 'setSecret', 'testSecret', 'finishSecret']);
    expect((await client.send(new GetSecretValueCommand({ SecretId: 's' }))).SecretString).toBe('v2');
    expect(
      (await client.send(new GetSecretValueCommand({ SecretId: 's', VersionStage: 'AWSPREVIOUS' })))
        .SecretString,
    ).toBe('v1');
    const stages = Object.values(
      (await client.send(new DescribeSecretCommand({ SecretId: 's' }))).VersionIdsToStages ?? {},
    ).flat();
    expect(stages.sort()).toEqual(['AWSCURRENT', 'AWSPREVIOUS']);
  });

  it('keeps PutSecretValue idempotent per token and refuses a different value for the same token', async () => {
    const sm = await startSecretsManagerEmulator();
    stops.push(sm.stop);
    const client = sm.client();
    await client.send(new CreateSecretCommand({ Name: 's' }));
    const token = 'a'.repeat(32);

    await client.send(
      new PutSecretValueCommand({ SecretId: 's', ClientRequestToken: token, SecretString: 'x' }),
    );
    await client.send(
      new PutSecretValueCommand({ SecretId: 's', ClientRequestToken: token, SecretString: 'x' }),
    );

    await expect(
      client.send(new PutSecretValueCommand({ SecretId: 's', ClientRequestToken: token, SecretString: 'y' })),
    ).rejects.toBeInstanceOf(ResourceExistsException);
  });

  it('refuses a request token outside 32 to 64 characters, and a stage move that does not name where from', async () => {
    const sm = await startSecretsManagerEmulator();
    stops.push(sm.stop);
    const client = sm.client();
    const created = await client.send(new CreateSecretCommand({ Name: 's', SecretString: 'v1' }));
    const token = 'b'.repeat(32);
    await client.send(
      new PutSecretValueCommand({
        SecretId: 's',
        ClientRequestToken: token,
        SecretString: 'v2',
        VersionStages: ['AWSPENDING'],
      }),
    );

    await expect(
      client.send(
        new PutSecretValueCommand({ SecretId: 's', ClientRequestToken: 'short', SecretString: 'x' }),
      ),
    ).rejects.toMatchObject({ name: 'ValidationException' });
    await expect(
      client.send(
        new UpdateSecretVersionStageCommand({
          SecretId: 's',
          VersionStage: 'AWSCURRENT',
          MoveToVersionId: token,
        }),
      ),
    ).rejects.toBeInstanceOf(InvalidParameterException);
    await client.send(
      new UpdateSecretVersionStageCommand({
        SecretId: 's',
        VersionStage: 'AWSCURRENT',
        MoveToVersionId: token,
        RemoveFromVersionId: created.VersionId!,
      }),
    );
    expect((await client.send(new GetSecretValueCommand({ SecretId: 's' }))).SecretString).toBe('v2');
  });

  it('leaves AWSCURRENT untouched when a step fails, and refuses a new rotation while one is pending', async () => {
    const sm = await startSecretsManagerEmulator();
    stops.push(sm.stop);
    const client = sm.client();
    sm.registerRotationFunction('arn:fn', async (event) => {
      if (event.Step === 'testSecret') throw new Error('pending value does not work');
      if (event.Step === 'createSecret') {
        await client.send(
          new PutSecretValueCommand({
            SecretId: event.SecretId,
            ClientRequestToken: event.ClientRequestToken,
            SecretString: 'bad',
            VersionStages: ['AWSPENDING'],
          }),
        );
      }
    });
    await client.send(new CreateSecretCommand({ Name: 's', SecretString: 'good' }));

    await client.send(new RotateSecretCommand({ SecretId: 's', RotationLambdaARN: 'arn:fn' }));
    await sm.idle();

    expect((await client.send(new GetSecretValueCommand({ SecretId: 's' }))).SecretString).toBe('good');
    expect(sm.rotationHistory.at(-1)).toMatchObject({
      step: 'testSecret',
      error: 'pending value does not work',
    });
    await expect(client.send(new RotateSecretCommand({ SecretId: 's' }))).rejects.toBeInstanceOf(
      InvalidRequestException,
    );
  });
});
