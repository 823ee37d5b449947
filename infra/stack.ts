import {
  type CfnElement,
  CfnOutput,
  Duration,
  Stack,
  type StackProps,
  Token,
  Validations,
} from 'aws-cdk-lib';
import { AttributeType, TableEncryptionV2, TableV2 } from 'aws-cdk-lib/aws-dynamodb';
import { EventBus } from 'aws-cdk-lib/aws-events';
import {
  AnyPrincipal,
  ArnPrincipal,
  Effect,
  PolicyDocument,
  PolicyStatement,
  Role,
  ServicePrincipal,
} from 'aws-cdk-lib/aws-iam';
import { ViaServicePrincipal } from 'aws-cdk-lib/aws-kms';
import { Alias, FunctionUrlAuthType } from 'aws-cdk-lib/aws-lambda';
import { Schedule, ScheduleExpression, ScheduleTargetInput } from 'aws-cdk-lib/aws-scheduler';
import { LambdaInvoke } from 'aws-cdk-lib/aws-scheduler-targets';
import { ParameterTier, StringParameter } from 'aws-cdk-lib/aws-ssm';
import type { Construct } from 'constructs';
import { MAX_REGISTRATION_CHECKS } from '../functions/instance-state';
import type { ClusterConfig, ClusterConfigInput } from '../shared/config';
import { ConfigError } from '../shared/errors';
import { SERVICE_NAME } from '../shared/observability';
import {
  clusterParameterName,
  type Deployment,
  deploymentParameterName,
} from '../shared/preflight/deployment';
import type { NetworkConfig } from './config';
import { DeadLetterQueue } from './constructs/dead-letter-queue';
import { EncryptionKey } from './constructs/encryption-key';
import { EventQueue } from './constructs/event-queue';
import { FunctionNetwork } from './constructs/function-network';
import { GossipKeySecrets, gossipKeySecretName } from './constructs/gossip-key-secrets';
import { Monitoring } from './constructs/monitoring';
import { NodeCommands } from './constructs/node-commands';
import { RotatorFunction, TASK_ROOT } from './constructs/rotator-function';
import { tokenSecretName, VaultTokenSecrets } from './constructs/vault-token-secrets';

export interface NomadRotatorStackProps extends StackProps {
  /** The clusters as the operator wrote them; passed to the functions with the stack's token secrets. */
  clusterInputs: readonly ClusterConfigInput[];
  /** The same clusters validated, with defaults applied. */
  clusters: readonly ClusterConfig[];
  /** The VPC the functions run in (a private Vault); without it they run outside any VPC. */
  network?: NetworkConfig;
  /** The IAM roles that may invoke the manual-operations function URL; none when empty. */
  operatorRoleArns?: readonly string[];
}

/**
 * nomad-rotator on AWS: the state table, the outcome event bus, the node-side SSM documents, the five
 * functions and what triggers them (the 5-minute schedule, SSM and EC2 events through queues, the
 * Vault token secrets' rotation, the operators' signed requests to the manual-operations URL), alarms
 * and a dashboard. One customer-managed key encrypts it all. With a network, the functions run in that
 * VPC with one security group of their own.
 */
export class NomadRotatorStack extends Stack {
  /** The clusters as the functions read them (CLUSTERS_CONFIG_FILE), token secrets named by the stack. */
  readonly clustersConfig: string;

  constructor(scope: Construct, id: string, props: NomadRotatorStackProps) {
    super(scope, id, props);
    if (Token.isUnresolved(this.region)) {
      throw new ConfigError('NomadRotatorStack needs an explicit region', [
        'env.region: a CMK-encrypted TableV2 cannot be rendered region-agnostic',
      ]);
    }
    // A file in each bundle rather than an environment variable: Lambda's 4 KB environment holds only
    // a cluster or two once vault.caBundlePem is set.
    const deployedClusters = props.clusterInputs.map((cluster) => ({
      ...cluster,
      vault: { ...cluster.vault, tokenSecretId: tokenSecretName(this, cluster.name) },
      gossip: { ...cluster.gossip, secretId: gossipKeySecretName(this, cluster.name) },
    }));
    this.clustersConfig = JSON.stringify(deployedClusters);
    const files = { [CLUSTERS_FILE]: this.clustersConfig };
    const encryption = new EncryptionKey(this, 'Encryption');
    const { key } = encryption;

    // Single-table design (pk/sk strings); audit items carry expiresAt in epoch seconds for TTL.
    const table = new TableV2(this, 'StateTable', {
      partitionKey: { name: 'pk', type: AttributeType.STRING },
      sortKey: { name: 'sk', type: AttributeType.STRING },
      timeToLiveAttribute: 'expiresAt',
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      deletionProtection: true,
      encryption: TableEncryptionV2.customerManagedKey(key),
    });

    const bus = new EventBus(this, 'EventBus', {
      description: `${SERVICE_NAME} outcome events: CertificateRotated, CertificatePushFailed, NodeRetired, Rollout*, EmergencyReissue*`,
      kmsKey: key,
    });

    const commands = new NodeCommands(this, 'NodeCommands', { clusters: props.clusters });

    // Events EventBridge could not deliver to a queue and ticks the scheduler could not deliver.
    const deliveryDeadLetters = new DeadLetterQueue(this, 'DeliveryDeadLetters', key);

    const environment = {
      CLUSTERS_CONFIG_FILE: `${TASK_ROOT}/${CLUSTERS_FILE}`,
      STATE_TABLE_NAME: table.tableName,
      EVENT_BUS_NAME: bus.eventBusName,
      PREPARE_DOCUMENT_NAME: commands.documentNames.prepare,
      INSTALL_DOCUMENT_NAME: commands.documentNames.install,
      GOSSIP_DOCUMENT_NAME: commands.documentNames.gossip,
      POWERTOOLS_SERVICE_NAME: SERVICE_NAME,
    };

    const network =
      props.network === undefined
        ? undefined
        : new FunctionNetwork(this, 'Network', {
            network: props.network,
            vaultAddresses: props.clusters.map((cluster) => cluster.vault.address),
          });

    const rotateCerts = new RotatorFunction(this, 'RotateCerts', {
      entry: 'rotate-certs',
      description: 'Scheduled tick: sync inventory, reconcile commands, continue or plan rollouts',
      key,
      environment,
      files,
      network,
      timeout: Duration.minutes(5),
      // One tick at a time keeps SSM's request rate bounded; the cluster lease already keeps two ticks
      // from planning at once. Reserved for the tick alone: manual requests run in manual-ops, so no
      // burst of them can take this slot.
      reservedConcurrentExecutions: 1,
    });
    const manualOps = new RotatorFunction(this, 'ManualOps', {
      entry: 'manual-ops',
      description: 'Operator plan/rotate/reissue through its IAM-authenticated function URL',
      key,
      environment,
      files,
      network,
      timeout: Duration.minutes(5),
      // Enough for a plan beside a rotation; a burst beyond it is throttled (429) instead of taking
      // account concurrency or SSM's request rate from the tick and the event handlers.
      reservedConcurrentExecutions: MANUAL_OPS_CONCURRENCY,
    });
    const commandStatus = new RotatorFunction(this, 'CommandStatus', {
      entry: 'command-status',
      description: 'SSM invocation results: sign CSRs with Vault, send installs, record outcomes',
      key,
      environment,
      files,
      network,
      timeout: Duration.minutes(2),
    });
    const instanceState = new RotatorFunction(this, 'InstanceState', {
      entry: 'instance-state',
      description: 'EC2 running/terminated: first certificates for new nodes, revoke terminated ones',
      key,
      environment,
      files,
      network,
      timeout: Duration.minutes(1),
    });
    const rotateToken = new RotatorFunction(this, 'RotateToken', {
      entry: 'rotate-token',
      description: 'Secrets Manager rotation of the periodic tls-policy Vault token of every cluster',
      key,
      environment,
      files,
      network,
      timeout: Duration.minutes(1),
    });

    const tokens = new VaultTokenSecrets(this, 'VaultTokens', {
      clusters: props.clusters,
      encryption,
      rotation: rotateToken,
    });

    const issuers = [rotateCerts, manualOps, commandStatus, instanceState];
    const gossipKeys = new GossipKeySecrets(this, 'GossipKeys', { clusters: props.clusters });
    for (const fn of [...issuers, rotateToken]) gossipKeys.neverRead(fn.role);
    // The functions that run rollouts run the gossip plan too: staging keys, never reading them.
    for (const issuer of issuers) gossipKeys.grantStaging(issuer.role);
    for (const issuer of issuers) {
      table.grant(
        issuer.role,
        'dynamodb:GetItem',
        'dynamodb:BatchGetItem',
        'dynamodb:BatchWriteItem',
        'dynamodb:PutItem',
        'dynamodb:UpdateItem',
        'dynamodb:DeleteItem',
        'dynamodb:Query',
      );
      key.grant(
        new ViaServicePrincipal(`dynamodb.${this.region}.amazonaws.com`, issuer.role),
        'kms:Decrypt',
        'kms:Encrypt',
        'kms:GenerateDataKey',
      );
      bus.grantPutEventsTo(issuer.role);
      tokens.grantReadToken(issuer.role);
      commands.grantRun(issuer.role);
    }
    // Item writes only by the functions: anyone else's PutItem or UpdateItem could plant state (a node
    // record, an attempt) whatever its own policies allow. Reads and table management stay as IAM
    // grants them, so the deploying role still updates and the operator CLI still reads the table.
    table.resourcePolicy = new PolicyDocument({
      statements: [
        new PolicyStatement({
          sid: 'ItemWritesOnlyByTheFunctions',
          effect: Effect.DENY,
          principals: [new AnyPrincipal()],
          actions: TABLE_WRITE_ACTIONS,
          // The table's own ARN would make the table depend on itself.
          resources: ['*'],
          conditions: { ArnNotEquals: { 'aws:PrincipalArn': issuers.map((issuer) => issuer.role.roleArn) } },
        }),
      ],
    });

    const operatorUrl = this.#operatorUrl(manualOps, props.operatorRoleArns ?? []);

    const commandEvents = new EventQueue(this, 'CommandEvents', {
      description: "SSM command status changes of the rotator's documents",
      eventPattern: {
        source: ['aws.ssm'],
        // One event per command and status rather than per node: command-status reads a command's
        // results with one listing once SSM has given it a final status.
        detailType: ['EC2 Command Status-change Notification'],
        detail: { 'document-name': Object.values(commands.documentNames) },
      },
      consumer: commandStatus.function,
      maxReceiveCount: 5,
      key,
      deliveryDeadLetterQueue: deliveryDeadLetters,
    });
    const instanceEvents = new EventQueue(this, 'InstanceEvents', {
      description: 'EC2 instances entering running or terminated',
      eventPattern: {
        source: ['aws.ec2'],
        detailType: ['EC2 Instance State-change Notification'],
        detail: { state: ['running', 'terminated'] },
      },
      consumer: instanceState.function,
      // instance-state retries a `running` message until the node registers with SSM and drops it after
      // MAX_REGISTRATION_CHECKS receives; only messages failing beyond that are dead letters.
      maxReceiveCount: MAX_REGISTRATION_CHECKS + 5,
      key,
      deliveryDeadLetterQueue: deliveryDeadLetters,
    });

    const schedulerRole = new Role(this, 'TickRole', {
      assumedBy: new ServicePrincipal('scheduler.amazonaws.com', {
        conditions: {
          StringEquals: {
            'aws:SourceAccount': this.account,
            'aws:SourceArn': this.formatArn({
              service: 'scheduler',
              resource: 'schedule-group',
              resourceName: 'default',
            }),
          },
        },
      }),
      description: 'EventBridge Scheduler: invoke rotate-certs every 5 minutes, dead-letter failed ticks',
    });
    // The target grants sqs:SendMessage on the dead-letter queue but not the key that encrypts it.
    key.grant(schedulerRole, 'kms:GenerateDataKey');
    Validations.of(schedulerRole).acknowledge({
      id: `AwsSolutions-IAM5[Resource::<${this.getLogicalId(rotateCerts.function.node.defaultChild as CfnElement)}.Arn>:*]`,
      reason:
        'Added by the scheduler target (grantInvoke): the same function’s versions and aliases; the role can invoke nothing else.',
    });
    const tick = new Schedule(this, 'Tick', {
      description: 'Every 5 minutes: rotate-certs syncs inventory, reconciles commands, plans rollouts',
      schedule: ScheduleExpression.rate(Duration.minutes(5)),
      key,
      target: new LambdaInvoke(rotateCerts.function, {
        role: schedulerRole,
        input: ScheduleTargetInput.fromObject({ tick: true }),
        deadLetterQueue: deliveryDeadLetters,
        retryAttempts: 2,
        // A tick older than the next one is worthless.
        maxEventAge: Duration.minutes(4),
      }),
    });
    // A failed tick is not retried by Lambda either: the next one comes in 5 minutes and the Errors
    // alarm reports the failure.
    rotateCerts.function.configureAsyncInvoke({ retryAttempts: 0, maxEventAge: Duration.minutes(4) });

    const monitoring = new Monitoring(this, 'Monitoring', {
      key,
      clusters: props.clusters,
      functions: {
        'rotate-certs': rotateCerts.function,
        'manual-ops': manualOps.function,
        'command-status': commandStatus.function,
        'instance-state': instanceState.function,
        'rotate-token': rotateToken.function,
      },
      deadLetterQueues: {
        'command-events': commandEvents.deadLetterQueue,
        'instance-events': instanceEvents.deadLetterQueue,
        'event-delivery': deliveryDeadLetters,
      },
    });

    this.#doctorParameters(deployedClusters, {
      documents: commands.documentNames,
      tickSchedule: { name: tick.scheduleName, group: 'default' },
      eventRules: [commandEvents.rule.ruleName, instanceEvents.rule.ruleName],
      deadLetterQueues: {
        'command-events': commandEvents.deadLetterQueue.queueUrl,
        'instance-events': instanceEvents.deadLetterQueue.queueUrl,
        'event-delivery': deliveryDeadLetters.queueUrl,
      },
      alarmNamePrefix: `${this.stackName}-`,
    });

    new CfnOutput(this, 'StateTableName', {
      value: table.tableName,
      description: 'State table (nomad-rotator status --table, or NOMAD_ROTATOR_TABLE)',
    });
    new CfnOutput(this, 'EventBusName', {
      value: bus.eventBusName,
      description: 'Custom bus with the outcome events (source nomad-rotator)',
    });
    new CfnOutput(this, 'RotateCertsFunctionName', { value: rotateCerts.function.functionName });
    new CfnOutput(this, 'ManualOpsUrl', {
      value: operatorUrl.url,
      description:
        'Manual plan/rotate/reissue, SigV4-signed by an operator role (nomad-rotator --url, or NOMAD_ROTATOR_URL)',
    });
    new CfnOutput(this, 'ManualOpsFunctionName', { value: manualOps.function.functionName });
    new CfnOutput(this, 'CommandStatusFunctionName', { value: commandStatus.function.functionName });
    new CfnOutput(this, 'InstanceStateFunctionName', { value: instanceState.function.functionName });
    new CfnOutput(this, 'RotateTokenFunctionName', { value: rotateToken.function.functionName });
    new CfnOutput(this, 'RotateTokenRoleArn', {
      value: rotateToken.role.roleArn,
      description:
        'The only principal Vault may accept as the admin role: list it in adminRoleArns of the spec given to nomad-rotator vault-bootstrap --spec',
    });
    new CfnOutput(this, 'AlarmTopicArn', {
      value: monitoring.topic.topicArn,
      description: 'Every alarm notifies this topic (KMS-encrypted): subscribe the on-call here',
    });
    new CfnOutput(this, 'DashboardName', { value: monitoring.dashboard.dashboardName });
    if (network !== undefined) {
      new CfnOutput(this, 'FunctionSecurityGroupId', {
        value: network.securityGroup.securityGroupId,
        description:
          'Security group of every function: the Vault servers must allow ingress from it on the Vault port',
      });
    }
    for (const [name, secret] of tokens.secrets) {
      new CfnOutput(this, `VaultTokenSecret${outputId(name)}`, {
        value: secret.secretArn,
        description: `Vault token secret of ${name}; after vault-bootstrap, mint the first token with aws secretsmanager rotate-secret --secret-id <this>`,
      });
    }
    for (const [name, { secret, serverReadPolicy }] of gossipKeys.clusters) {
      new CfnOutput(this, `GossipKeySecret${outputId(name)}`, {
        value: secret.secretArn,
        description: `Gossip key secret of ${name}: only its servers read it`,
      });
      new CfnOutput(this, `GossipKeyServerPolicy${outputId(name)}`, {
        value: serverReadPolicy.managedPolicyArn,
        description: `Attach to the instance role of ${name}'s Nomad servers (never the clients'): reads the gossip key and nothing else`,
      });
    }
  }

  /**
   * What `nomad-rotator doctor` reads with nothing but the stack's name: the stack's generated names in
   * one parameter, and each cluster as the functions read it in one of its own (none holds a secret;
   * the token secret is named, never copied). A cluster's parameter may take the advanced tier's
   * 8 KB when its CA bundle needs it.
   */
  #doctorParameters(clusters: readonly ClusterConfigInput[], deployment: Deployment): void {
    new StringParameter(this, 'DoctorDeployment', {
      parameterName: deploymentParameterName(this.stackName),
      description:
        'nomad-rotator doctor: the names of the stack’s documents, schedule, rules, queues and alarms',
      stringValue: this.toJsonString(deployment),
    });
    for (const cluster of clusters) {
      const value = JSON.stringify(cluster);
      if (Buffer.byteLength(value) > ADVANCED_PARAMETER_BYTES)
        throw new ConfigError(`cluster ${cluster.name} is too large for its doctor parameter`, [
          `${Buffer.byteLength(value)} bytes of configuration, over SSM's ${ADVANCED_PARAMETER_BYTES}: shorten vault.caBundlePem`,
        ]);
      new StringParameter(this, `DoctorCluster${outputId(cluster.name)}`, {
        parameterName: clusterParameterName(this.stackName, cluster.name),
        description: `nomad-rotator doctor: cluster ${cluster.name} as the functions read it`,
        stringValue: value,
        tier: ParameterTier.INTELLIGENT_TIERING,
      });
    }
  }

  /**
   * The manual-operations function URL (AWS_IAM, on an alias): Lambda authenticates the SigV4-signed
   * request and hands the handler the caller's identity (requestContext.authorizer.iam), which a direct
   * Invoke never carries. Only the operator roles are allowed, and only through the URL: both
   * permissions a URL call needs (InvokeFunctionUrl with AuthType AWS_IAM, and InvokeFunction with
   * lambda:InvokedViaFunctionUrl), none for a direct Invoke.
   */
  #operatorUrl(manualOps: RotatorFunction, operatorRoleArns: readonly string[]) {
    const alias = new Alias(this, 'ManualOpsOperatorAlias', {
      aliasName: OPERATOR_ALIAS,
      version: manualOps.function.currentVersion,
      description: 'What operators invoke, through its function URL only',
    });
    operatorRoleArns.forEach((roleArn, index) => {
      const principal = new ArnPrincipal(roleArn);
      alias.addPermission(`OperatorUrl${index}`, {
        principal,
        action: 'lambda:InvokeFunctionUrl',
        functionUrlAuthType: FunctionUrlAuthType.AWS_IAM,
      });
      alias.addPermission(`OperatorInvokeViaUrl${index}`, {
        principal,
        action: 'lambda:InvokeFunction',
        invokedViaFunctionUrl: true,
      });
    });
    return alias.addFunctionUrl({ authType: FunctionUrlAuthType.AWS_IAM });
  }
}

const CLUSTERS_FILE = 'clusters.json';

/** The largest value of an advanced-tier SSM parameter. */
const ADVANCED_PARAMETER_BYTES = 8192;

/** Concurrent manual requests; the tick has its own reserved execution. */
export const MANUAL_OPS_CONCURRENCY = 2;

/** The alias whose function URL the operators call; its resource policy names them. */
export const OPERATOR_ALIAS = 'operator';

/** Every DynamoDB action that writes items (PartiQL included); none of them manages the table. */
export const TABLE_WRITE_ACTIONS = [
  'dynamodb:PutItem',
  'dynamodb:UpdateItem',
  'dynamodb:DeleteItem',
  'dynamodb:BatchWriteItem',
  'dynamodb:PartiQLInsert',
  'dynamodb:PartiQLUpdate',
  'dynamodb:PartiQLDelete',
];

/** A cluster name as part of an output's logical id (letters and digits only). */
function outputId(name: string): string {
  return name
    .split('-')
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
    .join('');
}
