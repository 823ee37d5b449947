import { Duration, Lazy, Stack, Validations } from 'aws-cdk-lib';
import { AnyPrincipal, Effect, type IRole, ManagedPolicy, PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { Key } from 'aws-cdk-lib/aws-kms';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import type { ClusterConfig } from '../../shared/config';

export interface GossipKeySecretsProps {
  clusters: readonly ClusterConfig[];
}

/** A cluster's gossip key secret and the policy its servers' instance role needs to read it. */
export interface ClusterGossipKey {
  secret: Secret;
  serverReadPolicy: ManagedPolicy;
}

/**
 * One Secrets Manager secret per cluster for its Nomad gossip key, under a KMS key of its own. The
 * servers read it themselves with their instance role (the stack does not own that role: it outputs
 * a managed policy per cluster to attach to it); the rotator writes new versions and moves stages
 * but never reads a key, and each secret's resource policy denies GetSecretValue to every function
 * role of the stack, whatever grants it may be given later.
 *
 * A key of its own because the stack key's policy denies decryption through Secrets Manager to all
 * but the Vault-token readers: the servers' roles are not among them, and must not be.
 */
export class GossipKeySecrets extends Construct {
  /** Cluster name → its gossip key secret and read policy. */
  readonly clusters = new Map<string, ClusterGossipKey>();
  readonly key: Key;
  readonly #functionRoles: string[] = [];

  constructor(scope: Construct, id: string, props: GossipKeySecretsProps) {
    super(scope, id);
    const stack = Stack.of(this);
    this.key = new Key(this, 'Key', {
      description: `${stack.stackName}: Nomad gossip key secrets, read only by each cluster's servers`,
      enableKeyRotation: true,
      pendingWindow: Duration.days(30),
    });
    const functionRoles = Lazy.list({ produce: () => [...this.#functionRoles] });

    for (const cluster of props.clusters) {
      const secret = new Secret(this, `GossipKey-${cluster.name}`, {
        secretName: gossipKeySecretName(stack, cluster.name),
        description: `Nomad gossip key of cluster ${cluster.name} (standard base64 of 32 bytes); AWSPENDING during a rotation, AWSPREVIOUS kept for repairs`,
        encryptionKey: this.key,
        // CloudFormation must give a new secret some value. A JSON object can never pass for a key,
        // where a random 32-character password could, rarely, be valid base64 of 24 bytes.
        generateSecretString: {
          secretStringTemplate: JSON.stringify({ notAGossipKey: true }),
          generateStringKey: 'placeholder',
        },
      });
      secret.addToResourcePolicy(
        new PolicyStatement({
          sid: 'NeverReadByTheRotator',
          effect: Effect.DENY,
          principals: [new AnyPrincipal()],
          actions: ['secretsmanager:GetSecretValue'],
          resources: ['*'],
          conditions: { ArnEquals: { 'aws:PrincipalArn': functionRoles } },
        }),
      );
      Validations.of(secret).acknowledge({
        id: 'AwsSolutions-SMG4',
        reason:
          'The gossip key cannot be rotated by a Secrets Manager rotation function alone: the rotator rolls it through the servers’ keyrings (install, use, remove) and moves the stages itself.',
      });
      const serverReadPolicy = new ManagedPolicy(this, `ServerRead-${cluster.name}`, {
        description: `Attach to the instance role of cluster ${cluster.name}'s Nomad servers: read its gossip key, nothing else`,
        statements: [
          new PolicyStatement({ actions: ['secretsmanager:GetSecretValue'], resources: [secret.secretArn] }),
          new PolicyStatement({
            actions: ['kms:Decrypt'],
            resources: [this.key.keyArn],
            conditions: {
              StringEquals: {
                'kms:ViaService': `secretsmanager.${stack.region}.amazonaws.com`,
                'kms:EncryptionContext:SecretARN': secret.secretArn,
              },
            },
          }),
        ],
      });
      this.clusters.set(cluster.name, { secret, serverReadPolicy });
    }
  }

  /** A function role of the stack: denied the gossip keys, whatever it is granted. */
  neverRead(role: IRole): void {
    this.#functionRoles.push(role.roleArn);
  }

  /**
   * What the gossip plan does with the secrets: write a new key as a version and move the stages,
   * learning fingerprints from version ids. Encrypting a new version needs a data key; nothing here
   * lets the role decrypt one.
   */
  grantStaging(role: IRole): void {
    const stack = Stack.of(this);
    const secrets = [...this.clusters.values()].map(({ secret }) => secret.secretArn);
    if (secrets.length === 0) return;
    role.addToPrincipalPolicy(
      new PolicyStatement({
        actions: [
          'secretsmanager:DescribeSecret',
          'secretsmanager:PutSecretValue',
          'secretsmanager:UpdateSecretVersionStage',
        ],
        resources: secrets,
      }),
    );
    role.addToPrincipalPolicy(
      new PolicyStatement({
        actions: ['kms:GenerateDataKey'],
        resources: [this.key.keyArn],
        conditions: {
          StringEquals: { 'kms:ViaService': `secretsmanager.${stack.region}.amazonaws.com` },
          'ForAnyValue:StringEquals': { 'kms:EncryptionContext:SecretARN': secrets },
        },
      }),
    );
  }
}

/** The gossip key secret's name, fixed at synth time so configuration can name it before it exists. */
export function gossipKeySecretName(stack: Stack, clusterName: string): string {
  return `${stack.stackName}/${clusterName}/gossip-key`;
}
