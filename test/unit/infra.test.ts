import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, Duration, Stack, Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { Key } from 'aws-cdk-lib/aws-kms';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { loadClustersFile, loadNetworkFile, parseOperatorRoleArns } from '../../infra/config';
import { FunctionNetwork, vaultPort } from '../../infra/constructs/function-network';
import { RotatorFunction } from '../../infra/constructs/rotator-function';
import { defineApp } from '../../infra/define-app';
import type { NomadRotatorStack } from '../../infra/stack';
import { caDaysToExpiryThreshold } from '../../shared/certificates/renewal';
import { clustersConfigSchema } from '../../shared/config';
import { commandDocument, type DocumentKind } from '../../shared/documents';
import { METRIC, PowertoolsTelemetry } from '../../shared/observability';
import { testInventory } from '../helpers/inventory';
import { UNCHECKED_TRUST_ANCHORS } from '../helpers/trust-anchors';

type Resource = { Type: string; Properties: Record<string, unknown> };
type Statement = { Effect: string; Action: string | string[]; Resource: unknown; Condition?: unknown };

const EXAMPLE_CLUSTER = 'prod-eu';

let app: App;
let stack: NomadRotatorStack;
let template: Template;
let resources: Record<string, Resource>;

/**
 * A synthesis of the app exactly as `cdk synth` builds it (same entry, same cdk.json feature flags)
 * with two differences that change no resource: bundling is skipped through CDK's own
 * `aws:cdk:bundling-stacks` context (only the asset hashes differ), and CloudFormation's schema
 * validation, which `npm run synth` runs, is left out. cdk-nag findings are asserted below instead of
 * failing the synthesis.
 */
function synthesize(context: Record<string, unknown> = {}): {
  app: App;
  stack: NomadRotatorStack;
  template: Template;
  resources: Record<string, Resource>;
} {
  const cdkJson = JSON.parse(readFileSync(join(import.meta.dirname, '../../cdk.json'), 'utf8')) as {
    context: Record<string, unknown>;
  };
  const synthesized = new App({
    builtinCloudFormationValidation: false,
    context: {
      ...cdkJson.context,
      region: 'eu-west-1',
      'aws:cdk:bundling-stacks': [],
      '@aws-cdk/core:failSynthOnValidationErrors': false,
      ...context,
    },
  });
  const stack = defineApp(synthesized);
  const stackTemplate = Template.fromStack(stack);
  return {
    app: synthesized,
    stack,
    template: stackTemplate,
    resources: stackTemplate.toJSON().Resources as Record<string, Resource>,
  };
}

/** The operator roles named at deploy (context operatorRoleArns), one of them with a path. */
const OPERATOR_ROLES = [
  'arn:aws:iam::123456789012:role/nomad-operator',
  'arn:aws:iam::123456789012:role/ops/nomad-oncall',
];

/** One synthesis for the whole file (the VPC placement and the stack without operators have their own). */
beforeAll(() => {
  ({ app, stack, template, resources } = synthesize({ operatorRoleArns: OPERATOR_ROLES.join(',') }));
});

const ofType = (type: string, from = resources) =>
  Object.entries(from).filter(([, resource]) => resource.Type === type);
const logicalIdOf = (type: string, match: (resource: Resource) => boolean) => {
  const found = ofType(type).find(([, resource]) => match(resource));
  if (found === undefined) throw new Error(`no ${type} matches`);
  return found[0];
};
const functionId = (entry: string) =>
  logicalIdOf('AWS::Lambda::Function', (fn) =>
    JSON.stringify(fn.Properties.Role).includes(`"${roleId(entry)}"`),
  );
/** The stack's key (table, queues, token secrets, ...); the gossip keys have one of their own. */
const keyId = () =>
  logicalIdOf('AWS::KMS::Key', (key) => String(key.Properties.Description).includes('table, queues'));
const gossipKeyId = () =>
  logicalIdOf('AWS::KMS::Key', (key) => String(key.Properties.Description).includes('gossip key'));
const secretsNamed = (suffix: '/vault-token' | '/gossip-key') =>
  ofType('AWS::SecretsManager::Secret').filter(([, secret]) =>
    String(secret.Properties.Name).endsWith(suffix),
  );
const roleId = (entry: string) =>
  logicalIdOf('AWS::IAM::Role', (role) => String(role.Properties.Description).startsWith(`${kebab(entry)}:`));
const kebab = (name: string) => name.replace(/([a-z])([A-Z])/g, '$1-$2').toLowerCase();
function documentId(kind: DocumentKind): string {
  const expected = JSON.stringify(
    commandDocument(kind, clustersConfigSchema.parse(JSON.parse(stack.clustersConfig))),
  );
  return logicalIdOf(
    'AWS::SSM::Document',
    (document) => JSON.stringify(document.Properties.Content) === expected,
  );
}
function jsonFile(name: string, content: unknown): string {
  const file = join(mkdtempSync(join(tmpdir(), 'nomad-rotator-infra-')), name);
  writeFileSync(file, JSON.stringify(content));
  return file;
}
const clustersFile = (clusters: unknown) => jsonFile('clusters.json', clusters);
const asList = <T>(value: T | T[]): T[] => (Array.isArray(value) ? value : [value]);
const byJson = (a: unknown, b: unknown) => JSON.stringify(a).localeCompare(JSON.stringify(b));

/** Every statement of every identity policy, with the role(s) it is attached to. */
function identityStatements(from = resources): { roles: string[]; statement: Statement }[] {
  const found: { roles: string[]; statement: Statement }[] = [];
  for (const [, policy] of ofType('AWS::IAM::Policy', from)) {
    const roles = (policy.Properties.Roles as { Ref: string }[]).map((role) => role.Ref);
    const document = policy.Properties.PolicyDocument as { Statement: Statement[] };
    for (const statement of document.Statement) found.push({ roles, statement });
  }
  for (const [id, role] of ofType('AWS::IAM::Role', from)) {
    for (const inline of (role.Properties.Policies as { PolicyDocument: { Statement: Statement[] } }[]) ?? [])
      for (const statement of inline.PolicyDocument.Statement) found.push({ roles: [id], statement });
  }
  return found;
}

describe('infra: triggers', () => {
  it('ticks rotate-certs every 5 minutes with {"tick":true}, with retries and a dead-letter queue', () => {
    template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'rate(5 minutes)',
      State: 'ENABLED',
      Target: {
        Arn: { 'Fn::GetAtt': [functionId('RotateCerts'), 'Arn'] },
        Input: JSON.stringify({ tick: true }),
        RetryPolicy: { MaximumRetryAttempts: 2, MaximumEventAgeInSeconds: 240 },
        DeadLetterConfig: { Arn: Match.anyValue() },
      },
    });
  });

  it('rotates every Vault token secret every 12 hours with rotate-token', () => {
    template.resourceCountIs('AWS::SecretsManager::RotationSchedule', 1);
    template.hasResourceProperties('AWS::SecretsManager::RotationSchedule', {
      RotationLambdaARN: { 'Fn::GetAtt': [functionId('RotateToken'), 'Arn'] },
      RotationRules: { ScheduleExpression: 'rate(12 hours)' },
    });
    template.hasResourceProperties('AWS::Lambda::Permission', {
      FunctionName: { 'Fn::GetAtt': [functionId('RotateToken'), 'Arn'] },
      Principal: 'secretsmanager.amazonaws.com',
      SourceAccount: { Ref: 'AWS::AccountId' },
    });
  });

  it('routes the SSM command events of our documents, and EC2 running/terminated, through queues', () => {
    const [prepare, install, gossip] = (['prepare', 'install', 'gossip'] as const).map(documentId);
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.ssm'],
        'detail-type': ['EC2 Command Status-change Notification'],
        detail: { 'document-name': [{ Ref: prepare }, { Ref: install }, { Ref: gossip }] },
      },
    });
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.ec2'],
        'detail-type': ['EC2 Instance State-change Notification'],
        detail: { state: ['running', 'terminated'] },
      },
    });
    for (const entry of ['CommandStatus', 'InstanceState']) {
      template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
        FunctionName: { Ref: functionId(entry) },
        FunctionResponseTypes: ['ReportBatchItemFailures'],
      });
    }
  });
});

describe('infra: node documents and configuration', () => {
  it('deploys exactly the documents the local world runs, and names them to the functions', () => {
    template.resourceCountIs('AWS::SSM::Document', 3);
    for (const kind of ['prepare', 'install', 'gossip'] as const) {
      const id = documentId(kind);
      expect(resources[id]?.Properties).toMatchObject({
        DocumentType: 'Command',
        UpdateMethod: 'NewVersion',
      });
      const variable = `${kind.toUpperCase()}_DOCUMENT_NAME`;
      for (const [, fn] of ofType('AWS::Lambda::Function')) {
        expect(
          (fn.Properties.Environment as { Variables: Record<string, unknown> }).Variables[variable],
        ).toEqual({
          Ref: id,
        });
      }
    }
  });

  it('gives every function the clusters as a file in its bundle, naming the stack’s token secret', () => {
    const secretName = 'NomadRotator/prod-eu/vault-token';
    for (const [, fn] of ofType('AWS::Lambda::Function')) {
      const variables = (fn.Properties.Environment as { Variables: Record<string, unknown> }).Variables;
      expect(variables.CLUSTERS_CONFIG_FILE).toBe('/var/task/clusters.json');
      expect(variables).not.toHaveProperty('CLUSTERS_CONFIG');
      expect(Object.keys(variables)).toEqual(
        expect.arrayContaining(['STATE_TABLE_NAME', 'EVENT_BUS_NAME', 'POWERTOOLS_SERVICE_NAME']),
      );
    }
    const clusters = clustersConfigSchema.parse(JSON.parse(stack.clustersConfig));
    expect(clusters.map((cluster) => [cluster.name, cluster.vault.tokenSecretId])).toEqual([
      [EXAMPLE_CLUSTER, secretName],
    ]);
    template.hasResourceProperties('AWS::SecretsManager::Secret', { Name: secretName });
  });

  it('writes what the doctor reads: the stack’s names, and each cluster exactly as the functions read it', () => {
    const parameters = ofType('AWS::SSM::Parameter');
    const named = (name: string) =>
      parameters.find(([, parameter]) => parameter.Properties.Name === name)?.[1];
    const cluster = named(`/NomadRotator/clusters/${EXAMPLE_CLUSTER}`);
    expect(JSON.parse(String(cluster?.Properties.Value))).toEqual(JSON.parse(stack.clustersConfig)[0]);
    expect(cluster?.Properties.Tier).toBe('Intelligent-Tiering');
    const deployment = JSON.stringify(named('/NomadRotator/deployment')?.Properties.Value);
    for (const kind of ['prepare', 'install', 'gossip'] as const)
      expect(deployment).toContain(`{"Ref":"${documentId(kind)}"}`);
    const tick = logicalIdOf('AWS::Scheduler::Schedule', () => true);
    expect(deployment).toContain(`{"Ref":"${tick}"}`);
    for (const [id] of ofType('AWS::Events::Rule')) expect(deployment).toContain(`{"Ref":"${id}"}`);
    const deadLetterQueues = ofType('AWS::SQS::Queue').filter(
      ([, queue]) =>
        queue.Properties.RedrivePolicy === undefined && queue.Properties.MessageRetentionPeriod === 1_209_600,
    );
    expect(deadLetterQueues).toHaveLength(3);
    for (const [id] of deadLetterQueues) expect(deployment).toContain(`{"Ref":"${id}"}`);
    expect(deployment).toContain('alarmNamePrefix');
  });

  it('copies the clusters file into the deployed bundle, next to the handler', () => {
    const outdir = mkdtempSync(join(tmpdir(), 'nomad-rotator-bundle-'));
    const bundled = new App({ outdir });
    const fnStack = new Stack(bundled, 'Bundle', { env: { region: 'eu-west-1' } });
    new RotatorFunction(fnStack, 'RotateToken', {
      entry: 'rotate-token',
      description: 'bundle test',
      key: new Key(fnStack, 'Key'),
      environment: {},
      timeout: Duration.seconds(30),
      files: { 'clusters.json': '[{"name":"bundled"}]' },
    });

    bundled.synth();

    const assets = readdirSync(outdir).filter((entry) => entry.startsWith('asset.'));
    const copies = assets.filter((asset) => existsSync(join(outdir, asset, 'clusters.json')));
    expect(copies).toHaveLength(1);
    expect(readFileSync(join(outdir, copies[0]!, 'clusters.json'), 'utf8')).toBe('[{"name":"bundled"}]');
    expect(existsSync(join(outdir, copies[0]!, 'index.mjs'))).toBe(true);
  });

  it('runs Node.js 22 on arm64 with 90-day encrypted log groups', () => {
    template.resourceCountIs('AWS::Lambda::Function', 5);
    template.allResourcesProperties('AWS::Lambda::Function', {
      Runtime: 'nodejs22.x',
      Architectures: ['arm64'],
      LoggingConfig: { LogGroup: { Ref: Match.anyValue() } },
    });
    template.allResourcesProperties('AWS::Logs::LogGroup', {
      RetentionInDays: 90,
      KmsKeyId: { 'Fn::GetAtt': [keyId(), 'Arn'] },
    });
    template.hasResourceProperties('AWS::Lambda::Function', {
      Timeout: 300,
      ReservedConcurrentExecutions: 1,
      Role: { 'Fn::GetAtt': [Match.stringLikeRegexp('^RotateCerts'), 'Arn'] },
    });
  });

  it('fails synthesis on a bad clusters file with the field named', () => {
    const file = clustersFile([{ name: 'prod-eu', vault: { address: 'vault.internal' } }]);
    expect(() => loadClustersFile(file)).toThrow(/0\.vault\.address/);
  });

  it('deploys clusters with CA bundles that could never fit in the 4 KB Lambda environment', () => {
    const caBundlePem = `-----BEGIN CERTIFICATE-----\n${'A'.repeat(1600)}\n-----END CERTIFICATE-----\n`;
    const clusters = ['eu', 'us', 'ap'].map((name) => ({
      name,
      inventory: testInventory(name),
      certificates: UNCHECKED_TRUST_ANCHORS,
      vault: {
        address: 'https://vault.internal:8200',
        caBundlePem,
        tokenRotation: { iamServerIdHeader: 'vault.internal' },
      },
    }));
    const large = new App({
      context: { region: 'eu-west-1', clustersFile: clustersFile(clusters), 'aws:cdk:bundling-stacks': [] },
    });

    const deployed = defineApp(large);

    expect(Buffer.byteLength(deployed.clustersConfig)).toBeGreaterThan(4096);
    expect(clustersConfigSchema.parse(JSON.parse(deployed.clustersConfig))).toHaveLength(3);
  });
});

describe('infra: data at rest', () => {
  it('keeps state in a CMK-encrypted table with PITR, TTL on expiresAt and deletion protection', () => {
    template.hasResourceProperties('AWS::DynamoDB::GlobalTable', {
      KeySchema: [
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ],
      SSESpecification: { SSEEnabled: true, SSEType: 'KMS' },
      TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true },
      Replicas: [
        Match.objectLike({
          DeletionProtectionEnabled: true,
          PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
          SSESpecification: { KMSMasterKeyId: { 'Fn::GetAtt': [keyId(), 'Arn'] } },
        }),
      ],
    });
    template.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
  });

  it('encrypts every queue, token secret, topic and the event bus with the same key, and queues refuse plain HTTP', () => {
    const key = { 'Fn::GetAtt': [keyId(), 'Arn'] };
    template.allResourcesProperties('AWS::SQS::Queue', { KmsMasterKeyId: key });
    expect(secretsNamed('/vault-token')).toHaveLength(1);
    for (const [, secret] of secretsNamed('/vault-token')) expect(secret.Properties.KmsKeyId).toEqual(key);
    template.allResourcesProperties('AWS::SNS::Topic', { KmsMasterKeyId: key });
    template.allResourcesProperties('AWS::Events::EventBus', { KmsKeyIdentifier: key });
    template.allResourcesProperties('AWS::Scheduler::Schedule', { KmsKeyArn: key });
    for (const [id] of ofType('AWS::SQS::Queue')) {
      template.hasResourceProperties('AWS::SQS::QueuePolicy', {
        Queues: [{ Ref: id }],
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
          ]),
        },
      });
    }
  });
});

describe('infra: least privilege', () => {
  it("limits SendCommand to the three documents and to instances of the clusters' Auto Scaling groups", () => {
    const documents = (['prepare', 'install', 'gossip'] as const).map(documentId);
    const sendCommand = identityStatements().filter(({ statement }) =>
      asList(statement.Action).includes('ssm:SendCommand'),
    );
    expect(sendCommand.length).toBeGreaterThan(0);
    const issuers = new Set(sendCommand.flatMap(({ roles }) => roles));
    expect([...issuers].sort()).toEqual(
      ['CommandStatus', 'InstanceState', 'ManualOps', 'RotateCerts'].map((entry) => roleId(entry)).sort(),
    );
    for (const { statement } of sendCommand) {
      expect(asList(statement.Action)).toEqual(['ssm:SendCommand']);
      const text = JSON.stringify(statement.Resource);
      if (text.includes(':instance/*')) {
        // The example's roles both name Auto Scaling groups: no statement falls back to a settable tag.
        expect(statement.Condition).toEqual({
          StringEquals: {
            'ssm:resourceTag/aws:autoscaling:groupName': ['prod-eu-nomad-servers', 'prod-eu-nomad-clients'],
          },
        });
      } else {
        expect(statement.Condition).toBeUndefined();
        const named = asList(statement.Resource).map((resource) => JSON.stringify(resource));
        expect(named).toHaveLength(3);
        for (const id of documents)
          expect(named.filter((arn) => arn.includes(`"Ref":"${id}"`))).toHaveLength(1);
      }
    }
  });

  it('grants no wildcard action and attaches no AWS managed policy', () => {
    for (const { roles, statement } of identityStatements()) {
      for (const action of asList(statement.Action)) {
        expect(action, `${action} on ${roles.join(', ')}`).not.toMatch(/(^\*$|:\*$)/);
      }
    }
    for (const [, role] of ofType('AWS::IAM::Role'))
      expect(role.Properties.ManagedPolicyArns).toBeUndefined();
  });

  /** Every function that issues certificates, and so builds the inventory from EC2. */
  const ISSUERS = ['RotateCerts', 'ManualOps', 'CommandStatus', 'InstanceState'];
  /** The actions of one service (`prefix`, e.g. `ssm:`) granted to a function's role. */
  const grantedTo = (issuer: string, prefix: string) =>
    new Set(
      identityStatements()
        .filter(({ roles }) => roles.includes(roleId(issuer)))
        .flatMap(({ statement }) => asList(statement.Action))
        .filter((action) => action.startsWith(prefix)),
    );

  it('lets the issuers call exactly the DynamoDB operations the state table code sends', () => {
    const adapter = join(import.meta.dirname, '../../shared/state');
    const source = ['table.ts', ...readdirSync(join(adapter, 'dynamodb')).map((file) => `dynamodb/${file}`)]
      .map((file) => readFileSync(join(adapter, file), 'utf8'))
      .join('\n');
    const sent = new Set(
      [...source.matchAll(/new (\w+)Command\(/g)]
        .map(([, name]) => name!)
        .map((name) => `dynamodb:${/Item$|^Query$|^Scan$/.test(name) ? name : `${name}Item`}`),
    );
    for (const issuer of ISSUERS) expect(grantedTo(issuer, 'dynamodb:'), issuer).toEqual(sent);
  });

  it('lets the issuers call exactly the SSM and EC2 operations the adapters send', () => {
    const sent = { ssm: new Set<string>(), ec2: new Set<string>() };
    for (const adapter of ['ssm.ts', 'ec2.ts']) {
      const source = readFileSync(join(import.meta.dirname, '../../shared/aws', adapter), 'utf8');
      for (const [, names, service] of source.matchAll(
        /import \{([^}]*)\} from '@aws-sdk\/client-(ssm|ec2)'/g,
      ))
        for (const [, operation] of names!.matchAll(/(\w+)Command\b/g))
          if (source.includes(`new ${operation}Command(`))
            sent[service as 'ssm' | 'ec2'].add(`${service}:${operation}`);
    }

    expect(sent.ec2).toEqual(new Set(['ec2:DescribeInstances']));
    for (const issuer of ISSUERS) {
      expect(grantedTo(issuer, 'ssm:'), issuer).toEqual(sent.ssm);
      expect(grantedTo(issuer, 'ec2:'), issuer).toEqual(sent.ec2);
    }
  });

  it('lets only rotate-token write the token secrets, and the issuers only read them', () => {
    const [[secret]] = secretsNamed('/vault-token') as [[string, Resource]];
    const onSecret = identityStatements().filter(({ statement }) =>
      JSON.stringify(statement.Resource).includes(`"Ref":"${secret}"`),
    );
    for (const { roles, statement } of onSecret) {
      if (roles.includes(roleId('RotateToken'))) {
        expect(asList(statement.Action).sort()).toEqual([
          'secretsmanager:DescribeSecret',
          'secretsmanager:GetSecretValue',
          'secretsmanager:PutSecretValue',
          'secretsmanager:UpdateSecretVersionStage',
        ]);
      } else {
        expect(asList(statement.Action)).toEqual(['secretsmanager:GetSecretValue']);
      }
    }
  });
});

describe('infra: resource policies (who may read the token, write the table, feed the queues)', () => {
  type PolicyStatementJson = Statement & { Principal?: unknown; Sid?: string };
  const getAtt = (id: string) => ({ 'Fn::GetAtt': [id, 'Arn'] });
  /** The roles of the functions that read the token with their own credentials. */
  const TOKEN_READERS = ['RotateToken', 'RotateCerts', 'ManualOps', 'CommandStatus', 'InstanceState'];
  /** The roles of the functions that write the state table. */
  const ISSUER_ENTRIES = ['RotateCerts', 'ManualOps', 'CommandStatus', 'InstanceState'];
  const sortedArns = (entries: string[]) => entries.map((entry) => getAtt(roleId(entry))).sort(byJson);
  const principalArnsExempt = (statement: PolicyStatementJson) =>
    asList(
      (statement.Condition as { ArnNotEquals?: Record<string, unknown> } | undefined)?.ArnNotEquals?.[
        'aws:PrincipalArn'
      ] as unknown[],
    ).sort(byJson);

  it('denies GetSecretValue on every token secret to every principal but the functions that use it', () => {
    const secrets = secretsNamed('/vault-token');
    expect(secrets.length).toBeGreaterThan(0);
    for (const [secret] of secrets) {
      const [, policy] = ofType('AWS::SecretsManager::ResourcePolicy').find(
        ([, candidate]) => JSON.stringify(candidate.Properties.SecretId) === JSON.stringify({ Ref: secret }),
      )!;
      const statements = (policy.Properties.ResourcePolicy as { Statement: PolicyStatementJson[] }).Statement;
      const reading = statements.filter((statement) =>
        asList(statement.Action).includes('secretsmanager:GetSecretValue'),
      );
      expect(reading).toHaveLength(1);
      expect(reading[0]).toMatchObject({ Effect: 'Deny', Principal: { AWS: '*' } });
      expect(principalArnsExempt(reading[0]!)).toEqual(sortedArns(TOKEN_READERS));
      // Management stays with IAM: nothing here denies describe, rotate, policy or tag changes.
      const denied = statements
        .filter((statement) => statement.Effect === 'Deny')
        .flatMap((s) => asList(s.Action));
      expect(denied.filter((action) => action !== 'secretsmanager:DeleteSecret')).toEqual([
        'secretsmanager:GetSecretValue',
      ]);
    }
    // Exactly the roles whose own policies grant GetSecretValue on the secrets are exempt.
    const granted = new Set(
      identityStatements()
        .filter(({ statement }) => asList(statement.Action).includes('secretsmanager:GetSecretValue'))
        .flatMap(({ roles }) => roles),
    );
    expect([...granted].sort()).toEqual(TOKEN_READERS.map((entry) => roleId(entry)).sort());
  });

  it('denies kms:Decrypt through Secrets Manager to the same principals, leaving key management alone', () => {
    const key = resources[keyId()]!;
    const statements = (key.Properties.KeyPolicy as { Statement: PolicyStatementJson[] }).Statement;
    const denials = statements.filter((statement) => statement.Effect === 'Deny');

    expect(denials).toHaveLength(1);
    expect(denials[0]).toMatchObject({
      Principal: { AWS: '*' },
      Action: 'kms:Decrypt',
      Condition: { StringEquals: { 'kms:ViaService': 'secretsmanager.eu-west-1.amazonaws.com' } },
    });
    expect(principalArnsExempt(denials[0]!)).toEqual(sortedArns(TOKEN_READERS));
    // The account (and so the deploying role) still administers the key.
    expect(statements).toContainEqual(
      expect.objectContaining({ Effect: 'Allow', Action: 'kms:*', Principal: { AWS: expect.anything() } }),
    );
  });

  it('denies item writes on the state table to every principal but the functions’ roles, not its management', () => {
    const [, table] = ofType('AWS::DynamoDB::GlobalTable')[0]!;
    const [replica] = table.Properties.Replicas as {
      ResourcePolicy: { PolicyDocument: { Statement: PolicyStatementJson[] } };
    }[];
    const statements = replica!.ResourcePolicy.PolicyDocument.Statement;

    expect(statements).toHaveLength(1);
    const [deny] = statements;
    expect(deny).toMatchObject({ Effect: 'Deny', Principal: { AWS: '*' }, Resource: '*' });
    expect(principalArnsExempt(deny!)).toEqual(sortedArns(ISSUER_ENTRIES));
    expect(asList(deny!.Action).sort()).toEqual(
      [
        'dynamodb:BatchWriteItem',
        'dynamodb:DeleteItem',
        'dynamodb:PartiQLDelete',
        'dynamodb:PartiQLInsert',
        'dynamodb:PartiQLUpdate',
        'dynamodb:PutItem',
        'dynamodb:UpdateItem',
      ].sort(),
    );
    // Every write the functions are granted is one the policy holds to them.
    const writesGranted = identityStatements()
      .flatMap(({ statement }) => asList(statement.Action))
      .filter((action) => /^dynamodb:(Put|Update|Delete|BatchWrite)/.test(action));
    for (const action of writesGranted) expect(asList(deny!.Action)).toContain(action);
  });

  it('lets each event queue take messages only from its own rule (aws:SourceArn)', () => {
    const rules = ofType('AWS::Events::Rule').filter(([, rule]) =>
      JSON.stringify(rule.Properties.Targets).includes('Queue'),
    );
    expect(rules).toHaveLength(2);
    for (const [ruleId, rule] of rules) {
      const [target] = rule.Properties.Targets as { Arn: { 'Fn::GetAtt': [string, string] } }[];
      const queue = target!.Arn['Fn::GetAtt'][0];
      const [, policy] = ofType('AWS::SQS::QueuePolicy').find(
        ([, candidate]) => JSON.stringify(candidate.Properties.Queues) === JSON.stringify([{ Ref: queue }]),
      )!;
      const statements = (policy.Properties.PolicyDocument as { Statement: PolicyStatementJson[] }).Statement;
      const sendDenials = statements.filter(
        (statement) => statement.Effect === 'Deny' && asList(statement.Action).includes('sqs:SendMessage'),
      );
      expect(sendDenials, queue).toEqual([
        expect.objectContaining({
          Principal: { AWS: '*' },
          Condition: { ArnNotEquals: { 'aws:SourceArn': getAtt(ruleId) } },
        }),
      ]);
    }
  });
});

describe('infra: manual operations', () => {
  const permissions = (from = resources) =>
    ofType('AWS::Lambda::Permission', from).map(([, permission]) => permission.Properties);
  const aliasId = () => logicalIdOf('AWS::Lambda::Alias', (alias) => alias.Properties.Name === 'operator');

  it('runs manual requests in a function of their own, apart from the tick, each with reserved concurrency', () => {
    const schedule = ofType('AWS::Scheduler::Schedule')[0]![1].Properties.Target as { Arn: unknown };
    const alias = resources[aliasId()]!;

    expect(schedule.Arn).toEqual({ 'Fn::GetAtt': [functionId('RotateCerts'), 'Arn'] });
    expect(alias.Properties.FunctionName).toEqual({ Ref: functionId('ManualOps') });
    expect(functionId('ManualOps')).not.toBe(functionId('RotateCerts'));
    expect(resources[functionId('RotateCerts')]!.Properties.ReservedConcurrentExecutions).toBe(1);
    expect(resources[functionId('ManualOps')]!.Properties.ReservedConcurrentExecutions).toBe(2);
  });

  it('serves the operator alias on a function URL with IAM auth, the only way in for the named roles', () => {
    template.resourceCountIs('AWS::Lambda::Url', 1);
    template.hasResourceProperties('AWS::Lambda::Url', {
      AuthType: 'AWS_IAM',
      Qualifier: 'operator',
      TargetFunctionArn: { 'Fn::GetAtt': [functionId('ManualOps'), 'Arn'] },
    });
    const onManualOps = permissions().filter((permission) =>
      JSON.stringify(permission.FunctionName).includes('ManualOps'),
    );

    expect(onManualOps.length).toBe(OPERATOR_ROLES.length * 2);
    for (const permission of onManualOps) {
      expect(permission.FunctionName).toEqual({ Ref: aliasId() });
      expect(OPERATOR_ROLES).toContain(permission.Principal);
      if (permission.Action === 'lambda:InvokeFunctionUrl') {
        expect(permission.FunctionUrlAuthType).toBe('AWS_IAM');
      } else {
        expect(permission).toMatchObject({ Action: 'lambda:InvokeFunction', InvokedViaFunctionUrl: true });
      }
    }
    for (const role of OPERATOR_ROLES) {
      expect(onManualOps.filter((permission) => permission.Principal === role)).toHaveLength(2);
    }
    // No identity policy of the stack lets anything invoke it either.
    const invokeGrants = identityStatements().filter(({ statement }) =>
      JSON.stringify(statement.Resource).includes(functionId('ManualOps')),
    );
    expect(invokeGrants).toEqual([]);
    expect(Object.keys(template.findOutputs('ManualOpsUrl'))).toEqual(['ManualOpsUrl']);
  });

  it('without operatorRoleArns, lets no one invoke it', () => {
    const alone = synthesize();
    const onManualOps = permissions(alone.resources).filter((permission) =>
      JSON.stringify(permission.FunctionName).includes('ManualOps'),
    );

    expect(onManualOps).toEqual([]);
    expect(ofType('AWS::Lambda::Url', alone.resources)).toHaveLength(1);
  });

  it('takes operatorRoleArns as a JSON array (cdk.json) or one comma-separated string (-c)', () => {
    expect(parseOperatorRoleArns(OPERATOR_ROLES)).toEqual(OPERATOR_ROLES);
    expect(parseOperatorRoleArns(` ${OPERATOR_ROLES.join(' , ')} `)).toEqual(OPERATOR_ROLES);
    expect(parseOperatorRoleArns('')).toEqual([]);
  });

  it('fails synthesis on a bad operatorRoleArns entry, naming it', () => {
    const cases: [unknown, string][] = [
      [
        'arn:aws:iam::123456789012:role/ok,arn:aws:sts::123456789012:assumed-role/ops/alice',
        'operatorRoleArns.1',
      ],
      [['arn:aws:iam::123456789012:role/*'], 'operatorRoleArns.0'],
      [['arn:aws:iam::123456789012:user/alice'], 'operatorRoleArns.0'],
      [
        'arn:aws:iam::123456789012:role/ops,arn:aws:iam::123456789012:role/ops',
        'operatorRoleArns.1: is listed twice',
      ],
      [{ role: 'x' }, 'operatorRoleArns: must be a list of IAM role ARNs'],
    ];
    for (const [value, field] of cases) {
      const bad = new App({
        context: { region: 'eu-west-1', operatorRoleArns: value, 'aws:cdk:bundling-stacks': [] },
      });
      expect(() => defineApp(bad), JSON.stringify(value)).toThrow(field);
    }
  });
});

describe('infra: alarms', () => {
  /** What shared/observability.ts actually writes (EMF on stdout), so alarms are held to the real shape. */
  function emitted(emit: () => void): {
    namespace: string;
    dimensions: string[];
    values: Record<string, unknown>;
  } {
    const lines: string[] = [];
    const write = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
      lines.push(String(chunk));
      return true;
    });
    try {
      emit();
    } finally {
      write.mockRestore();
    }
    const emf = JSON.parse(lines.join('').trim().split('\n')[0] ?? '{}') as Record<string, unknown> & {
      _aws: { CloudWatchMetrics: [{ Namespace: string; Dimensions: [string[]] }] };
    };
    const [directive] = emf._aws.CloudWatchMetrics;
    return { namespace: directive.Namespace, dimensions: directive.Dimensions[0], values: emf };
  }

  const alarmOn = (metricName: string, props: Record<string, unknown>) => {
    const metric = emitted(() => new PowertoolsTelemetry().pushFailed(EXAMPLE_CLUSTER, 'server'));
    const alarms = template.findResources('AWS::CloudWatch::Alarm', {
      Properties: {
        MetricName: metricName,
        Namespace: metric.namespace,
        Period: 300,
        AlarmActions: [{ Ref: logicalIdOf('AWS::SNS::Topic', () => true) }],
        ...props,
      },
    });
    const dimensions = Object.values(alarms).map((alarm) =>
      (alarm.Properties.Dimensions as { Name: string; Value: unknown }[])
        .map(({ Name, Value }) => `${Name}=${String(Value)}`)
        .sort(),
    );
    expect(dimensions).toEqual([
      metric.dimensions.map((name) => `${name}=${String(metric.values[name])}`).sort(),
    ]);
  };

  it('alarms on any failed push within 5 minutes', () => {
    alarmOn(METRIC.pushFailed, {
      Statistic: 'Sum',
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      EvaluationPeriods: 1,
      TreatMissingData: 'notBreaching',
    });
  });

  it('alarms when the soonest expiry is low or no tick reports it (missing data breaches)', () => {
    alarmOn(METRIC.minHoursToExpiry, {
      Statistic: 'Minimum',
      // Half the earliest renewal point of a 24h certificate renewed at 1/3 left with ±10 % jitter.
      Threshold: 3.6,
      ComparisonOperator: 'LessThanThreshold',
      TreatMissingData: 'breaching',
    });
  });

  it('alarms well before the issuing CA expires (30 days for 24h certificates), ignoring missing data', () => {
    alarmOn(METRIC.caDaysToExpiry, {
      Statistic: 'Minimum',
      Threshold: 30,
      ComparisonOperator: 'LessThanThreshold',
      EvaluationPeriods: 3,
      TreatMissingData: 'ignore',
    });
  });

  it('raises the CA alarm threshold to three certificate lifetimes when those exceed 30 days', () => {
    const cluster = (ttl: string) =>
      clustersConfigSchema.parse([
        {
          name: 'c',
          inventory: testInventory('c'),
          vault: {
            address: 'https://vault:8200',
            tokenSecretId: 's',
            tokenRotation: { iamServerIdHeader: 'vault.internal' },
          },
          certificates: { ...UNCHECKED_TRUST_ANCHORS, ttl },
        },
      ])[0]!;

    expect(caDaysToExpiryThreshold(cluster('24h'))).toBe(30);
    expect(caDaysToExpiryThreshold(cluster('720h'))).toBe(90);
  });

  it('alarms on stuck rollouts, refused nodes, failed token and gossip rotations, function errors and throttles, and dead letters', () => {
    alarmOn(METRIC.rolloutStuck, { Threshold: 1 });
    alarmOn(METRIC.nodeRefused, { Threshold: 1 });
    alarmOn(METRIC.tokenRotationFailed, { Threshold: 1 });
    alarmOn(METRIC.gossipRotationFailed, { Threshold: 1 });
    for (const entry of ['RotateCerts', 'ManualOps', 'CommandStatus', 'InstanceState', 'RotateToken']) {
      for (const metricName of ['Errors', 'Throttles']) {
        template.hasResourceProperties('AWS::CloudWatch::Alarm', {
          Namespace: 'AWS/Lambda',
          MetricName: metricName,
          Dimensions: [{ Name: 'FunctionName', Value: { Ref: functionId(entry) } }],
          Threshold: 1,
        });
      }
    }
    const redriveTargets = ofType('AWS::SQS::Queue')
      .map(
        ([, queue]) => queue.Properties.RedrivePolicy as { deadLetterTargetArn: { 'Fn::GetAtt': [string] } },
      )
      .filter(Boolean)
      .map((policy) => policy.deadLetterTargetArn['Fn::GetAtt'][0]);
    const schedule = ofType('AWS::Scheduler::Schedule')[0]?.[1].Properties.Target as {
      DeadLetterConfig: { Arn: { 'Fn::GetAtt': [string] } };
    };
    for (const queue of [...redriveTargets, schedule.DeadLetterConfig.Arn['Fn::GetAtt'][0]]) {
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'AWS/SQS',
        MetricName: 'ApproximateNumberOfMessagesVisible',
        Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [queue, 'QueueName'] } }],
        Threshold: 1,
      });
    }
  });
});

/** cdk-nag AwsSolutions findings no acknowledgement covers. */
function unacknowledgedFindings(scope: App): string[] {
  const report = new AwsSolutionsChecks().validateScope(scope);
  return report.violations.map(
    (violation) =>
      `${violation.severity} ${violation.ruleName} at ${violation.violatingResources.map((r) => r.constructPath).join(', ')}`,
  );
}

/** Every acknowledgement under the scope, with the construct that carries it. */
function acknowledgementsOf(scope: IConstruct): { path: string; id: string; reason: unknown }[] {
  const found: { path: string; id: string; reason: unknown }[] = [];
  const visit = (construct: IConstruct) => {
    for (const entry of construct.node.metadata) {
      if (entry.type !== Validations.ACKNOWLEDGED_RULES_METADATA_KEY) continue;
      for (const [id, reason] of Object.entries(entry.data as Record<string, unknown>))
        found.push({ path: construct.node.path, id, reason });
    }
    for (const child of construct.node.children) visit(child);
  };
  visit(scope);
  return found;
}

function expectReasonedAcknowledgementsOf(rules: string[], scope: IConstruct): void {
  const acknowledgements = acknowledgementsOf(scope);
  expect(acknowledgements.length).toBeGreaterThan(0);
  for (const { path, id, reason } of acknowledgements) {
    expect(typeof reason === 'string' && reason.trim().length >= 40, `${id} at ${path}`).toBe(true);
  }
  const acknowledged = new Set(
    acknowledgements.map(({ id }) => id.replace(/^annotation::/i, '').replace(/\[.*$/, '')),
  );
  expect([...acknowledged].sort()).toEqual(rules);
}

describe('infra: cdk-nag AwsSolutions', () => {
  it('reports no unacknowledged error or warning', () => {
    expect(unacknowledgedFindings(app)).toEqual([]);
  });

  it('gives a reason for every acknowledgement, and acknowledges only the expected rules', () => {
    expectReasonedAcknowledgementsOf(
      ['AwsSolutions-IAM5', 'AwsSolutions-L1', 'AwsSolutions-SMG4', 'AwsSolutions-SQS3'],
      app,
    );
  });
});

describe('infra: gossip key custody', () => {
  const FUNCTION_ENTRIES = ['RotateCerts', 'ManualOps', 'CommandStatus', 'InstanceState', 'RotateToken'];
  const getAtt = (id: string) => ({ 'Fn::GetAtt': [id, 'Arn'] });

  it("keeps each cluster's gossip key in a secret under a key of its own, which no function role may read", () => {
    const secrets = secretsNamed('/gossip-key');

    expect(secrets).toHaveLength(1);
    for (const [secret, resource] of secrets) {
      expect(resource.Properties.KmsKeyId).toEqual(getAtt(gossipKeyId()));
      expect(resource.Properties.GenerateSecretString).toMatchObject({
        SecretStringTemplate: '{"notAGossipKey":true}',
      });
      const [, policy] = ofType('AWS::SecretsManager::ResourcePolicy').find(
        ([, candidate]) => JSON.stringify(candidate.Properties.SecretId) === JSON.stringify({ Ref: secret }),
      )!;
      const [deny] = (policy.Properties.ResourcePolicy as { Statement: Statement[] }).Statement;
      expect(deny).toMatchObject({ Effect: 'Deny', Action: 'secretsmanager:GetSecretValue' });
      const denied = (deny!.Condition as { ArnEquals: Record<string, unknown[]> }).ArnEquals[
        'aws:PrincipalArn'
      ];
      expect(JSON.stringify([...denied!].sort(byJson))).toBe(
        JSON.stringify(FUNCTION_ENTRIES.map((entry) => getAtt(roleId(entry))).sort(byJson)),
      );
      // The functions that run rollouts may write versions and move stages, and nothing else.
      const onSecret = identityStatements().filter(({ statement }) =>
        JSON.stringify(statement).includes(`"Ref":"${secret}"`),
      );
      expect(new Set(onSecret.flatMap(({ roles }) => roles))).toEqual(
        new Set(['RotateCerts', 'ManualOps', 'CommandStatus', 'InstanceState'].map(roleId)),
      );
      for (const { statement } of onSecret)
        expect(asList(statement.Action).sort()).toEqual(
          asList(statement.Action).includes('kms:GenerateDataKey')
            ? ['kms:GenerateDataKey']
            : [
                'secretsmanager:DescribeSecret',
                'secretsmanager:PutSecretValue',
                'secretsmanager:UpdateSecretVersionStage',
              ],
        );
    }
    const onKey = identityStatements().filter(({ statement }) =>
      JSON.stringify(statement).includes(gossipKeyId()),
    );
    expect(onKey.map(({ statement }) => statement.Action)).toEqual(onKey.map(() => 'kms:GenerateDataKey'));
  });

  it("outputs, per cluster, a policy for its servers' instance role that reads that gossip key and nothing else", () => {
    const [[secret]] = secretsNamed('/gossip-key') as [[string, Resource]];
    const [[policyId, policy]] = ofType('AWS::IAM::ManagedPolicy') as [[string, Resource]];

    expect(policy.Properties.Roles).toBeUndefined();
    expect((policy.Properties.PolicyDocument as { Statement: Statement[] }).Statement).toEqual([
      { Effect: 'Allow', Action: 'secretsmanager:GetSecretValue', Resource: { Ref: secret } },
      {
        Effect: 'Allow',
        Action: 'kms:Decrypt',
        Resource: getAtt(gossipKeyId()),
        Condition: {
          StringEquals: {
            'kms:ViaService': 'secretsmanager.eu-west-1.amazonaws.com',
            'kms:EncryptionContext:SecretARN': { Ref: secret },
          },
        },
      },
    ]);
    const outputs = template.toJSON().Outputs as Record<string, { Value: unknown }>;
    expect(Object.values(outputs).map((output) => output.Value)).toContainEqual({ Ref: policyId });
  });
});

describe('infra: VPC placement', () => {
  const NETWORK = {
    vpcId: 'vpc-0123456789abcdef0',
    availabilityZones: ['eu-west-1a', 'eu-west-1b'],
    privateSubnetIds: ['subnet-0123456789abcdef0', 'subnet-0fedcba9876543210'],
    vaultSecurityGroupId: 'sg-0123456789abcdef0',
  };
  const ENTRIES = ['RotateCerts', 'ManualOps', 'CommandStatus', 'InstanceState', 'RotateToken'];
  let vpc: ReturnType<typeof synthesize>;
  let securityGroupId: string;

  /** The second synthesis of the file: the same app with context networkFile. */
  beforeAll(() => {
    vpc = synthesize({
      networkFile: jsonFile('network.json', NETWORK),
      operatorRoleArns: OPERATOR_ROLES.join(','),
    });
    const groups = ofType('AWS::EC2::SecurityGroup', vpc.resources);
    expect(groups).toHaveLength(1);
    securityGroupId = groups[0]?.[0] ?? '';
  });

  /** A resolved value as a string: `<Ref>` and `<Id.Attribute>` for references, joins flattened. */
  const flat = (value: unknown): string => {
    if (typeof value === 'string') return value;
    const node = value as { Ref?: string; 'Fn::GetAtt'?: [string, string]; 'Fn::Join'?: [string, unknown[]] };
    if (node.Ref !== undefined) return `<${node.Ref}>`;
    if (node['Fn::GetAtt'] !== undefined) return `<${node['Fn::GetAtt'].join('.')}>`;
    if (node['Fn::Join'] !== undefined) return node['Fn::Join'][1].map(flat).join(node['Fn::Join'][0]);
    throw new Error(`unexpected ${JSON.stringify(value)}`);
  };
  const ec2Arn = (resource: string) => `arn:aws:ec2:eu-west-1:<AWS::AccountId>:${resource}`;

  it('without a network file, runs no function in a VPC and creates no EC2 resource or network permission', () => {
    for (const [id, fn] of ofType('AWS::Lambda::Function'))
      expect(fn.Properties.VpcConfig, id).toBeUndefined();
    expect(Object.values(resources).filter((resource) => resource.Type.startsWith('AWS::EC2::'))).toEqual([]);
    const ec2Actions = identityStatements().flatMap(({ statement }) =>
      asList(statement.Action).filter(
        (action) => action.startsWith('ec2:') && action !== 'ec2:DescribeInstances',
      ),
    );
    expect(ec2Actions).toEqual([]);
    expect(Object.keys(template.findOutputs('*'))).not.toContain('FunctionSecurityGroupId');
  });

  it('adds one security group and changes no other resource’s identity', () => {
    // A version's logical id hashes its function's configuration, the VPC placement included: in a VPC
    // the manual-operations alias points at a new version, as Lambda needs.
    const identities = (from: Record<string, Resource>) =>
      Object.entries(from)
        .filter(([, resource]) => resource.Type !== 'AWS::Lambda::Version')
        .map(([id]) => id);
    expect(ofType('AWS::Lambda::Version', vpc.resources)).toHaveLength(1);
    expect(identities(vpc.resources).sort()).toEqual([...identities(resources), securityGroupId].sort());
  });

  it('runs every function in the configured subnets with the functions’ security group', () => {
    for (const entry of ENTRIES) {
      const [, fn] = ofType('AWS::Lambda::Function', vpc.resources).find(([, candidate]) =>
        JSON.stringify(candidate.Properties.Role).includes(entry),
      ) ?? [undefined, undefined];
      expect(fn?.Properties.VpcConfig, entry).toEqual({
        SubnetIds: NETWORK.privateSubnetIds,
        SecurityGroupIds: [{ 'Fn::GetAtt': [securityGroupId, 'GroupId'] }],
      });
    }
    vpc.template.hasOutput('FunctionSecurityGroupId', {
      Value: { 'Fn::GetAtt': [securityGroupId, 'GroupId'] },
    });
  });

  it('lets the functions out only to HTTPS and to Vault’s port in the Vault security group, and in from nowhere', () => {
    const group = vpc.resources[securityGroupId]?.Properties ?? {};
    expect(group.VpcId).toBe(NETWORK.vpcId);
    expect(group.SecurityGroupIngress).toBeUndefined();
    expect(
      (group.SecurityGroupEgress as Record<string, unknown>[]).map(({ Description: _, ...rule }) => rule),
    ).toEqual([
      { CidrIp: '0.0.0.0/0', IpProtocol: 'tcp', FromPort: 443, ToPort: 443 },
      {
        DestinationSecurityGroupId: NETWORK.vaultSecurityGroupId,
        IpProtocol: 'tcp',
        FromPort: 8200,
        ToPort: 8200,
      },
    ]);
    // The Vault security group is referenced, not changed.
    vpc.template.resourceCountIs('AWS::EC2::SecurityGroupIngress', 0);
    vpc.template.resourceCountIs('AWS::EC2::SecurityGroupEgress', 0);
  });

  it('without a Vault security group, opens each Vault port of vault.address to 0.0.0.0/0 (443 once)', () => {
    expect(
      [
        'https://vault.internal:8200',
        'https://vault.internal',
        'https://vault.internal:443',
        'http://vault.internal',
      ].map(vaultPort),
    ).toEqual([8200, 443, 443, 80]);
    const stack = new Stack(new App({ builtinCloudFormationValidation: false }), 'Network', {
      env: { region: 'eu-west-1' },
    });
    const { vaultSecurityGroupId: _, ...withoutVaultGroup } = NETWORK;
    new FunctionNetwork(stack, 'Network', {
      network: withoutVaultGroup,
      vaultAddresses: [
        'https://vault-a.internal:8200',
        'https://vault-b.internal',
        'http://vault-c.internal',
      ],
    });
    const groups = Object.values(Template.fromStack(stack).findResources('AWS::EC2::SecurityGroup'));
    expect(groups).toHaveLength(1);
    expect(
      ((groups[0]?.Properties.SecurityGroupEgress ?? []) as Record<string, unknown>[]).map(
        ({ CidrIp, FromPort, ToPort }) => `${String(CidrIp)}:${String(FromPort)}-${String(ToPort)}`,
      ),
    ).toEqual(['0.0.0.0/0:443-443', '0.0.0.0/0:80-80', '0.0.0.0/0:8200-8200']);
  });

  it('grants the ENI actions inline: create only in the subnets with the security group, no AWS managed policy', () => {
    const statements = identityStatements(vpc.resources);
    for (const entry of ENTRIES) {
      const role = logicalIdOf('AWS::IAM::Role', (candidate) =>
        String(candidate.Properties.Description).startsWith(`${kebab(entry)}:`),
      );
      const onEc2 = statements
        .filter(({ roles }) => roles.includes(role))
        .flatMap(({ statement }) =>
          asList(statement.Action)
            .filter((action) => action.startsWith('ec2:') && action !== 'ec2:DescribeInstances')
            .map((action) => [action, asList(statement.Resource).map(flat).sort()] as const),
        );
      expect(Object.fromEntries(onEc2), entry).toEqual({
        'ec2:CreateNetworkInterface': [
          ec2Arn('network-interface/*'),
          ec2Arn(`security-group/<${securityGroupId}.GroupId>`),
          ...NETWORK.privateSubnetIds.map((subnet) => ec2Arn(`subnet/${subnet}`)),
        ].sort(),
        'ec2:DeleteNetworkInterface': [ec2Arn('network-interface/*')],
        'ec2:AssignPrivateIpAddresses': [ec2Arn('network-interface/*')],
        'ec2:UnassignPrivateIpAddresses': [ec2Arn('network-interface/*')],
        'ec2:DescribeNetworkInterfaces': ['*'],
        'ec2:DescribeSubnets': ['*'],
      });
      // The policy exists before the function, so Lambda may create the interfaces when it does.
      const fn = ofType('AWS::Lambda::Function', vpc.resources).find(([, candidate]) =>
        JSON.stringify(candidate.Properties.Role).includes(`"${role}"`),
      );
      const policy = ofType('AWS::IAM::Policy', vpc.resources).find(([, candidate]) =>
        JSON.stringify(candidate.Properties.Roles).includes(`"${role}"`),
      );
      const dependsOn = (fn?.[1] as { DependsOn?: string[] } | undefined)?.DependsOn;
      expect(policy).toBeDefined();
      expect(dependsOn).toContain(policy?.[0]);
    }
    for (const { roles, statement } of statements) {
      for (const action of asList(statement.Action))
        expect(action, `${action} on ${roles.join(', ')}`).not.toMatch(/(^\*$|:\*$)/);
    }
    for (const [, role] of ofType('AWS::IAM::Role', vpc.resources))
      expect(role.Properties.ManagedPolicyArns).toBeUndefined();
  });

  it('fails synthesis on a bad network file with the field named', () => {
    const cases: [unknown, RegExp][] = [
      [{ ...NETWORK, vpcId: 'vpc-123' }, /vpcId: must be a VPC id/],
      [{ ...NETWORK, privateSubnetIds: [] }, /privateSubnetIds: must name at least one subnet/],
      [
        { ...NETWORK, privateSubnetIds: ['subnet-0123456789abcdef0'] },
        /privateSubnetIds: must hold a multiple/,
      ],
      [
        { ...NETWORK, availabilityZones: ['eu-west-1a', 'eu-west-1'] },
        /availabilityZones\.1: must be an availability zone/,
      ],
      [
        { ...NETWORK, availabilityZones: ['us-east-1a', 'eu-west-1b'] },
        /availabilityZones\.0: must be a zone of the target region eu-west-1/,
      ],
      [{ ...NETWORK, vaultSecurityGroupId: 'vault' }, /vaultSecurityGroupId: must be a security group id/],
      [{ ...NETWORK, subnets: NETWORK.privateSubnetIds }, /subnets: unknown field/],
    ];
    for (const [network, message] of cases) {
      expect(() => loadNetworkFile(jsonFile('network.json', network), 'eu-west-1')).toThrow(
        expect.objectContaining({ issues: expect.arrayContaining([expect.stringMatching(message)]) }),
      );
    }
    const twice = {
      ...NETWORK,
      privateSubnetIds: [NETWORK.privateSubnetIds[0], NETWORK.privateSubnetIds[0]],
    };
    const bad = new App({
      context: {
        region: 'eu-west-1',
        networkFile: jsonFile('network.json', twice),
        'aws:cdk:bundling-stacks': [],
      },
    });
    expect(() => defineApp(bad)).toThrow(
      expect.objectContaining({ issues: ['privateSubnetIds.1: is listed twice'] }),
    );
  });

  it('leaves no cdk-nag finding unacknowledged, and reasons every acknowledgement', () => {
    expect(unacknowledgedFindings(vpc.app)).toEqual([]);
    expectReasonedAcknowledgementsOf(
      ['AwsSolutions-IAM5', 'AwsSolutions-L1', 'AwsSolutions-SMG4', 'AwsSolutions-SQS3'],
      vpc.app,
    );
  });
});
