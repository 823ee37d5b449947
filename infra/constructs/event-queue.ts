import { Duration } from 'aws-cdk-lib';
import { type EventPattern, Rule } from 'aws-cdk-lib/aws-events';
import { SqsQueue } from 'aws-cdk-lib/aws-events-targets';
import { AnyPrincipal, Effect, PolicyStatement } from 'aws-cdk-lib/aws-iam';
import type { IKey } from 'aws-cdk-lib/aws-kms';
import type { Function as LambdaFunction } from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import { type IQueue, Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { DeadLetterQueue } from './dead-letter-queue';

export interface EventQueueProps {
  description: string;
  /** Matched on the account's default bus, where AWS service events arrive. */
  eventPattern: EventPattern;
  consumer: LambdaFunction;
  /** Receives before a message is moved to the dead-letter queue. */
  maxReceiveCount: number;
  key: IKey;
  /** Where EventBridge puts events it could not deliver to the queue (a broken key or queue policy). */
  deliveryDeadLetterQueue: IQueue;
}

/**
 * EventBridge rule → encrypted SQS queue (with its dead-letter queue) → Lambda in batches with partial
 * batch failures: the aws-eventbridge-sqs + aws-sqs-lambda shape. The queue absorbs bursts and SSM
 * throttling, and a record the handler reports failed comes back after the visibility timeout.
 *
 * The queue takes messages from its rule only: its policy denies sqs:SendMessage to every request whose
 * aws:SourceArn is not the rule, so no principal of the account can put a forged SSM or EC2 event in
 * front of the function, whatever its own policies allow. That includes a redrive from the dead-letter
 * queue (a message move sends as the caller); the tick's reconciliation covers what a lost event held.
 */
export class EventQueue extends Construct {
  readonly rule: Rule;
  readonly queue: Queue;
  readonly deadLetterQueue: DeadLetterQueue;

  constructor(scope: Construct, id: string, props: EventQueueProps) {
    super(scope, id);
    // Lambda's default timeout when the function sets none.
    const consumerTimeout = props.consumer.timeout ?? Duration.seconds(3);
    this.deadLetterQueue = new DeadLetterQueue(this, 'DeadLetters', props.key);
    this.queue = new Queue(this, 'Queue', {
      encryption: QueueEncryption.KMS,
      encryptionMasterKey: props.key,
      // One data key per 5 minutes instead of per message: SSM command events come in bursts.
      dataKeyReuse: Duration.minutes(5),
      enforceSSL: true,
      // Six times the consumer's timeout, as Lambda advises for SQS event sources.
      visibilityTimeout: Duration.seconds(consumerTimeout.toSeconds() * 6),
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: props.maxReceiveCount },
    });
    this.rule = new Rule(this, 'Rule', {
      description: props.description,
      eventPattern: props.eventPattern,
      targets: [
        // Delivery to our own queue fails only when its policy or key is broken: retry for a while, then
        // keep the event as a dead letter (alarmed) rather than EventBridge's default of dropping it.
        new SqsQueue(this.queue, {
          deadLetterQueue: props.deliveryDeadLetterQueue,
          retryAttempts: 8,
          maxEventAge: Duration.hours(2),
        }),
      ],
    });
    this.queue.addToResourcePolicy(
      new PolicyStatement({
        sid: 'SendOnlyFromItsRule',
        effect: Effect.DENY,
        principals: [new AnyPrincipal()],
        actions: ['sqs:SendMessage'],
        resources: [this.queue.queueArn],
        conditions: { ArnNotEquals: { 'aws:SourceArn': this.rule.ruleArn } },
      }),
    );
    props.consumer.addEventSource(
      new SqsEventSource(this.queue, {
        batchSize: 10,
        reportBatchItemFailures: true,
        // Every record costs SSM and Vault calls; a handful of concurrent batches is what SSM's low
        // API rates can take, and the queue holds the rest.
        maxConcurrency: 5,
      }),
    );
  }
}
