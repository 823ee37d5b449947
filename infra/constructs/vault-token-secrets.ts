import { Duration, Lazy, Stack } from 'aws-cdk-lib';
import { AnyPrincipal, Effect, type IRole, PolicyStatement, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { type IKey, ViaServicePrincipal } from 'aws-cdk-lib/aws-kms';
import { Function as LambdaFunction } from 'aws-cdk-lib/aws-lambda';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import type { ClusterConfig } from '../../shared/config';
import { ConfigError } from '../../shared/errors';
import type { EncryptionKey } from './encryption-key';
import type { RotatorFunction } from './rotator-function';

export interface VaultTokenSecretsProps {
  clusters: readonly ClusterConfig[];
  /** The stack's key: it encrypts the secrets, and its policy names who may decrypt them. */
  encryption: EncryptionKey;
  /** The rotate-token function: the rotation function of every token secret. */
  rotation: RotatorFunction;
}

/**
 * One Secrets Manager secret per cluster holding the periodic tls-policy Vault token as
 * {token, accessor}, rotated by rotate-token every half token period (12 hours for the default 24h).
 *
 * The rotation function is wired with explicit, narrower permissions than the ones `RotationSchedule`
 * adds for a function it owns: no `secretsmanager:GetRandomPassword` on `*` (the function never calls
 * it) and an invoke permission for Secrets Manager limited to this account.
 *
 * Reading a token is limited on the resources themselves, not only by the roles' grants: each secret's
 * resource policy and the key policy deny GetSecretValue, and kms:Decrypt through Secrets Manager, to
 * every principal but the functions granted `grantReadToken` and the rotation function. An operator
 * or administrator role of the account keeps managing the secrets (describe, rotate, tag, policy,
 * delete) but cannot read the token, whatever its own policies allow.
 */
export class VaultTokenSecrets extends Construct {
  /** Cluster name → its token secret. */
  readonly secrets = new Map<string, Secret>();
  readonly #key: IKey;
  /** Role ARNs that may read AWSCURRENT: the rotation function's, then every grantReadToken. */
  readonly #readers: string[] = [];

  constructor(scope: Construct, id: string, props: VaultTokenSecretsProps) {
    super(scope, id);
    this.#key = props.encryption.key;
    const stack = Stack.of(this);
    const { function: rotation, role: rotationRole } = props.rotation;
    this.#readers.push(rotationRole.roleArn);
    const readers = Lazy.list({ produce: () => [...this.#readers] });
    rotation.addPermission('InvokedBySecretsManager', {
      principal: new ServicePrincipal('secretsmanager.amazonaws.com'),
      sourceAccount: stack.account,
    });
    const invokePermission = rotation.permissionsNode.findChild('InvokedBySecretsManager');
    // Seen through an imported reference, the function gets no automatic grants from RotationSchedule.
    const rotationFunction = LambdaFunction.fromFunctionAttributes(this, 'RotationFunction', {
      functionArn: rotation.functionArn,
      sameEnvironment: true,
      skipPermissions: true,
    });

    for (const cluster of props.clusters) {
      const secret = new Secret(this, `Token-${cluster.name}`, {
        secretName: tokenSecretName(stack, cluster.name),
        description: `Periodic ${cluster.vault.tokenRotation.tokenPolicy} Vault token of Nomad cluster ${cluster.name} as {token, accessor}; written only by its rotation`,
        encryptionKey: this.#key,
      });
      // aws:PrincipalArn is the role of a role session, so the ARNs listed are the functions' roles.
      secret.addToResourcePolicy(
        new PolicyStatement({
          sid: 'ReadOnlyByTheFunctionsThatUseIt',
          effect: Effect.DENY,
          principals: [new AnyPrincipal()],
          actions: ['secretsmanager:GetSecretValue'],
          resources: ['*'],
          conditions: { ArnNotEquals: { 'aws:PrincipalArn': readers } },
        }),
      );
      const schedule = secret.addRotationSchedule('Rotation', {
        rotationLambda: rotationFunction,
        automaticallyAfter: rotationInterval(cluster),
        // The first rotation needs Vault to trust rotate-token's role, which vault-bootstrap can only do
        // once the stack (and so the role) exists; the operator then starts it with rotate-secret.
        rotateImmediatelyOnUpdate: false,
      });
      // Secrets Manager tests the function as soon as the schedule exists: it must be allowed by then.
      schedule.node.addDependency(invokePermission, rotation, rotationRole);
      this.secrets.set(cluster.name, secret);
    }

    rotationRole.addToPrincipalPolicy(
      new PolicyStatement({
        actions: [
          'secretsmanager:DescribeSecret',
          'secretsmanager:GetSecretValue',
          'secretsmanager:PutSecretValue',
          'secretsmanager:UpdateSecretVersionStage',
        ],
        resources: this.#secretArns(),
      }),
    );
    this.#key.grant(
      new ViaServicePrincipal(`secretsmanager.${stack.region}.amazonaws.com`, rotationRole),
      'kms:Decrypt',
      'kms:GenerateDataKey',
    );
    props.encryption.denyDecryptThroughServiceExcept('secretsmanager', () => [...this.#readers]);
  }

  /** Read access to AWSCURRENT, for the functions that call Vault with the token. */
  grantReadToken(role: IRole): void {
    role.addToPrincipalPolicy(
      new PolicyStatement({ actions: ['secretsmanager:GetSecretValue'], resources: this.#secretArns() }),
    );
    this.#key.grant(
      new ViaServicePrincipal(`secretsmanager.${Stack.of(this).region}.amazonaws.com`, role),
      'kms:Decrypt',
    );
    this.#readers.push(role.roleArn);
  }

  #secretArns(): string[] {
    return [...this.secrets.values()].map((secret) => secret.secretArn);
  }
}

/**
 * Half the token's period, so a token is replaced while the previous one still has half its life:
 * consumers that cached it keep working. Secrets Manager takes whole hours, at least 4.
 */
export function rotationInterval(cluster: ClusterConfig): Duration {
  const hours = Math.floor(cluster.vault.tokenRotation.tokenPeriod / 2 / 3600);
  if (hours < 4) {
    throw new ConfigError(`invalid clusters configuration (cluster ${cluster.name})`, [
      'vault.tokenRotation.tokenPeriod: must be at least 8h for a deployed stack (the secret rotates every half period, and Secrets Manager rotates at most every 4 hours)',
    ]);
  }
  return Duration.hours(hours);
}

/**
 * The token secret's name, fixed at synth time so the functions' configuration can name it before the
 * secret exists (GetSecretValue and the rotation event accept the name as well as the ARN).
 */
export function tokenSecretName(stack: Stack, clusterName: string): string {
  return `${stack.stackName}/${clusterName}/vault-token`;
}
