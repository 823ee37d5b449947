import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** An error as AWS JSON 1.1 services return it; the SDK maps `code` to its named exception class. */
export class AwsServiceError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

export type JsonVersion = '1.0' | '1.1';

export type Operation = (input: Record<string, unknown>) => Promise<unknown> | unknown;

/** A token bucket: `tps` requests per second on average, bursts up to `burst`. Off when tps is 0. */
export class RateLimiter {
  #tokens: number;
  #last = Date.now();

  constructor(
    public tps = 0,
    public burst = 1,
  ) {
    this.#tokens = burst;
  }

  tryTake(): boolean {
    if (this.tps <= 0) return true;
    const now = Date.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#last) / 1000) * this.tps);
    this.#last = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

/**
 * An HTTP endpoint speaking the AWS JSON protocol (`POST /`, `X-Amz-Target: <prefix>.<Operation>`),
 * 1.1 or, for the services that answer it (CloudWatch, SQS), 1.0, so real clients work against it
 * unchanged. Requests must carry a SigV4 Authorization
 * header; its signature is not checked (there are no real credentials to check it against).
 */
export class JsonProtocolServer {
  readonly calls = new Map<string, number>();
  readonly limiter = new RateLimiter();
  readonly #server: Server;

  private constructor(
    private readonly targetPrefix: string,
    private readonly operations: Record<string, Operation>,
    version: JsonVersion,
  ) {
    this.#server = createServer((request, response) => {
      void this.#handle(request).then(({ status, body, errorType }) => {
        response.writeHead(status, {
          'content-type': `application/x-amz-json-${version}`,
          ...(errorType ? { 'x-amzn-errortype': errorType } : {}),
        });
        response.end(body);
      });
    });
  }

  static async start(
    targetPrefix: string,
    operations: Record<string, Operation>,
    version: JsonVersion = '1.1',
  ): Promise<JsonProtocolServer> {
    const server = new JsonProtocolServer(targetPrefix, operations, version);
    await new Promise<void>((resolve) => server.#server.listen(0, '127.0.0.1', resolve));
    return server;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #handle(request: IncomingMessage): Promise<{ status: number; body: string; errorType?: string }> {
    try {
      const target = String(request.headers['x-amz-target'] ?? '');
      const [prefix, name] = target.split('.');
      const operation = name === undefined ? undefined : this.operations[name];
      if (prefix !== this.targetPrefix || operation === undefined) {
        throw new AwsServiceError('UnknownOperationException', `Unknown operation ${target}`);
      }
      if (
        !/^AWS4-HMAC-SHA256 Credential=\S+\/\d{8}\/[a-z0-9-]+\/[a-z0-9-]+\/aws4_request/.test(
          String(request.headers.authorization ?? ''),
        )
      ) {
        throw new AwsServiceError('MissingAuthenticationTokenException', 'Missing Authentication Token', 403);
      }
      this.calls.set(name!, (this.calls.get(name!) ?? 0) + 1);
      if (!this.limiter.tryTake()) throw new AwsServiceError('ThrottlingException', 'Rate exceeded');
      const chunks: Buffer[] = [];
      for await (const chunk of request) chunks.push(chunk as Buffer);
      const text = Buffer.concat(chunks).toString('utf8');
      const result = await operation!(text.length > 0 ? (JSON.parse(text) as Record<string, unknown>) : {});
      return { status: 200, body: JSON.stringify(result ?? {}) };
    } catch (error) {
      const failure =
        error instanceof AwsServiceError
          ? error
          : new AwsServiceError('InternalServerError', String(error), 500);
      return {
        status: failure.status,
        errorType: failure.code,
        body: JSON.stringify({ __type: failure.code, message: failure.message }),
      };
    }
  }
}
