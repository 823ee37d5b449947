import { randomUUID } from 'node:crypto';
import type { SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';

export interface QueueOptions {
  handler: (event: SQSEvent) => Promise<SQSBatchResponse | undefined>;
  batchSize?: number;
  batchWindowMs?: number;
  visibilityTimeoutMs?: number;
  maxReceiveCount?: number;
}

interface Message {
  id: string;
  body: string;
  receiveCount: number;
  visibleAt: number;
}

export type Queue = ReturnType<typeof startQueue>;

/**
 * An SQS queue with a Lambda event source mapping: messages are delivered to the handler in batches,
 * `batchItemFailures` come back after the visibility timeout with ApproximateReceiveCount raised, and
 * a message received maxReceiveCount times moves to the dead-letter list.
 */
export function startQueue(options: QueueOptions) {
  const batchSize = options.batchSize ?? 10;
  const windowMs = options.batchWindowMs ?? 20;
  const visibilityMs = options.visibilityTimeoutMs ?? 200;
  const maxReceives = options.maxReceiveCount ?? 5;
  const messages: Message[] = [];
  const deadLetters: string[] = [];
  let delivering: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;

  const record = (message: Message): SQSRecord => ({
    messageId: message.id,
    receiptHandle: randomUUID(),
    body: message.body,
    attributes: {
      ApproximateReceiveCount: String(message.receiveCount),
      SentTimestamp: String(Date.now()),
      SenderId: 'local',
      ApproximateFirstReceiveTimestamp: String(Date.now()),
    },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:123456789012:local',
    awsRegion: 'us-east-1',
  });

  const deliver = async () => {
    while (!stopped) {
      const now = Date.now();
      const batch = messages.filter((message) => message.visibleAt <= now).slice(0, batchSize);
      if (batch.length === 0) {
        const next = Math.min(...messages.map((message) => message.visibleAt));
        if (!Number.isFinite(next)) return;
        await new Promise((resolve) => setTimeout(resolve, Math.max(5, next - now)));
        continue;
      }
      for (const message of batch) {
        message.receiveCount += 1;
        message.visibleAt = Number.POSITIVE_INFINITY;
      }
      let failed = new Set(batch.map((message) => message.id));
      try {
        const response = await options.handler({ Records: batch.map(record) });
        failed = new Set((response?.batchItemFailures ?? []).map((failure) => failure.itemIdentifier));
      } catch {
        // A handler error fails the whole batch, as with a Lambda event source mapping.
      }
      for (const message of batch) {
        const index = messages.indexOf(message);
        if (!failed.has(message.id)) messages.splice(index, 1);
        else if (message.receiveCount >= maxReceives) {
          messages.splice(index, 1);
          deadLetters.push(message.body);
        } else message.visibleAt = Date.now() + visibilityMs;
      }
    }
  };

  const schedule = () => {
    if (delivering !== undefined || timer !== undefined) return;
    timer = setTimeout(() => {
      timer = undefined;
      delivering = deliver().finally(() => {
        delivering = undefined;
        if (messages.length > 0 && !stopped) schedule();
      });
    }, windowMs);
  };

  return {
    send(body: string): void {
      messages.push({ id: randomUUID(), body, receiveCount: 0, visibleAt: Date.now() });
      schedule();
    },
    deadLetters,
    depth: () => messages.length,
    /** Resolves once the queue is empty and no batch is being handled; true when it had work. */
    async idle(): Promise<boolean> {
      let busy = false;
      while (messages.length > 0 || delivering !== undefined || timer !== undefined) {
        busy = true;
        await (delivering ?? new Promise((resolve) => setTimeout(resolve, windowMs)));
      }
      return busy;
    },
    async stop(): Promise<void> {
      stopped = true;
      clearTimeout(timer);
      await delivering;
    },
  };
}
