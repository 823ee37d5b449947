import {
  DescribeRuleCommand,
  type EventBridgeClient,
  ResourceNotFoundException,
} from '@aws-sdk/client-eventbridge';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import {
  GetDocumentCommand,
  GetParameterCommand,
  GetParametersByPathCommand,
  InvalidDocument,
  type SSMClient,
} from '@aws-sdk/client-ssm';
import { z } from 'zod';
import type { AwsCallError, SignedHttp } from '../aws/signed-http';
import type { Clock } from '../clock';
import type { ClusterConfig } from '../config';
import { ValidationError } from '../errors';
import { VaultCertificateAuthority } from '../vault/authority';
import { VaultClient } from '../vault/client';
import { SecretsManagerTokenSource } from '../vault-token/tokens';
import {
  clustersParameterPath,
  type Deployment,
  deploymentParameterName,
  parseClusterParameters,
  parseDeployment,
} from './deployment';
import {
  type AlarmReader,
  type DocumentReader,
  type QueueReader,
  type StoredDocument,
  TokenUnreadableError,
  type TriggerReader,
  type VaultProbe,
} from './ports';

/** The deployed clusters and the stack's names, from the parameters the stack writes. */
export async function readDeployment(
  ssm: SSMClient,
  stackName: string,
): Promise<{ clusters: ClusterConfig[]; deployment: Deployment }> {
  const { Parameter } = await ssm.send(new GetParameterCommand({ Name: deploymentParameterName(stackName) }));
  const deployment = parseDeployment(Parameter?.Value);
  const values: (string | undefined)[] = [];
  let nextToken: string | undefined;
  do {
    const page = await ssm.send(
      new GetParametersByPathCommand({ Path: clustersParameterPath(stackName), NextToken: nextToken }),
    );
    for (const parameter of page.Parameters ?? []) values.push(parameter.Value);
    nextToken = page.NextToken;
  } while (nextToken);
  return { clusters: parseClusterParameters(values), deployment };
}

/**
 * Vault as the rotator sees it: the cluster's address and CA bundle, and the rotator's own token from
 * its secret, so lookup-self and capabilities-self answer for the token that signs. The token goes
 * to Vault and nowhere else: the client's errors never carry it.
 */
export function vaultProbe(
  cluster: ClusterConfig,
  secrets: SecretsManagerClient,
  clock: Clock,
  timeoutMs: number,
): VaultProbe {
  const tokens = new SecretsManagerTokenSource(secrets, cluster.vault.tokenSecretId, clock);
  const client = new VaultClient({
    address: cluster.vault.address,
    timeoutMs: Math.min(cluster.vault.requestTimeoutMs, timeoutMs),
    tokens,
    attempts: 1,
    ...(cluster.vault.caBundlePem ? { caBundlePem: cluster.vault.caBundlePem } : {}),
    ...(cluster.vault.namespace ? { namespace: cluster.vault.namespace } : {}),
  });
  const authority = new VaultCertificateAuthority(client, {
    mount: cluster.vault.pkiMount,
    serverRole: cluster.vault.serverRole,
    clientRole: cluster.vault.clientRole,
    cliRole: cluster.vault.cliRole,
  });
  // Read the secret before Vault is asked, so a refusal is told apart from Vault's own errors.
  const readToken = async () => {
    try {
      await tokens.current();
    } catch (error) {
      if ((error as Error).name === 'AccessDeniedException')
        throw new TokenUnreadableError(
          `the token secret ${cluster.vault.tokenSecretId} refuses this identity`,
        );
      throw error;
    }
  };
  return {
    health: () => client.health(),
    tokenTtlSeconds: async () => {
      await readToken();
      const answer = lookupSelfSchema.safeParse(await client.read('auth/token/lookup-self'));
      if (!answer.success) throw new ValidationError('Vault answered lookup-self without a ttl');
      return answer.data.data.ttl;
    },
    capabilities: async (paths) => {
      await readToken();
      const answer = await client.write<Record<string, unknown>>('sys/capabilities-self', {
        paths: [...paths],
      });
      const data = (answer.data ?? answer) as Record<string, unknown>;
      return Object.fromEntries(
        paths.map((path) => {
          const granted = data[path];
          return [path, Array.isArray(granted) ? granted.filter((item) => typeof item === 'string') : []];
        }),
      );
    },
    issuerNotAfter: () => authority.issuerNotAfter(),
  };
}

const lookupSelfSchema = z.object({ data: z.object({ ttl: z.number().int().nonnegative() }) });

export function ssmDocuments(ssm: SSMClient): DocumentReader {
  return {
    get: async (name): Promise<StoredDocument | undefined> => {
      try {
        const answer = await ssm.send(new GetDocumentCommand({ Name: name, DocumentFormat: 'JSON' }));
        let content: unknown;
        try {
          content = JSON.parse(answer.Content ?? '');
        } catch {
          throw new ValidationError(`SSM document ${name} is not JSON`);
        }
        return { content, version: answer.DocumentVersion ?? '?', status: answer.Status ?? 'unknown' };
      } catch (error) {
        if (error instanceof InvalidDocument) return undefined;
        throw error;
      }
    },
  };
}

const stateSchema = z.enum(['ENABLED', 'DISABLED']);

export function awsTriggers(eventBridge: EventBridgeClient, scheduler: SignedHttp): TriggerReader {
  return {
    schedule: async (name, group) => {
      try {
        const answer = await scheduler.get(`/schedules/${encodeURIComponent(name)}`, { groupName: group });
        return z.object({ State: stateSchema }).parse(answer).State;
      } catch (error) {
        if ((error as AwsCallError).name === 'ResourceNotFoundException') return undefined;
        throw error;
      }
    },
    rule: async (name) => {
      try {
        const answer = await eventBridge.send(new DescribeRuleCommand({ Name: name }));
        return stateSchema.parse(answer.State);
      } catch (error) {
        if (error instanceof ResourceNotFoundException) return undefined;
        throw error;
      }
    },
  };
}

const alarmsPageSchema = z.object({
  MetricAlarms: z.array(z.object({ AlarmName: z.string(), StateReason: z.string().optional() })).optional(),
  CompositeAlarms: z
    .array(z.object({ AlarmName: z.string(), StateReason: z.string().optional() }))
    .optional(),
  NextToken: z.string().optional(),
});

export function cloudWatchAlarms(cloudWatch: SignedHttp): AlarmReader {
  return {
    inAlarm: async (prefix) => {
      const alarms: { name: string; reason: string }[] = [];
      let nextToken: string | undefined;
      do {
        const page = alarmsPageSchema.parse(
          await cloudWatch.json('GraniteServiceVersion20100801.DescribeAlarms', {
            AlarmNamePrefix: prefix,
            StateValue: 'ALARM',
            AlarmTypes: ['MetricAlarm', 'CompositeAlarm'],
            MaxRecords: 100,
            ...(nextToken === undefined ? {} : { NextToken: nextToken }),
          }),
        );
        for (const alarm of [...(page.MetricAlarms ?? []), ...(page.CompositeAlarms ?? [])])
          alarms.push({ name: alarm.AlarmName, reason: alarm.StateReason ?? '' });
        nextToken = page.NextToken;
      } while (nextToken);
      return alarms;
    },
  };
}

const queueAttributesSchema = z.object({
  Attributes: z.object({ ApproximateNumberOfMessages: z.string().regex(/^\d+$/) }),
});

export function sqsQueues(sqs: SignedHttp): QueueReader {
  return {
    depth: async (queueUrl) =>
      Number(
        queueAttributesSchema.parse(
          await sqs.json('AmazonSQS.GetQueueAttributes', {
            QueueUrl: queueUrl,
            AttributeNames: ['ApproximateNumberOfMessages'],
          }),
        ).Attributes.ApproximateNumberOfMessages,
      ),
  };
}
