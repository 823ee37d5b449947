import { randomUUID } from 'node:crypto';
import { AwsServiceError, JsonProtocolServer } from './json-protocol';

/** A queue as the SQS API sees it: its messages waiting, and a way to add one. */
export interface QueueBacking {
  depth(): number;
  send(body: string): void;
  purge(): void;
}

const ACCOUNT = '123456789012';
const MAX_MESSAGE_BYTES = 256 * 1024;

export type SqsEmulator = Awaited<ReturnType<typeof startSqsEmulator>>;

/**
 * The SQS API over AWS JSON 1.0 (target AmazonSQS) in front of the world's queues: GetQueueAttributes
 * for ApproximateNumberOfMessages, SendMessage and PurgeQueue, on queue URLs of the form SQS returns
 * (`<endpoint>/<account>/<name>`). The queues themselves stay in-process (local/aws/queue.ts).
 */
export async function startSqsEmulator() {
  const queues = new Map<string, QueueBacking>();
  const queueOf = (input: Record<string, unknown>): QueueBacking => {
    const name = /^[^/]+:\/\/[^/]+\/\d{12}\/([A-Za-z0-9_-]{1,80})$/.exec(String(input.QueueUrl ?? ''))?.[1];
    const queue = name === undefined ? undefined : queues.get(name);
    if (queue === undefined)
      throw new AwsServiceError(
        'AWS.SimpleQueueService.NonExistentQueue',
        'The specified queue does not exist.',
      );
    return queue;
  };

  const getQueueAttributes = (input: Record<string, unknown>) => {
    const queue = queueOf(input);
    const names = (input.AttributeNames as string[] | undefined) ?? [];
    const known = ['All', 'ApproximateNumberOfMessages'];
    const unknown = names.find((name) => !known.includes(name));
    if (unknown !== undefined)
      throw new AwsServiceError('InvalidAttributeName', `Unknown Attribute ${unknown}.`);
    return names.length === 0 ? {} : { Attributes: { ApproximateNumberOfMessages: String(queue.depth()) } };
  };

  const sendMessage = (input: Record<string, unknown>) => {
    const queue = queueOf(input);
    const body = input.MessageBody;
    if (typeof body !== 'string' || body.length === 0 || Buffer.byteLength(body) > MAX_MESSAGE_BYTES)
      throw new AwsServiceError('InvalidParameterValue', 'MessageBody must be 1 byte to 256 KiB');
    queue.send(body);
    return { MessageId: randomUUID() };
  };

  const purgeQueue = (input: Record<string, unknown>) => {
    queueOf(input).purge();
    return {};
  };

  const server = await JsonProtocolServer.start(
    'AmazonSQS',
    { GetQueueAttributes: getQueueAttributes, SendMessage: sendMessage, PurgeQueue: purgeQueue },
    '1.0',
  );
  return {
    endpoint: server.endpoint,
    /** Serve a queue under `name`; answers its URL. */
    register: (name: string, queue: QueueBacking): string => {
      queues.set(name, queue);
      return `${server.endpoint}/${ACCOUNT}/${name}`;
    },
    stop: () => server.stop(),
  };
}
