import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Sha256 } from '@aws-crypto/sha256-js';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import type { InvocationContext } from '../../functions/context';

export type LambdaHandler = (event: never, context: InvocationContext) => Promise<unknown>;

/** An IAM identity of the local world: its access key, and who AWS says signs with it. */
export interface AwsPrincipal {
  accessKeyId: string;
  secretAccessKey: string;
  /** What IAM reports as the caller: for a role, the assumed-role session ARN. */
  arn: string;
  /** The role a resource policy names for this session (path included). */
  roleArn: string;
  accountId: string;
  /** The caller's unique id as IAM gives it (`AROA…:session` for a role session). */
  userId: string;
}

export interface FunctionUrlOptions {
  /** The roles the function's resource policy allows (InvokeFunctionUrl + InvokeFunction via the URL). */
  allowedRoleArns: readonly string[];
  /** The function's reserved concurrency: calls beyond it are throttled with 429. */
  reservedConcurrency: number;
  timeoutMs: number;
}

/** What a function URL answers: the function's statusCode, headers and body, or the front end's refusal. */
export interface FunctionUrlAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * Lambda for the local world. Functions are invoked in-process the way the services that trigger them
 * do (the scheduler, Secrets Manager). A function URL with AuthType AWS_IAM is served over HTTP as
 * Lambda serves it: the request must carry a SigV4 signature (service `lambda`) by a known access key,
 * recomputed here with that key's secret; the signer's role must be allowed by the function's resource
 * policy; otherwise 403 `{"Message":"Forbidden"}` before the function runs. The identity Lambda
 * verified reaches the function as `requestContext.authorizer.iam`. Not modelled: identity-based
 * policies (the world's principals hold none for Lambda) and direct Invoke over HTTP.
 */
export class LambdaEmulator {
  readonly #functions = new Map<string, LambdaHandler>();
  readonly #urls: FunctionUrl[] = [];

  constructor(
    private readonly options: { region: string; accountId: string; principals: readonly AwsPrincipal[] },
  ) {}

  register(name: string, handler: LambdaHandler): void {
    this.#functions.set(name, handler);
  }

  /** Invoke in-process, as an AWS service does (used by schedules, rotation and the demo). */
  async invoke(name: string, event: unknown, timeoutMs = 900_000): Promise<unknown> {
    const handler = this.#functions.get(name);
    if (handler === undefined) throw new Error(`Function not found: ${name}`);
    return handler(event as never, invocationContext(timeoutMs));
  }

  /** Give a registered function an IAM-authenticated function URL on a listener of its own. */
  async addFunctionUrl(name: string, options: FunctionUrlOptions): Promise<FunctionUrl> {
    if (!this.#functions.has(name)) throw new Error(`Function not found: ${name}`);
    const url = new FunctionUrl(
      (event, timeoutMs) => this.invoke(name, event, timeoutMs),
      options,
      this.options,
    );
    await url.listen();
    this.#urls.push(url);
    return url;
  }

  async stop(): Promise<void> {
    for (const url of this.#urls) await url.stop();
  }
}

const FORBIDDEN: FunctionUrlAnswer = {
  status: 403,
  headers: { 'content-type': 'application/json', 'x-amzn-errortype': 'AccessDeniedException' },
  body: JSON.stringify({ Message: 'Forbidden' }),
};

/** Lambda signs nothing older or newer than this against its own clock. */
const SIGNATURE_SKEW_MS = 15 * 60_000;

export class FunctionUrl {
  readonly #server: Server = createServer();
  #running = 0;

  constructor(
    private readonly invokeFunction: (event: unknown, timeoutMs: number) => Promise<unknown>,
    private readonly options: FunctionUrlOptions,
    private readonly account: { region: string; accountId: string; principals: readonly AwsPrincipal[] },
  ) {
    this.#server.on('request', (request, response) => {
      void this.#handle(request).then(({ status, headers, body }) => {
        response.writeHead(status, headers);
        response.end(body);
      });
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}/`;
  }

  /**
   * A call by `principal` as if it had signed correctly: the same resource policy, concurrency and
   * event as the HTTP path, without a signature (the world's own callers, such as the demo).
   */
  invokeAs(principal: AwsPrincipal, body: string): Promise<FunctionUrlAnswer> {
    const host = new URL(this.url).host;
    return this.#authorizedCall(principal, { method: 'POST', path: '/', query: '', host, headers: {}, body });
  }

  async #handle(request: IncomingMessage): Promise<FunctionUrlAnswer> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    const url = new URL(request.url ?? '/', 'http://function-url');
    const headers = Object.fromEntries(
      Object.entries(request.headers).map(([name, value]) => [
        name,
        Array.isArray(value) ? value.join(',') : (value ?? ''),
      ]),
    );
    const call = {
      method: request.method ?? 'GET',
      path: url.pathname,
      query: url.search.slice(1),
      host: headers.host ?? '',
      headers,
      body,
    };
    const principal = await this.#signer(call);
    if (principal === undefined) return FORBIDDEN;
    return this.#authorizedCall(principal, call);
  }

  /** The principal whose signature the request carries, or undefined: unsigned, unknown key, or forged. */
  async #signer(call: HttpCall): Promise<AwsPrincipal | undefined> {
    const match =
      /^AWS4-HMAC-SHA256 Credential=([A-Z0-9]+)\/(\d{8})\/([a-z0-9-]+)\/lambda\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/.exec(
        call.headers.authorization ?? '',
      );
    const amzDate = call.headers['x-amz-date'];
    if (match === null || amzDate === undefined) return undefined;
    const [, accessKeyId, , region, signedHeaderList, signature] = match;
    const principal = this.account.principals.find((candidate) => candidate.accessKeyId === accessKeyId);
    if (principal === undefined || region !== this.account.region) return undefined;
    const signedHeaders = signedHeaderList!.split(';');
    if (!signedHeaders.includes('host') || !signedHeaders.includes('x-amz-date')) return undefined;
    const signingDate = parseAmzDate(amzDate);
    if (signingDate === undefined || Math.abs(Date.now() - signingDate.getTime()) > SIGNATURE_SKEW_MS)
      return undefined;
    // The signature covers the body through its hash: a declared hash must be the body's own.
    const declaredHash = call.headers['x-amz-content-sha256'];
    if (declaredHash !== undefined && declaredHash !== createHash('sha256').update(call.body).digest('hex'))
      return undefined;
    const [hostname, port] = call.host.split(':');
    const expected = await new SignatureV4({
      credentials: {
        accessKeyId: principal.accessKeyId,
        secretAccessKey: principal.secretAccessKey,
        ...(call.headers['x-amz-security-token'] === undefined
          ? {}
          : { sessionToken: call.headers['x-amz-security-token'] }),
      },
      region: this.account.region,
      service: 'lambda',
      sha256: Sha256,
    }).sign(
      new HttpRequest({
        method: call.method,
        protocol: 'http:',
        hostname: hostname!,
        ...(port === undefined ? {} : { port: Number(port) }),
        path: call.path,
        query: Object.fromEntries(new URLSearchParams(call.query)),
        headers: Object.fromEntries(signedHeaders.map((name) => [name, call.headers[name] ?? ''])),
        body: call.body,
      }),
      { signingDate },
    );
    const computed = /Signature=([0-9a-f]{64})$/.exec(String(expected.headers.authorization))?.[1] ?? '';
    const same =
      computed.length === signature!.length &&
      timingSafeEqual(Buffer.from(computed), Buffer.from(signature!));
    return same ? principal : undefined;
  }

  async #authorizedCall(principal: AwsPrincipal, call: HttpCall): Promise<FunctionUrlAnswer> {
    if (!this.options.allowedRoleArns.includes(principal.roleArn)) return FORBIDDEN;
    if (this.#running >= this.options.reservedConcurrency) {
      return {
        status: 429,
        headers: { 'content-type': 'application/json', 'x-amzn-errortype': 'TooManyRequestsException' },
        body: JSON.stringify({ Message: 'Rate Exceeded.' }),
      };
    }
    this.#running += 1;
    try {
      const result = await this.invokeFunction(urlEvent(principal, call), this.options.timeoutMs);
      return responseFrom(result);
    } catch {
      return {
        status: 502,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ Message: 'Internal Server Error' }),
      };
    } finally {
      this.#running -= 1;
    }
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

interface HttpCall {
  method: string;
  path: string;
  query: string;
  host: string;
  headers: Record<string, string>;
  body: string;
}

/** The function URL event (payload format 2.0) as Lambda builds it for an IAM-authorized call. */
function urlEvent(principal: AwsPrincipal, call: HttpCall): unknown {
  const now = Date.now();
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: call.path,
    rawQueryString: call.query,
    headers: call.headers,
    requestContext: {
      accountId: principal.accountId,
      apiId: 'local',
      authorizer: {
        iam: {
          accessKey: principal.accessKeyId,
          accountId: principal.accountId,
          callerId: principal.userId,
          cognitoIdentity: null,
          principalOrgId: null,
          userArn: principal.arn,
          userId: principal.userId,
        },
      },
      domainName: call.host,
      domainPrefix: 'local',
      http: {
        method: call.method,
        path: call.path,
        protocol: 'HTTP/1.1',
        sourceIp: '127.0.0.1',
        userAgent: call.headers['user-agent'] ?? '',
      },
      requestId: randomUUID(),
      routeKey: '$default',
      stage: '$default',
      time: new Date(now).toISOString(),
      timeEpoch: now,
    },
    body: call.body,
    isBase64Encoded: false,
  };
}

/** A result with a statusCode is the HTTP answer; anything else is sent as a 200 JSON body, as Lambda does. */
function responseFrom(result: unknown): FunctionUrlAnswer {
  if (typeof result === 'object' && result !== null && 'statusCode' in result) {
    const shaped = result as { statusCode: number; headers?: Record<string, string>; body?: string };
    return { status: shaped.statusCode, headers: shaped.headers ?? {}, body: shaped.body ?? '' };
  }
  return {
    status: 200,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(result ?? null),
  };
}

function parseAmzDate(text: string): Date | undefined {
  const match = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(text);
  if (match === null) return undefined;
  const [, year, month, day, hour, minute, second] = match.map(Number);
  return new Date(Date.UTC(year!, month! - 1, day!, hour!, minute!, second!));
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
