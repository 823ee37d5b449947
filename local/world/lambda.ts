import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { InvocationContext } from '../../functions/context';

export type LambdaHandler = (event: never, context: InvocationContext) => Promise<unknown>;

/**
 * The Lambda Invoke API (`POST /2015-03-31/functions/<name>/invocations`) for the local world, so the
 * operator CLI's real LambdaClient reaches the same handlers the world runs. A handler that throws
 * answers like Lambda: 200 with `X-Amz-Function-Error: Unhandled` and `{errorType, errorMessage}`.
 */
export class LambdaInvokeEmulator {
  readonly #functions = new Map<string, LambdaHandler>();
  readonly #server: Server;

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(): Promise<LambdaInvokeEmulator> {
    const emulator = new LambdaInvokeEmulator(createServer());
    emulator.#server.on('request', (request, response) => {
      void emulator.#handle(request).then(({ status, headers, body }) => {
        response.writeHead(status, { 'content-type': 'application/json', ...headers });
        response.end(body);
      });
    });
    await new Promise<void>((resolve) => emulator.#server.listen(0, '127.0.0.1', resolve));
    return emulator;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  register(name: string, handler: LambdaHandler): void {
    this.#functions.set(name, handler);
  }

  /** Invoke in-process, exactly as the HTTP path does (used by schedules and the demo). */
  async invoke(name: string, event: unknown, timeoutMs = 900_000): Promise<unknown> {
    const handler = this.#functions.get(name);
    if (handler === undefined) throw new Error(`Function not found: ${name}`);
    return handler(event as never, invocationContext(timeoutMs));
  }

  async #handle(
    request: IncomingMessage,
  ): Promise<{ status: number; headers: Record<string, string>; body: string }> {
    const match = /^\/2015-03-31\/functions\/([^/]+)\/invocations/.exec(request.url ?? '');
    const name = match ? decodeURIComponent(match[1]!).split(':').at(-1)! : undefined;
    if (request.method !== 'POST' || name === undefined || !this.#functions.has(name)) {
      return {
        status: 404,
        headers: { 'x-amzn-errortype': 'ResourceNotFoundException' },
        body: JSON.stringify({ Type: 'User', message: `Function not found: ${name ?? request.url}` }),
      };
    }
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    try {
      const result = await this.invoke(name, text.length > 0 ? JSON.parse(text) : {});
      return { status: 200, headers: {}, body: JSON.stringify(result ?? null) };
    } catch (error) {
      const failure = error instanceof Error ? error : new Error(String(error));
      return {
        status: 200,
        headers: { 'x-amz-function-error': 'Unhandled' },
        body: JSON.stringify({ errorType: failure.name, errorMessage: failure.message }),
      };
    }
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

let invocations = 0;

/** A Lambda-like context for one invocation: a request id and a countdown from the timeout. */
export function invocationContext(timeoutMs: number): InvocationContext {
  const started = Date.now();
  invocations += 1;
  return {
    awsRequestId: `local-${invocations}-${started}`,
    getRemainingTimeInMillis: () => Math.max(0, timeoutMs - (Date.now() - started)),
  };
}
