import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EC2Client } from '@aws-sdk/client-ec2';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import {
  CreateSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  RotateSecretCommand,
  type SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { SSMClient } from '@aws-sdk/client-ssm';
import { rotateTokenHandler } from '../../functions/rotate-token';
import { startSecretsManagerEmulator } from '../../local/aws/secrets-manager';
import { ManualClock } from '../../local/clock';
import { startVaultEmulator } from '../../local/vault';
import { RecordingLogger } from '../../local/world/recording';
import { bootstrapVault } from '../../ops/vault-bootstrap/apply';
import type { BootstrapReport, BootstrapSpecInput } from '../../ops/vault-bootstrap/spec';
import { x509 } from '../../shared/certificates/x509';
import { type ClusterConfigInput, parseClusterConfig } from '../../shared/config';
import { Runtime } from '../../shared/runtime';
import { VaultCertificateAuthority } from '../../shared/vault/authority';
import { VaultClient, type VaultResponse } from '../../shared/vault/client';
import type { TokenRotationTelemetry } from '../../shared/vault-token/context';
import { parseTokenSecret, type TokenSecret } from '../../shared/vault-token/tokens';
import { testInventory } from './inventory';
import { UNCHECKED_TRUST_ANCHORS } from './trust-anchors';

export const ACCOUNT = '123456789012';
export const ROTATOR_ROLE_ARN = `arn:aws:iam::${ACCOUNT}:role/nomad-rotator-rotate-token`;
/** Access key ids the Vault emulator maps to caller identities, as STS would answer for them. */
export const ROTATOR_KEY_ID = 'ASIAROTATETOKEN00001';
export const INTRUDER_KEY_ID = 'ASIAINTRUDER00000001';
export const TOKEN_SECRET_NAME = 'nomad/test/vault-token';
export const ROTATION_FUNCTION_ARN = `arn:aws:lambda:us-east-1:${ACCOUNT}:function:nomad-rotator-rotate-token`;
/** The auth method's iam_server_id_header_value, and what the cluster config signs into its logins. */
export const SERVER_ID_HEADER = 'vault.test.internal';
/** The token role vault-bootstrap creates for the test cluster (nomad-rotator-<cluster>). */
export const TEST_TOKEN_ROLE = 'nomad-rotator-test';

type VaultInput = ClusterConfigInput['vault'];
export type VaultOverrides = Partial<Omit<VaultInput, 'tokenRotation'>> & {
  tokenRotation?: Partial<VaultInput['tokenRotation']>;
};

/** The test cluster as the token rotation world configures it, against a Vault at `address`. */
export function testClusterInput(
  address: string,
  caPem: string | undefined,
  overrides: VaultOverrides = {},
): ClusterConfigInput {
  const { tokenRotation, ...vault } = overrides;
  return {
    name: 'test',
    inventory: testInventory('test'),
    certificates: UNCHECKED_TRUST_ANCHORS,
    vault: {
      address,
      tokenSecretId: TOKEN_SECRET_NAME,
      requestTimeoutMs: 5_000,
      ...(caPem ? { caBundlePem: caPem } : {}),
      ...vault,
      tokenRotation: { iamServerIdHeader: SERVER_ID_HEADER, ...tokenRotation },
    },
  };
}

export const credentialsFor = (accessKeyId: string) => async () => ({
  accessKeyId,
  secretAccessKey: `secret-of-${accessKeyId}`,
  sessionToken: `session-of-${accessKeyId}`,
});

export class RecordingTokenTelemetry implements TokenRotationTelemetry {
  readonly failures: string[] = [];

  tokenRotationFailed(cluster: string): void {
    this.failures.push(cluster);
  }
}

export type VaultEmulator = Awaited<ReturnType<typeof startVaultEmulator>>;

/** One Vault emulator, bootstrapped as an operator would, plus helpers to talk to it. */
export async function startBootstrappedVault(
  options: { clock?: ManualClock; spec?: Partial<BootstrapSpecInput> } = {},
) {
  const clock = options.clock ?? new ManualClock();
  const emulator = await startVaultEmulator({
    clock,
    awsIdentities: {
      [ROTATOR_KEY_ID]: `arn:aws:sts::${ACCOUNT}:assumed-role/nomad-rotator-rotate-token/rotate-token`,
      [INTRUDER_KEY_ID]: `arn:aws:sts::${ACCOUNT}:assumed-role/someone-else/session`,
    },
  });
  /** A client for the emulator; with a token, every call uses it, as the issuing functions' client does. */
  const client = (token?: string) =>
    new VaultClient({
      address: emulator.address,
      timeoutMs: 5_000,
      attempts: 1,
      ...(emulator.caPem ? { caBundlePem: emulator.caPem } : {}),
      ...(token ? { tokens: { token: async () => token, invalidate: () => {} } } : {}),
    });
  const root = client();
  /** Bootstrap for the test cluster unless told which clusters this Vault serves. */
  const bootstrap = (
    dryRun = false,
    clusters: ClusterConfigInput[] = [testClusterInput(emulator.address, emulator.caPem)],
  ): Promise<BootstrapReport> =>
    bootstrapVault(
      root,
      emulator.rootToken,
      { adminRoleArns: [ROTATOR_ROLE_ARN], iamServerIdHeader: SERVER_ID_HEADER, ...options.spec },
      { dryRun, clusters: clusters.map(parseClusterConfig) },
    );
  return { clock, emulator, client, root, bootstrap };
}

/** A fresh EC P-256 CSR whose own names are meant to be ignored by the role. */
export async function csrPem(): Promise<string> {
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await crypto.subtle.generateKey(algorithm, false, ['sign', 'verify'])) as Parameters<
    typeof x509.Pkcs10CertificateRequestGenerator.create
  >[0]['keys'];
  const request = await x509.Pkcs10CertificateRequestGenerator.create({
    name: 'CN=whatever-the-node-asks-for.example.org',
    keys,
    signingAlgorithm: algorithm,
  });
  return request.toString('pem');
}

/** Sign a server CSR on the server role with the given client, as the issuing functions do. */
export async function signServerCertificate(vault: VaultClient, commonName = 'server.global.nomad') {
  const authority = new VaultCertificateAuthority(vault, {
    mount: 'pki_int',
    serverRole: 'nomad-server',
    clientRole: 'nomad-client',
    cliRole: 'nomad-cli',
  });
  return authority.sign({
    kind: 'server',
    csrPem: await csrPem(),
    names: { commonName, dnsNames: [commonName, 'localhost'], ipAddresses: ['127.0.0.1'] },
    ttlSeconds: 3600,
  });
}

/** Mint a tls-policy token with the root token, as the token role would: the operator's seed. */
export async function mintSeedToken(root: VaultClient, rootToken: string): Promise<TokenSecret> {
  const response = await root.write<VaultResponse>(
    'auth/token/create-orphan',
    {
      policies: ['tls-policy'],
      period: '24h',
      explicit_max_ttl: '168h',
      no_default_policy: true,
      display_name: 'seed',
    },
    rootToken,
  );
  return { token: response.auth!.client_token, accessor: response.auth!.accessor };
}

/**
 * The whole token-rotation world: bootstrapped Vault, Secrets Manager with the token secret (seeded
 * with a working token) and the rotate-token handler registered as its rotation function.
 */
export async function startTokenRotationWorld(
  options: {
    clock?: ManualClock;
    rotatorKeyId?: string;
    clusterOverrides?: VaultOverrides;
    spec?: Partial<BootstrapSpecInput>;
  } = {},
) {
  const vault = await startBootstrappedVault({
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.spec ? { spec: options.spec } : {}),
  });
  await vault.bootstrap();
  const { clock, emulator, root } = vault;
  const secretsManager = await startSecretsManagerEmulator({ clock });
  const secrets: SecretsManagerClient = secretsManager.client();
  const seed = await mintSeedToken(root, emulator.rootToken);
  const created = await secrets.send(
    new CreateSecretCommand({ Name: TOKEN_SECRET_NAME, SecretString: JSON.stringify(seed) }),
  );
  const cluster = parseClusterConfig(
    testClusterInput(emulator.address, emulator.caPem, options.clusterOverrides),
  );
  const logger = new RecordingLogger();
  const telemetry = new RecordingTokenTelemetry();
  const unused = {
    region: 'us-east-1',
    endpoint: 'http://127.0.0.1:9',
    credentials: credentialsFor('unused'),
  };
  const runtime = new Runtime(
    {
      tableName: 'unused',
      eventBusName: 'unused',
      documents: { prepare: 'unused-prepare', install: 'unused-install', gossip: 'unused-gossip' },
      clusters: [cluster],
    },
    {
      secretsManager: secrets,
      dynamodb: new DynamoDBClient(unused),
      ec2: new EC2Client(unused),
      ssm: new SSMClient(unused),
      eventBridge: new EventBridgeClient(unused),
    },
    { clock, logger, vaultAttempts: 1 },
  );
  const handler = rotateTokenHandler(runtime, {
    credentials: credentialsFor(options.rotatorKeyId ?? ROTATOR_KEY_ID),
    telemetry,
    vaultAttempts: 1,
  });
  const handlerErrors: unknown[] = [];
  secretsManager.registerRotationFunction(ROTATION_FUNCTION_ARN, async (event: unknown) => {
    try {
      return await handler(event);
    } catch (error) {
      handlerErrors.push(error);
      throw error;
    }
  });

  const stages = async (): Promise<Record<string, string[]>> =>
    (await secrets.send(new DescribeSecretCommand({ SecretId: TOKEN_SECRET_NAME }))).VersionIdsToStages ?? {};
  const valueAt = async (stage: 'AWSCURRENT' | 'AWSPREVIOUS' | 'AWSPENDING'): Promise<TokenSecret> => {
    const { SecretString } = await secrets.send(
      new GetSecretValueCommand({ SecretId: TOKEN_SECRET_NAME, VersionStage: stage }),
    );
    return parseTokenSecret(SecretString, stage);
  };
  const rotate = async (): Promise<void> => {
    await secrets.send(
      new RotateSecretCommand({
        SecretId: TOKEN_SECRET_NAME,
        RotationLambdaARN: ROTATION_FUNCTION_ARN,
        RotationRules: { ScheduleExpression: 'rate(12 hours)' },
      }),
    );
    await secretsManager.idle();
  };
  const stop = async () => {
    await secretsManager.stop();
    await emulator.stop();
  };
  return {
    ...vault,
    secretsManager,
    secrets,
    secretArn: created.ARN!,
    seed,
    cluster,
    runtime,
    handler,
    handlerErrors,
    logger,
    telemetry,
    stages,
    valueAt,
    rotate,
    stop,
  };
}

export type TokenRotationWorld = Awaited<ReturnType<typeof startTokenRotationWorld>>;

/** Whether Vault still accepts the token (lookup-self with the token itself). */
export async function tokenIsValid(vault: VaultClient, token: string): Promise<boolean> {
  try {
    await vault.read('auth/token/lookup-self', token);
    return true;
  } catch {
    return false;
  }
}
