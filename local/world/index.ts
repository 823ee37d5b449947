import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateSecretCommand, RotateSecretCommand } from '@aws-sdk/client-secrets-manager';
import { PutParameterCommand } from '@aws-sdk/client-ssm';
import { commandStatusHandler } from '../../functions/command-status';
import { instanceStateHandler, MAX_REGISTRATION_CHECKS } from '../../functions/instance-state';
import { manualOpsHandler } from '../../functions/manual-ops';
import { rotateCertsHandler } from '../../functions/rotate-certs';
import { rotateTokenHandler } from '../../functions/rotate-token';
import { bootstrapVault } from '../../ops/vault-bootstrap/apply';
import { type ClusterConfig, type ClusterConfigInput, parseClusterConfig } from '../../shared/config';
import { commandDocument } from '../../shared/documents';
import { rootFingerprints } from '../../shared/documents/fingerprints';
import {
  clusterParameterName,
  type Deployment,
  deploymentParameterName,
} from '../../shared/preflight/deployment';
import { type AwsClients, Runtime, type ServiceConfig } from '../../shared/runtime';
import { VaultClient, type VaultResponse } from '../../shared/vault/client';
import { startCloudWatchEmulator } from '../aws/cloudwatch';
import { createStateTable, startDynamo } from '../aws/dynamodb';
import { startEc2Emulator } from '../aws/ec2';
import { startEventBridgeEmulator } from '../aws/eventbridge';
import { startQueue } from '../aws/queue';
import { startSchedulerEmulator } from '../aws/scheduler';
import { startSecretsManagerEmulator } from '../aws/secrets-manager';
import { startSqsEmulator } from '../aws/sqs';
import { startSsmEmulator } from '../aws/ssm';
import { OffsetClock } from '../clock';
import type { Fleet, ManagedNode } from '../fleet';
import { createNodeFleet } from '../node/fleet';
import { createSimulatedFleet, type SimulatedFleetOptions } from '../sim/fleet';
import { startVaultEmulator } from '../vault';
import { type AwsPrincipal, invocationContext, LambdaEmulator } from './lambda';
import { RecordingLogger, RecordingTelemetry } from './recording';

export const ACCOUNT = '123456789012';
/** The rotate-token function's identity: the only principal Vault's admin role accepts. */
export const ROTATE_TOKEN_KEY_ID = 'ASIAWORLDROTATETOKEN';
export const ROTATE_TOKEN_ROLE_ARN = `arn:aws:iam::${ACCOUNT}:role/nomad-rotator-rotate-token`;
/** The world Vault's iam_server_id_header_value: every admin login must carry and sign it. */
export const VAULT_SERVER_ID = 'vault.world.local';
export const FUNCTIONS = {
  rotateCerts: 'nomad-rotator-rotate-certs',
  manualOps: 'nomad-rotator-manual-ops',
  rotateToken: 'nomad-rotator-rotate-token',
} as const;
/** The operator role named at deploy (operatorRoleArns), and a session of it: what the CLI signs as. */
export const OPERATOR: AwsPrincipal = {
  accessKeyId: 'ASIAWORLDOPERATOR',
  secretAccessKey: 'world-operator-secret',
  arn: `arn:aws:sts::${ACCOUNT}:assumed-role/nomad-operator/operator`,
  roleArn: `arn:aws:iam::${ACCOUNT}:role/nomad-operator`,
  accountId: ACCOUNT,
  userId: 'AROAWORLDOPERATOR00000:operator',
};
/** A role of the same account that the deployment did not name: it may not invoke manual-ops. */
export const DEVELOPER: AwsPrincipal = {
  accessKeyId: 'ASIAWORLDDEVELOPER',
  secretAccessKey: 'world-developer-secret',
  arn: `arn:aws:sts::${ACCOUNT}:assumed-role/developer/dev`,
  roleArn: `arn:aws:iam::${ACCOUNT}:role/developer`,
  accountId: ACCOUNT,
  userId: 'AROAWORLDDEVELOPER0000:dev',
};
/** As deployed (infra/stack.ts): manual-ops runs at most two requests at once, for five minutes each. */
const MANUAL_OPS = { reservedConcurrency: 2, timeoutMs: 300_000 } as const;
export const DOCUMENT_NAMES = {
  prepare: 'NomadRotator-Prepare',
  install: 'NomadRotator-Install',
  gossip: 'NomadRotator-Gossip',
} as const;

/** The stack's name in the world: what its parameters and alarms are named under. */
export const STACK_NAME = 'NomadRotator';
export const EVENT_RULES = {
  commandEvents: 'NomadRotator-CommandEventsRule',
  instanceEvents: 'NomadRotator-InstanceEventsRule',
} as const;
export const TICK_SCHEDULE = { name: 'NomadRotator-Tick', group: 'default' } as const;

/** The alarms infra/constructs/monitoring.ts defines for one cluster, the five functions and the dead-letter queues. */
function stackAlarmNames(cluster: string, deadLetterQueues: readonly string[]): string[] {
  return [
    ...[
      'PushFailed',
      'MinHoursToExpiry',
      'RolloutStuck',
      'NodeRefused',
      'CaDaysToExpiry',
      'GossipRotationFailed',
      'TokenRotationFailed',
    ].map((alarm) => `${cluster}-${alarm}`),
    ...['rotate-certs', 'manual-ops', 'command-status', 'instance-state', 'rotate-token'].flatMap((fn) => [
      `${fn}-Errors`,
      `${fn}-Throttles`,
    ]),
    ...deadLetterQueues.map((queue) => `${queue}-DeadLetters`),
  ].map((alarm) => `${STACK_NAME}-${alarm}`);
}

export interface WorldOptions {
  servers?: number;
  clients?: number;
  /** Where node sandboxes live; a fresh temporary directory when omitted. */
  baseDir?: string;
  cluster?: Partial<Omit<ClusterConfigInput, 'gossip'>> & {
    gossip?: Partial<NonNullable<ClusterConfigInput['gossip']>>;
  };
  echo?: (line: string) => void;
  /**
   * The servers run Nomad ACLs: keyring calls need a token with agent:write, which the world keeps
   * in a secret of its own (`gossip.aclTokenSecretId`) for the servers to read.
   */
  nomadAcls?: boolean;
  /** false: the servers gossip in clear, as a cluster before `enable-gossip` (default true). */
  gossipEncryption?: boolean;
  /**
   * A fleet of simulated nodes (local/sim) instead of node sandboxes: thousands of nodes answered
   * in-process behind the same SSM API, for scale. `servers` and `clients` then count them.
   */
  simulated?: Omit<
    SimulatedFleetOptions,
    'servers' | 'clients' | 'clusterName' | 'region' | 'documents' | 'clock'
  >;
}

export type World = Awaited<ReturnType<typeof startWorld>>;

/**
 * One call builds the whole local world: Vault (bootstrapped as an operator would), DynamoDB, SSM,
 * Secrets Manager, EventBridge with the production rules, the queues in front of the event-driven
 * functions, a Lambda Invoke endpoint, and a fleet of node sandboxes. The functions are the real
 * handlers; only the clients' endpoints differ from AWS.
 */
export async function startWorld(options: WorldOptions = {}) {
  const stops: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const step of stops.reverse()) await step().catch(() => {});
  };
  try {
    const clock = new OffsetClock();
    const logger = new RecordingLogger((line) => {
      if (line.level === 'WARN' || line.level === 'ERROR') options.echo?.(`${line.level} ${line.message}`);
    });
    const telemetry = new RecordingTelemetry();
    const baseDir = options.baseDir ?? (await mkdtemp(join(tmpdir(), 'nomad-rotator-world-')));
    await mkdir(baseDir, { recursive: true });
    if (options.baseDir === undefined) stops.push(() => rm(baseDir, { recursive: true, force: true }));

    const vault = await startVaultEmulator({
      tls: true,
      awsIdentities: {
        [ROTATE_TOKEN_KEY_ID]: `arn:aws:sts::${ACCOUNT}:assumed-role/nomad-rotator-rotate-token/world`,
      },
    });
    stops.push(() => vault.stop());
    const operatorVault = new VaultClient({
      address: vault.address,
      caBundlePem: vault.caPem!,
      timeoutMs: 5_000,
      attempts: 1,
    });
    const region = options.cluster?.region ?? 'global';
    const bootstrapSpec = {
      region,
      adminRoleArns: [ROTATE_TOKEN_ROLE_ARN],
      iamServerIdHeader: VAULT_SERVER_ID,
    };
    // PKI first: the cluster config takes its trusted root from the chain; its token role comes below.
    await bootstrapVault(operatorVault, vault.rootToken, bootstrapSpec);
    // The operator's step after bootstrap: read the chain once, over the pinned connection, and put
    // its root's fingerprint in the cluster config, from where the stack writes it into the install.
    const chain = await operatorVault.read<{ data?: { certificate?: string } }>('pki_int/cert/ca_chain', '');
    const trustedRootFingerprints = rootFingerprints(chain.data?.certificate ?? '');

    const dynamo = await startDynamo();
    stops.push(() => dynamo.stop());
    const secrets = await startSecretsManagerEmulator({});
    stops.push(() => secrets.stop());
    const events = await startEventBridgeEmulator();
    stops.push(() => events.stop());

    const clusterName = options.cluster?.name ?? 'demo';
    // A Nomad ACL token's SecretID, as `nomad acl token create` prints it. A secret: never log it.
    const nomadToken = options.nomadAcls ? randomUUID() : undefined;
    const servers = options.servers ?? 3;
    const simulated =
      options.simulated === undefined
        ? undefined
        : createSimulatedFleet({
            ...options.simulated,
            servers,
            clients: options.clients ?? 3,
            clusterName,
            region,
            documents: DOCUMENT_NAMES,
            clock,
          });
    const fleet = await createNodeFleet({
      baseDir,
      servers: simulated === undefined ? servers : 0,
      clients: simulated === undefined ? (options.clients ?? 3) : 0,
      clusterName,
      region,
      restartDelayMs: 500,
      secretsManagerEndpoint: secrets.endpoint,
      ...(nomadToken === undefined
        ? {}
        : { aclTokens: { [nomadToken]: ['agent-write', 'operator-write'] as const } }),
      ...(options.gossipEncryption === false ? { gossipEncryption: false } : {}),
    });
    stops.push(() => fleet.stop());
    // Provisioning as an operator would do it: each role's instances launched into its Auto Scaling group.
    const ec2 = await startEc2Emulator();
    stops.push(() => ec2.stop());
    const autoScalingGroups = { server: `${clusterName}-servers`, client: `${clusterName}-clients` } as const;
    // Each instance its own VPC address: what its SSM agent reports (the loopback it runs on here) is
    // never what the server certificates carry.
    let launches = 0;
    const launched = <Node extends ManagedNode>(node: Node): Node => {
      launches += 1;
      ec2.launch({
        instanceId: node.instanceId,
        privateIpAddress: `10.0.${Math.floor(launches / 250)}.${(launches % 250) + 4}`,
        autoScalingGroup:
          node.tags['nomad-role'] === 'server' ? autoScalingGroups.server : autoScalingGroups.client,
        tags: { ...node.tags },
      });
      return node;
    };
    for (const node of fleet.nodes()) launched(node);
    for (const node of simulated?.nodes() ?? []) launched(node);
    const managed: Fleet = {
      nodes: () => [...fleet.nodes(), ...(simulated?.nodes() ?? [])],
      node: (instanceId) => fleet.node(instanceId) ?? simulated?.node(instanceId),
    };
    const ssm = await startSsmEmulator({ fleet: managed, events: (event) => events.putAwsEvent(event) });
    stops.push(() => ssm.stop());

    const clients: AwsClients = {
      dynamodb: dynamo.client(),
      ec2: ec2.client(),
      ssm: ssm.client(),
      eventBridge: events.client(),
      secretsManager: secrets.client(),
    };
    const tableName = 'nomad-rotator-state';
    await createStateTable(clients.dynamodb, tableName);

    // The operator's one manual step: seed the token secret with a tls-policy token minted by root.
    const seed = await operatorVault.write<VaultResponse>(
      'auth/token/create-orphan',
      { policies: ['tls-policy'], period: '24h', display_name: 'seed' },
      vault.rootToken,
    );
    const tokenSecret = await clients.secretsManager.send(
      new CreateSecretCommand({
        Name: `nomad-rotator/${clusterName}/vault-token`,
        SecretString: JSON.stringify({ token: seed.auth!.client_token, accessor: seed.auth!.accessor }),
      }),
    );

    // As the stack creates it: a placeholder no server can mistake for a key, until a rotation stages one.
    const gossipSecret = await clients.secretsManager.send(
      new CreateSecretCommand({
        Name: `nomad-rotator/${clusterName}/gossip-key`,
        SecretString: JSON.stringify({ notAGossipKey: true }),
      }),
    );

    const nomadTokenSecret =
      nomadToken === undefined
        ? undefined
        : await clients.secretsManager.send(
            new CreateSecretCommand({
              Name: `nomad-rotator/${clusterName}/nomad-token`,
              SecretString: nomadToken,
            }),
          );

    // The cluster as the stack deploys it (the doctor reads it back from its parameter, as on AWS).
    const clusterInput: ClusterConfigInput = {
      name: clusterName,
      region,
      inventory: {
        servers: { autoScalingGroups: [autoScalingGroups.server] },
        clients: { autoScalingGroups: [autoScalingGroups.client] },
        serverSet: { count: servers },
      },
      ...options.cluster,
      certificates: { trustedRootFingerprints, ...options.cluster?.certificates },
      vault: {
        address: vault.address,
        caBundlePem: vault.caPem!,
        tokenSecretId: tokenSecret.ARN!,
        ...options.cluster?.vault,
        tokenRotation: { iamServerIdHeader: VAULT_SERVER_ID, ...options.cluster?.vault?.tokenRotation },
      },
      rollout: { serverHealthTimeoutSeconds: 20, backoffBaseSeconds: 60, ...options.cluster?.rollout },
      // One second is enough for the stand-in to exit on a failed reload; Nomad's default below is 3.
      nomad: { settleSeconds: 1, ...options.cluster?.nomad },
      gossip: {
        secretId: gossipSecret.ARN!,
        // Only /opt is the node's own in a sandbox (the default is under /etc/nomad.d).
        encryptConfigPath: '/opt/nomad/config/gossip-encrypt.hcl',
        backoffBaseSeconds: 5,
        backoffMaxSeconds: 20,
        // A world's rotations run when a test or the demo asks, so certificate tests see only theirs.
        rotateEvery: 'off',
        ...(nomadTokenSecret === undefined ? {} : { aclTokenSecretId: nomadTokenSecret.ARN! }),
        ...options.cluster?.gossip,
      },
    };
    const cluster: ClusterConfig = parseClusterConfig(clusterInput);
    await bootstrapVault(operatorVault, vault.rootToken, bootstrapSpec, { clusters: [cluster] });
    ssm.registerDocument(DOCUMENT_NAMES.prepare, commandDocument('prepare', [cluster]));
    ssm.registerDocument(DOCUMENT_NAMES.install, commandDocument('install', [cluster]));
    ssm.registerDocument(DOCUMENT_NAMES.gossip, commandDocument('gossip', [cluster]));
    const config: ServiceConfig = {
      tableName,
      eventBusName: 'nomad-rotator',
      documents: DOCUMENT_NAMES,
      clusters: [cluster],
    };
    const runtime = new Runtime(config, clients, { clock, logger, telemetry, vaultAttempts: 2 });

    const lambda = new LambdaEmulator({
      region: 'us-east-1',
      accountId: ACCOUNT,
      principals: [OPERATOR, DEVELOPER],
    });
    stops.push(() => lambda.stop());
    lambda.register(FUNCTIONS.rotateCerts, rotateCertsHandler(runtime));
    lambda.register(FUNCTIONS.manualOps, manualOpsHandler(runtime));
    const manualOpsUrl = await lambda.addFunctionUrl(FUNCTIONS.manualOps, {
      allowedRoleArns: [OPERATOR.roleArn],
      ...MANUAL_OPS,
    });
    const rotateToken = rotateTokenHandler(runtime, {
      credentials: async () => ({
        accessKeyId: ROTATE_TOKEN_KEY_ID,
        secretAccessKey: 'world-secret',
        sessionToken: 'world-session',
      }),
    });
    lambda.register(FUNCTIONS.rotateToken, (event: never) => rotateToken(event));
    const rotateTokenArn = `arn:aws:lambda:us-east-1:${ACCOUNT}:function:${FUNCTIONS.rotateToken}`;
    secrets.registerRotationFunction(rotateTokenArn, (event) =>
      lambda.invoke(FUNCTIONS.rotateToken, event).then(() => {}),
    );

    const commandStatus = commandStatusHandler(runtime);
    const instanceState = instanceStateHandler(runtime);
    const commandStatusQueue = startQueue({
      handler: (event) => commandStatus(event, invocationContext(120_000)),
      batchSize: 10,
    });
    stops.push(() => commandStatusQueue.stop());
    const instanceStateQueue = startQueue({
      // As deployed (infra/stack.ts): instance-state times out after 1 minute.
      handler: (event) => instanceState(event, invocationContext(60_000)),
      batchSize: 10,
      // As deployed: the handler's own limit of registration checks is reached before the dead-letter queue.
      maxReceiveCount: MAX_REGISTRATION_CHECKS + 5,
    });
    stops.push(() => instanceStateQueue.stop());
    events.addRule(
      EVENT_RULES.commandEvents,
      {
        source: ['aws.ssm'],
        'detail-type': ['EC2 Command Status-change Notification'],
        detail: { 'document-name': Object.values(DOCUMENT_NAMES) },
      },
      { queue: commandStatusQueue },
    );
    events.addRule(
      EVENT_RULES.instanceEvents,
      {
        source: ['aws.ec2'],
        'detail-type': ['EC2 Instance State-change Notification'],
        detail: { state: ['running', 'terminated'] },
      },
      { queue: instanceStateQueue },
    );

    // The rest of what the stack deploys and the doctor reads: the tick schedule (a record here, the
    // world ticks on request), the dead-letter queues behind the SQS API, the alarms (all OK), and the
    // parameters naming it all.
    const scheduler = await startSchedulerEmulator();
    stops.push(() => scheduler.stop());
    scheduler.create(TICK_SCHEDULE.name, TICK_SCHEDULE.group, 'rate(5 minutes)');
    const sqs = await startSqsEmulator();
    stops.push(() => sqs.stop());
    // EventBridge here never fails a delivery, so nothing reaches the delivery dead-letter queue but what a test sends.
    const deliveryDeadLetters: string[] = [];
    const deadLetterList = (messages: string[]) => ({
      depth: () => messages.length,
      send: (body: string) => void messages.push(body),
      purge: () => void messages.splice(0),
    });
    const deadLetterQueues = {
      'command-events': sqs.register('command-events-dlq', deadLetterList(commandStatusQueue.deadLetters)),
      'instance-events': sqs.register('instance-events-dlq', deadLetterList(instanceStateQueue.deadLetters)),
      'event-delivery': sqs.register('event-delivery-dlq', deadLetterList(deliveryDeadLetters)),
    };
    const cloudWatch = await startCloudWatchEmulator();
    stops.push(() => cloudWatch.stop());
    for (const alarm of stackAlarmNames(clusterName, Object.keys(deadLetterQueues))) {
      cloudWatch.putAlarm(alarm, 'as infra/constructs/monitoring.ts defines it');
      cloudWatch.setState(alarm, 'OK', 'a healthy deployment');
    }
    const deployment: Deployment = {
      documents: DOCUMENT_NAMES,
      tickSchedule: TICK_SCHEDULE,
      eventRules: Object.values(EVENT_RULES),
      deadLetterQueues,
      alarmNamePrefix: `${STACK_NAME}-`,
    };
    await clients.ssm.send(
      new PutParameterCommand({
        Name: deploymentParameterName(STACK_NAME),
        Type: 'String',
        Value: JSON.stringify(deployment),
      }),
    );
    await clients.ssm.send(
      new PutParameterCommand({
        Name: clusterParameterName(STACK_NAME, clusterName),
        Type: 'String',
        Value: JSON.stringify(clusterInput),
      }),
    );

    // The first periodic token comes from the real rotation path, as the 12-hourly schedule would.
    await clients.secretsManager.send(
      new RotateSecretCommand({
        SecretId: tokenSecret.ARN!,
        RotationLambdaARN: rotateTokenArn,
        RotationRules: { ScheduleExpression: 'rate(12 hours)' },
      }),
    );
    await secrets.idle();

    /** Wait until no command runs on a node and no event waits in a queue, a few times over. */
    const settle = async () => {
      for (let quiet = 0; quiet < 3; ) {
        const busy = (
          await Promise.all([ssm.idle(), commandStatusQueue.idle(), instanceStateQueue.idle()])
        ).some(Boolean);
        quiet = busy ? 0 : quiet + 1;
      }
    };

    return {
      baseDir,
      clock,
      logger,
      telemetry,
      vault,
      dynamo,
      secrets,
      events,
      ssm,
      ec2,
      scheduler,
      sqs,
      cloudWatch,
      deadLetterQueues,
      fleet,
      /** The simulated nodes, with `simulated`. */
      simulated,
      lambda,
      /** A client launched into the clients' Auto Scaling group, its SSM agent online or still registering. */
      launchClient: async (options: { online?: boolean } = {}) => launched(await fleet.addClient(options)),
      /** EC2 terminates the instance and says so on the bus, as a real termination does. */
      terminate: (instanceId: string) => {
        ec2.setState(instanceId, 'terminated');
        (fleet.node(instanceId) ?? simulated?.node(instanceId))?.setOnline(false);
        events.ec2StateChange(instanceId, 'terminated');
      },
      clients,
      cluster,
      tableName,
      runtime,
      tokenSecretArn: tokenSecret.ARN!,
      gossipSecretArn: gossipSecret.ARN!,
      /** The servers' agent:write ACL token with `nomadAcls` (a secret, for secret scans). */
      nomadToken,
      manualOpsUrl,
      /** What the operator CLI needs in its environment to reach this world, signing as the operator. */
      cliEnvironment: (): Record<string, string> => ({
        AWS_REGION: 'us-east-1',
        AWS_ACCESS_KEY_ID: OPERATOR.accessKeyId,
        AWS_SECRET_ACCESS_KEY: OPERATOR.secretAccessKey,
        AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
        AWS_ENDPOINT_URL_SSM: ssm.endpoint,
        AWS_ENDPOINT_URL_EC2: ec2.endpoint,
        AWS_ENDPOINT_URL_EVENTBRIDGE: events.endpoint,
        AWS_ENDPOINT_URL_SECRETS_MANAGER: secrets.endpoint,
        AWS_ENDPOINT_URL_SCHEDULER: scheduler.endpoint,
        AWS_ENDPOINT_URL_CLOUDWATCH: cloudWatch.endpoint,
        AWS_ENDPOINT_URL_SQS: sqs.endpoint,
        NOMAD_ROTATOR_STACK: STACK_NAME,
        NOMAD_ROTATOR_TABLE: tableName,
        NOMAD_ROTATOR_URL: manualOpsUrl.url,
      }),
      tick: () => lambda.invoke(FUNCTIONS.rotateCerts, { tick: true }),
      /** A manual request by the operator through manual-ops' function URL; a refusal throws its error. */
      invoke: async (payload: unknown) => {
        const answer = await manualOpsUrl.invokeAs(OPERATOR, JSON.stringify(payload));
        const body = JSON.parse(answer.body || 'null') as {
          errorType?: string;
          errorMessage?: string;
        } | null;
        if (answer.status !== 200) {
          const refused = new Error(
            body?.errorMessage ?? `manual-ops answered ${answer.status}: ${answer.body}`,
          );
          refused.name = body?.errorType ?? `Http${answer.status}`;
          throw refused;
        }
        return body;
      },
      settle,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
