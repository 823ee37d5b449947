import { ArnFormat, Duration, Lazy, Stack } from 'aws-cdk-lib';
import { AnyPrincipal, Effect, PolicyStatement, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Key } from 'aws-cdk-lib/aws-kms';
import { Construct } from 'constructs';

/**
 * The stack's one customer-managed key: table, queues, token secrets, event bus, schedule, alarm topic
 * and log groups. Services that use it on their own behalf (CloudWatch Logs, CloudWatch alarms) are
 * named in the key policy here; the others get it through the grants of the resources they touch.
 */
export class EncryptionKey extends Construct {
  readonly key: Key;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    const stack = Stack.of(this);
    this.key = new Key(this, 'Key', {
      description: `${stack.stackName}: table, queues, Vault token secrets, event bus, alarms and logs`,
      enableKeyRotation: true,
      pendingWindow: Duration.days(30),
    });

    // CloudWatch Logs encrypts with the key as its regional service principal, only for this account's
    // log groups (the encryption context names the log group).
    this.key.addToResourcePolicy(
      new PolicyStatement({
        principals: [new ServicePrincipal(`logs.${stack.region}.amazonaws.com`)],
        actions: ['kms:Encrypt', 'kms:Decrypt', 'kms:ReEncrypt*', 'kms:GenerateDataKey*', 'kms:DescribeKey'],
        resources: ['*'],
        conditions: {
          ArnLike: {
            'kms:EncryptionContext:aws:logs:arn': stack.formatArn({
              service: 'logs',
              resource: 'log-group',
              resourceName: '*',
              arnFormat: ArnFormat.COLON_RESOURCE_NAME,
            }),
          },
        },
      }),
    );

    // Alarm notifications: CloudWatch publishes to the encrypted topic itself, so it needs the key too.
    this.key.addToResourcePolicy(
      new PolicyStatement({
        principals: [new ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'],
        conditions: { StringEquals: { 'aws:SourceAccount': stack.account } },
      }),
    );
  }

  /**
   * kms:Decrypt through `service` (e.g. `secretsmanager`) only for the principals `readers` names when
   * the stack is synthesized: an explicit Deny for every other principal of the account, whatever its
   * own policies or the key's account-root statement allow. Only Decrypt is denied, so the deploying
   * role and key administrators keep managing the key, and the service can still encrypt new values.
   */
  denyDecryptThroughServiceExcept(service: string, readers: () => string[]): void {
    const stack = Stack.of(this);
    this.key.addToResourcePolicy(
      new PolicyStatement({
        sid: `DecryptThrough${service.charAt(0).toUpperCase()}${service.slice(1)}OnlyByItsReaders`,
        effect: Effect.DENY,
        principals: [new AnyPrincipal()],
        actions: ['kms:Decrypt'],
        resources: ['*'],
        conditions: {
          StringEquals: { 'kms:ViaService': `${service}.${stack.region}.amazonaws.com` },
          ArnNotEquals: { 'aws:PrincipalArn': Lazy.list({ produce: readers }) },
        },
      }),
    );
  }
}
