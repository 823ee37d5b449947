import { randomBytes, randomUUID } from 'node:crypto';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { type Clock, systemClock } from '../../shared/clock';
import { AwsServiceError, JsonProtocolServer } from './json-protocol';

export interface RotationEvent {
  Step: 'createSecret' | 'setSecret' | 'testSecret' | 'finishSecret';
  SecretId: string;
  ClientRequestToken: string;
  RotationToken: string;
}

/** A Lambda handler: its result is ignored, as Secrets Manager ignores what a rotation function returns. */
export type RotationFunction = (event: RotationEvent) => Promise<unknown>;

interface Version {
  id: string;
  value?: string;
  stages: Set<string>;
  createdAt: number;
}

interface Secret {
  arn: string;
  name: string;
  versions: Map<string, Version>;
  rotationLambdaArn?: string;
  rotationRules?: Record<string, unknown>;
  rotationEnabled: boolean;
  lastRotatedAt?: number;
}

export type SecretsManagerEmulator = Awaited<ReturnType<typeof startSecretsManagerEmulator>>;

/**
 * Secrets Manager for the local world: version stages, idempotent PutSecretValue, stage moves with
 * AWSPREVIOUS bookkeeping, and RotateSecret driving a registered rotation function through its four
 * steps asynchronously, as the service does.
 */
export async function startSecretsManagerEmulator(options: { clock?: Clock } = {}) {
  const clock = options.clock ?? systemClock;
  const secrets = new Map<string, Secret>();
  const functions = new Map<string, RotationFunction>();
  const rotations = new Set<Promise<void>>();
  const rotationHistory: { secret: string; version: string; step: string; error?: string }[] = [];

  const find = (id: unknown): Secret => {
    const secret = secrets.get(String(id)) ?? [...secrets.values()].find((candidate) => candidate.arn === id);
    if (secret === undefined)
      throw new AwsServiceError(
        'ResourceNotFoundException',
        "Secrets Manager can't find the specified secret.",
      );
    return secret;
  };
  const holder = (secret: Secret, stage: string) =>
    [...secret.versions.values()].find((version) => version.stages.has(stage));
  const moveStage = (secret: Secret, stage: string, to: Version) => {
    const from = holder(secret, stage);
    from?.stages.delete(stage);
    to.stages.add(stage);
    if (stage === 'AWSCURRENT' && from !== undefined && from !== to) {
      holder(secret, 'AWSPREVIOUS')?.stages.delete('AWSPREVIOUS');
      from.stages.add('AWSPREVIOUS');
      to.stages.delete('AWSPENDING');
    }
  };
  const describeVersions = (secret: Secret) =>
    Object.fromEntries(
      [...secret.versions.values()].filter((v) => v.stages.size > 0).map((v) => [v.id, [...v.stages]]),
    );

  /** The service's bound on ClientRequestToken, which becomes the version id. */
  const requestToken = (input: Record<string, unknown>): string => {
    const token = String(input.ClientRequestToken ?? randomUUID());
    if (token.length < 32 || token.length > 64) {
      throw new AwsServiceError(
        'ValidationException',
        "1 validation error detected: Value at 'clientRequestToken' failed to satisfy constraint: Member must have length between 32 and 64",
      );
    }
    return token;
  };

  const putValue = (secret: Secret, token: string, value: string, stages: string[]) => {
    const existing = secret.versions.get(token);
    if (existing?.value !== undefined) {
      if (existing.value !== value) {
        throw new AwsServiceError(
          'ResourceExistsException',
          `You can't modify an existing version, you can only create a new version.`,
        );
      }
      return existing;
    }
    const version = existing ?? { id: token, stages: new Set<string>(), createdAt: clock.now() };
    version.value = value;
    secret.versions.set(token, version);
    for (const stage of stages) moveStage(secret, stage, version);
    return version;
  };

  const rotate = async (secret: Secret, token: string) => {
    const fn = functions.get(secret.rotationLambdaArn ?? '');
    for (const step of ['createSecret', 'setSecret', 'testSecret', 'finishSecret'] as const) {
      try {
        if (fn === undefined)
          throw new Error(`rotation function ${secret.rotationLambdaArn} is not registered`);
        await fn({
          Step: step,
          SecretId: secret.arn,
          ClientRequestToken: token,
          RotationToken: randomUUID(),
        });
        rotationHistory.push({ secret: secret.name, version: token, step });
      } catch (error) {
        rotationHistory.push({
          secret: secret.name,
          version: token,
          step,
          error: error instanceof Error ? error.message : String(error),
        });
        return;
      }
    }
    secret.lastRotatedAt = clock.now();
  };

  const server = await JsonProtocolServer.start('secretsmanager', {
    CreateSecret: (input) => {
      const name = String(input.Name ?? '');
      if (secrets.has(name))
        throw new AwsServiceError(
          'ResourceExistsException',
          `The operation failed because the secret ${name} already exists.`,
        );
      const secret: Secret = {
        arn: `arn:aws:secretsmanager:us-east-1:123456789012:secret:${name}-${randomBytes(3).toString('hex')}`,
        name,
        versions: new Map(),
        rotationEnabled: false,
      };
      const token = requestToken(input);
      secrets.set(name, secret);
      if (input.SecretString !== undefined)
        putValue(secret, token, String(input.SecretString), ['AWSCURRENT']);
      return {
        ARN: secret.arn,
        Name: name,
        ...(input.SecretString !== undefined ? { VersionId: token } : {}),
      };
    },
    DescribeSecret: (input) => {
      const secret = find(input.SecretId);
      return {
        ARN: secret.arn,
        Name: secret.name,
        RotationEnabled: secret.rotationEnabled,
        ...(secret.rotationLambdaArn ? { RotationLambdaARN: secret.rotationLambdaArn } : {}),
        ...(secret.rotationRules ? { RotationRules: secret.rotationRules } : {}),
        ...(secret.lastRotatedAt ? { LastRotatedDate: secret.lastRotatedAt / 1000 } : {}),
        VersionIdsToStages: describeVersions(secret),
      };
    },
    GetSecretValue: (input) => {
      const secret = find(input.SecretId);
      const version = input.VersionId
        ? secret.versions.get(String(input.VersionId))
        : holder(secret, String(input.VersionStage ?? 'AWSCURRENT'));
      if (
        version?.value === undefined ||
        (input.VersionStage && !version.stages.has(String(input.VersionStage)))
      ) {
        throw new AwsServiceError(
          'ResourceNotFoundException',
          "Secrets Manager can't find the specified secret value for staging label: " +
            String(input.VersionStage ?? 'AWSCURRENT'),
        );
      }
      return {
        ARN: secret.arn,
        Name: secret.name,
        VersionId: version.id,
        SecretString: version.value,
        VersionStages: [...version.stages],
        CreatedDate: version.createdAt / 1000,
      };
    },
    PutSecretValue: (input) => {
      const secret = find(input.SecretId);
      const token = requestToken(input);
      const stages = (input.VersionStages as string[] | undefined) ?? ['AWSCURRENT'];
      const version = putValue(secret, token, String(input.SecretString ?? ''), stages);
      return {
        ARN: secret.arn,
        Name: secret.name,
        VersionId: version.id,
        VersionStages: [...version.stages],
      };
    },
    UpdateSecretVersionStage: (input) => {
      const secret = find(input.SecretId);
      const stage = String(input.VersionStage);
      if (input.RemoveFromVersionId !== undefined) {
        const from = secret.versions.get(String(input.RemoveFromVersionId));
        if (!from?.stages.has(stage)) {
          throw new AwsServiceError(
            'InvalidParameterException',
            `The staging label ${stage} is not attached to version ${String(input.RemoveFromVersionId)}.`,
          );
        }
      }
      if (input.MoveToVersionId !== undefined) {
        const to = secret.versions.get(String(input.MoveToVersionId));
        if (to === undefined) throw new AwsServiceError('ResourceNotFoundException', 'Version not found');
        // Unlike PutSecretValue, a label attached elsewhere moves only when the caller names where from.
        const attached = holder(secret, stage);
        if (attached !== undefined && attached !== to && input.RemoveFromVersionId !== attached.id) {
          throw new AwsServiceError(
            'InvalidParameterException',
            `The staging label ${stage} is currently attached to version ${attached.id}, so you must explicitly reference that version in RemoveFromVersionId.`,
          );
        }
        moveStage(secret, stage, to);
      } else if (input.RemoveFromVersionId !== undefined) {
        secret.versions.get(String(input.RemoveFromVersionId))?.stages.delete(stage);
      }
      return { ARN: secret.arn, Name: secret.name };
    },
    ListSecretVersionIds: (input) => {
      const secret = find(input.SecretId);
      return {
        ARN: secret.arn,
        Name: secret.name,
        Versions: [...secret.versions.values()].map((v) => ({
          VersionId: v.id,
          VersionStages: [...v.stages],
        })),
      };
    },
    RotateSecret: (input) => {
      const secret = find(input.SecretId);
      if (input.RotationLambdaARN !== undefined) secret.rotationLambdaArn = String(input.RotationLambdaARN);
      if (input.RotationRules !== undefined)
        secret.rotationRules = input.RotationRules as Record<string, unknown>;
      if (secret.rotationLambdaArn === undefined)
        throw new AwsServiceError(
          'InvalidRequestException',
          'No Lambda rotation function ARN is associated with this secret.',
        );
      secret.rotationEnabled = true;
      const pending = holder(secret, 'AWSPENDING');
      if (pending !== undefined && !pending.stages.has('AWSCURRENT')) {
        throw new AwsServiceError(
          'InvalidRequestException',
          "A previous rotation isn't complete. That rotation will be reattempted.",
        );
      }
      const token = requestToken(input);
      const version: Version = { id: token, stages: new Set(['AWSPENDING']), createdAt: clock.now() };
      secret.versions.set(token, version);
      if (input.RotateImmediately !== false) {
        const run = rotate(secret, token).finally(() => rotations.delete(run));
        rotations.add(run);
      }
      return { ARN: secret.arn, Name: secret.name, VersionId: token };
    },
  });

  return {
    endpoint: server.endpoint,
    calls: server.calls,
    rotationHistory,
    client: () =>
      new SecretsManagerClient({
        endpoint: server.endpoint,
        region: 'us-east-1',
        credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
      }),
    registerRotationFunction: (arn: string, fn: RotationFunction) => functions.set(arn, fn),
    /** Resolves once no rotation is running. */
    idle: async () => {
      while (rotations.size > 0) await Promise.all([...rotations]);
    },
    stop: async () => {
      while (rotations.size > 0) await Promise.all([...rotations]);
      await server.stop();
    },
  };
}
