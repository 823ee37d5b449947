import { Duration, Validations } from 'aws-cdk-lib';
import type { IKey } from 'aws-cdk-lib/aws-kms';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';

/**
 * Where undeliverable or unprocessable messages end up: encrypted, TLS only, kept the SQS maximum of
 * 14 days so an operator has time to inspect and redrive them. Every one is alarmed on its depth.
 */
export class DeadLetterQueue extends Queue {
  constructor(scope: Construct, id: string, key: IKey) {
    super(scope, id, {
      encryption: QueueEncryption.KMS,
      encryptionMasterKey: key,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    Validations.of(this).acknowledge({
      id: 'AwsSolutions-SQS3',
      reason: 'This is itself a dead-letter queue, the end of the line; an alarm fires on its first message.',
    });
  }
}
