import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import {
  CreateTableCommand,
  DynamoDBClient,
  ResourceInUseException,
  waitUntilTableExists,
} from '@aws-sdk/client-dynamodb';

const SERVER_PROGRAM = new URL('./dynalite-server.mjs', import.meta.url).pathname;

/**
 * DynamoDB for the local world: dynalite in a child process (a core of its own under load), reached
 * through the real SDK over HTTP. A new table is CREATING for `tableCreationMs` before it takes
 * requests, as in DynamoDB. The child ends with this process: it stops when its stdin closes.
 */
export async function startDynamo({ tableCreationMs = 0 }: { tableCreationMs?: number } = {}) {
  const child = spawn(process.execPath, [SERVER_PROGRAM, String(tableCreationMs)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const [port] = (await Promise.race([
    once(createInterface({ input: child.stdout }), 'line'),
    once(child, 'exit').then(([code]) => {
      throw new Error(`dynalite exited with ${code} before it listened`);
    }),
  ])) as [string];
  // Neither the child nor its pipes keep a test or the demo alive: the world's stop ends it.
  child.unref();
  for (const stream of [child.stdin, child.stdout]) (stream as unknown as { unref(): void }).unref();
  const endpoint = `http://127.0.0.1:${Number(port)}`;
  return {
    endpoint,
    client: () =>
      new DynamoDBClient({
        endpoint,
        region: 'us-east-1',
        credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
      }),
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = once(child, 'exit');
      child.stdin.end();
      await exited;
    },
  };
}

/**
 * Create the state table as the stack does (pk/sk strings, on-demand). Waits until it is ACTIVE:
 * dynalite flips CREATING to ACTIVE on a timer, and a busy machine can otherwise serve the first
 * write a ResourceNotFoundException.
 */
export async function createStateTable(client: DynamoDBClient, tableName: string): Promise<void> {
  try {
    await client.send(
      new CreateTableCommand({
        TableName: tableName,
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: [
          { AttributeName: 'pk', AttributeType: 'S' },
          { AttributeName: 'sk', AttributeType: 'S' },
        ],
        KeySchema: [
          { AttributeName: 'pk', KeyType: 'HASH' },
          { AttributeName: 'sk', KeyType: 'RANGE' },
        ],
      }),
    );
  } catch (error) {
    if (!(error instanceof ResourceInUseException)) throw error;
  }
  await waitUntilTableExists(
    { client, minDelay: 0.01, maxDelay: 0.1, maxWaitTime: 5 },
    { TableName: tableName },
  );
}
