import { readFileSync } from 'node:fs';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EC2Client } from '@aws-sdk/client-ec2';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SSMClient } from '@aws-sdk/client-ssm';
import { z } from 'zod';
import { Ec2Inventory } from './aws/ec2';
import { EventBridgePublisher } from './aws/events';
import type { CommandGateway } from './aws/ports';
import { type DocumentNames, SsmCommandGateway } from './aws/ssm';
import type {
  EventPublisher,
  InstanceDirectory,
  NodeInventory,
  RotationTelemetry,
} from './certificates/ports';
import { CertificateRotation } from './certificates/rotation';
import { type Clock, systemClock } from './clock';
import { type ClusterConfig, clustersConfigSchema } from './config';
import { ConfigError, NotFoundError } from './errors';
import { SecretsManagerGossipKeys } from './gossip/custody';
import type { Logger } from './logger';
import { createLogger, type IssuerTelemetry, PowertoolsTelemetry } from './observability';
import type { StateStore } from './state/store';
import { StateTable } from './state/table';
import { describeIssues } from './validation';
import { VaultCertificateAuthority } from './vault/authority';
import { VaultClient } from './vault/client';
import { SecretsManagerTokenSource } from './vault-token/tokens';

export interface ServiceConfig {
  tableName: string;
  eventBusName: string;
  documents: DocumentNames;
  clusters: ClusterConfig[];
}

const environmentSchema = z.object({
  STATE_TABLE_NAME: z.string().min(1),
  EVENT_BUS_NAME: z.string().min(1),
  PREPARE_DOCUMENT_NAME: z.string().regex(/^[a-zA-Z0-9_.:/-]{3,128}$/),
  INSTALL_DOCUMENT_NAME: z.string().regex(/^[a-zA-Z0-9_.:/-]{3,128}$/),
  GOSSIP_DOCUMENT_NAME: z.string().regex(/^[a-zA-Z0-9_.:/-]{3,128}$/),
  /** The clusters inline, or (what the stack deploys, free of Lambda's 4 KB environment limit) a file in the bundle. */
  CLUSTERS_CONFIG: z.string().min(2).optional(),
  CLUSTERS_CONFIG_FILE: z
    .string()
    .regex(/^\/[A-Za-z0-9._/-]+$/, { message: 'must be an absolute path' })
    .optional(),
});

/** Read and validate the service configuration once, at start-up; nothing else reads the environment. */
export function serviceConfigFromEnvironment(
  environment: Record<string, string | undefined>,
  readText: (path: string) => string = (path) => readFileSync(path, 'utf8'),
): ServiceConfig {
  const parsed = environmentSchema.safeParse(environment);
  if (!parsed.success) throw new ConfigError('invalid environment', describeIssues(parsed.error.issues));
  const { CLUSTERS_CONFIG: inline, CLUSTERS_CONFIG_FILE: file } = parsed.data;
  if ((inline === undefined) === (file === undefined)) {
    throw new ConfigError('invalid environment', [
      'CLUSTERS_CONFIG, CLUSTERS_CONFIG_FILE: exactly one must be set',
    ]);
  }
  const source = inline === undefined ? 'CLUSTERS_CONFIG_FILE' : 'CLUSTERS_CONFIG';
  let text: string;
  try {
    text = inline ?? readText(file!);
  } catch (error) {
    throw new ConfigError('invalid environment', [
      `CLUSTERS_CONFIG_FILE: cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
    ]);
  }
  let clusters: unknown;
  try {
    clusters = JSON.parse(text);
  } catch {
    throw new ConfigError('invalid environment', [
      `${source}: must be a JSON array of cluster configurations`,
    ]);
  }
  const clusterResult = clustersConfigSchema.safeParse(clusters);
  if (!clusterResult.success) {
    throw new ConfigError('invalid CLUSTERS_CONFIG', describeIssues(clusterResult.error.issues));
  }
  return {
    tableName: parsed.data.STATE_TABLE_NAME,
    eventBusName: parsed.data.EVENT_BUS_NAME,
    documents: {
      prepare: parsed.data.PREPARE_DOCUMENT_NAME,
      install: parsed.data.INSTALL_DOCUMENT_NAME,
      gossip: parsed.data.GOSSIP_DOCUMENT_NAME,
    },
    clusters: clusterResult.data,
  };
}

export interface AwsClients {
  dynamodb: DynamoDBClient;
  ec2: EC2Client;
  ssm: SSMClient;
  eventBridge: EventBridgeClient;
  secretsManager: SecretsManagerClient;
}

/** Default SDK clients; adaptive retry because SSM throttles at low, unpublished rates. */
export function defaultAwsClients(): AwsClients {
  const retry = { retryMode: 'adaptive', maxAttempts: 8 } as const;
  return {
    dynamodb: new DynamoDBClient(retry),
    ec2: new EC2Client(retry),
    ssm: new SSMClient(retry),
    eventBridge: new EventBridgeClient(retry),
    secretsManager: new SecretsManagerClient(retry),
  };
}

export interface RuntimeOptions {
  clock?: Clock;
  logger?: Logger;
  /** Every metric the functions emit; Powertools EMF by default. */
  telemetry?: RotationTelemetry & IssuerTelemetry;
  /** Where the CA metric goes instead, for a caller that watches only it. */
  issuerTelemetry?: IssuerTelemetry;
  vaultAttempts?: number;
}

/** Everything a handler needs, built once per Lambda container (or once per local world). */
export class Runtime {
  readonly table: StateStore;
  readonly commands: CommandGateway;
  readonly inventory: NodeInventory;
  readonly instances: InstanceDirectory;
  readonly events: EventPublisher;
  readonly telemetry: RotationTelemetry;
  readonly issuerTelemetry: IssuerTelemetry;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly #vaults = new Map<string, { client: VaultClient; tokens: SecretsManagerTokenSource }>();
  readonly #gossipKeys: SecretsManagerGossipKeys;

  constructor(
    readonly config: ServiceConfig,
    readonly clients: AwsClients,
    private readonly options: RuntimeOptions = {},
  ) {
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? createLogger('nomad-rotator');
    const telemetry = options.telemetry ?? new PowertoolsTelemetry();
    this.telemetry = telemetry;
    this.issuerTelemetry = options.issuerTelemetry ?? telemetry;
    this.table = new StateTable(clients.dynamodb, config.tableName);
    this.commands = new SsmCommandGateway(clients.ssm, config.documents);
    const ec2Inventory = new Ec2Inventory(clients.ec2, clients.ssm);
    this.inventory = ec2Inventory;
    this.instances = ec2Inventory;
    this.events = new EventBridgePublisher(clients.eventBridge, config.eventBusName);
    this.#gossipKeys = new SecretsManagerGossipKeys(clients.secretsManager);
  }

  clusterNames(): string[] {
    return this.config.clusters.map((cluster) => cluster.name);
  }

  cluster(name: string): ClusterConfig {
    const cluster = this.config.clusters.find((candidate) => candidate.name === name);
    if (cluster === undefined)
      throw new NotFoundError(`cluster ${name} is not configured`, { context: { cluster: name } });
    return cluster;
  }

  /** The cluster's Vault client, authenticated with the periodic tls-policy token from Secrets Manager. */
  vault(clusterName: string): { client: VaultClient; tokens: SecretsManagerTokenSource } {
    let entry = this.#vaults.get(clusterName);
    if (entry === undefined) {
      const { vault } = this.cluster(clusterName);
      const tokens = new SecretsManagerTokenSource(
        this.clients.secretsManager,
        vault.tokenSecretId,
        this.clock,
      );
      const client = new VaultClient({
        address: vault.address,
        timeoutMs: vault.requestTimeoutMs,
        tokens,
        ...(vault.caBundlePem ? { caBundlePem: vault.caBundlePem } : {}),
        ...(vault.namespace ? { namespace: vault.namespace } : {}),
        ...(this.options.vaultAttempts ? { attempts: this.options.vaultAttempts } : {}),
      });
      entry = { client, tokens };
      this.#vaults.set(clusterName, entry);
    }
    return entry;
  }

  /** The cluster's Vault PKI as certificate authority, with the cluster's Vault client. */
  authority(clusterName: string): VaultCertificateAuthority {
    const { vault } = this.cluster(clusterName);
    return new VaultCertificateAuthority(this.vault(clusterName).client, {
      mount: vault.pkiMount,
      serverRole: vault.serverRole,
      clientRole: vault.clientRole,
      cliRole: vault.cliRole,
    });
  }

  rotation(clusterName: string): CertificateRotation {
    const cluster = this.cluster(clusterName);
    return new CertificateRotation({
      cluster,
      table: this.table,
      inventory: this.inventory,
      commands: this.commands,
      authority: this.authority(clusterName),
      events: this.events,
      telemetry: this.telemetry,
      logger: this.logger,
      clock: this.clock,
      gossipKeys: this.#gossipKeys,
    });
  }
}

let lambdaRuntime: Runtime | undefined;

/** The Lambda container's runtime: environment read and clients built on first use, then reused. */
export function lambdaRuntimeFrom(environment: Record<string, string | undefined>): Runtime {
  lambdaRuntime ??= new Runtime(serviceConfigFromEnvironment(environment), defaultAwsClients());
  return lambdaRuntime;
}
