import { Sha256 } from '@aws-crypto/sha256-js';
import type { fromNodeProviderChain } from '@aws-sdk/credential-providers';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { RotatorError, ValidationError } from '../errors';
import { secureOrLoopback } from '../validation';

/** An AWS service's error answer, named by its `__type` (the exception's name) as the SDK would. */
export class AwsCallError extends RotatorError {
  constructor(
    code: string,
    message: string,
    readonly status: number,
  ) {
    super(message, { context: { status } });
    this.name = code;
  }
}

/**
 * SigV4-signed requests to one AWS service, for the few reads whose SDK client this package does
 * not carry (CloudWatch and SQS over AWS JSON 1.0, EventBridge Scheduler over REST JSON). The
 * endpoint follows the SDK's rules: AWS_ENDPOINT_URL_<SERVICE>, then AWS_ENDPOINT_URL, then the
 * regional endpoint.
 */
export class SignedHttp {
  readonly endpoint: URL;
  readonly #signer: SignatureV4;

  constructor(
    private readonly options: {
      /** The signing name, which is also the regional endpoint's first label (monitoring, sqs, scheduler). */
      signingName: string;
      /** The SDK's service id in the endpoint variable's name: CLOUDWATCH, SQS, SCHEDULER. */
      endpointId: string;
      region: string;
      credentials: ReturnType<typeof fromNodeProviderChain>;
      environment: Record<string, string | undefined>;
      timeoutMs: number;
    },
  ) {
    const configured =
      options.environment[`AWS_ENDPOINT_URL_${options.endpointId}`] ?? options.environment.AWS_ENDPOINT_URL;
    this.endpoint = new URL(configured ?? `https://${options.signingName}.${options.region}.amazonaws.com`);
    if (!secureOrLoopback(this.endpoint))
      throw new ValidationError(`invalid endpoint for ${options.signingName}`, [
        'https:// required (plain http only on a loopback address)',
      ]);
    this.#signer = new SignatureV4({
      credentials: options.credentials,
      region: options.region,
      service: options.signingName,
      sha256: Sha256,
    });
  }

  /** An AWS JSON 1.0 call: `POST /` with `X-Amz-Target: <target>`. */
  json(target: string, input: Record<string, unknown>): Promise<unknown> {
    return this.#send('POST', '/', {}, JSON.stringify(input), {
      'content-type': 'application/x-amz-json-1.0',
      'x-amz-target': target,
    });
  }

  /** A REST JSON read. */
  get(path: string, query: Record<string, string>): Promise<unknown> {
    return this.#send('GET', path, query, undefined, {});
  }

  async #send(
    method: string,
    path: string,
    query: Record<string, string>,
    body: string | undefined,
    extraHeaders: Record<string, string>,
  ): Promise<unknown> {
    const { endpoint } = this;
    const signed = await this.#signer.sign(
      new HttpRequest({
        method,
        protocol: endpoint.protocol,
        hostname: endpoint.hostname,
        ...(endpoint.port === '' ? {} : { port: Number(endpoint.port) }),
        path,
        query,
        headers: { host: endpoint.host, ...extraHeaders },
        ...(body === undefined ? {} : { body }),
      }),
    );
    const url = new URL(path, endpoint);
    for (const [key, value] of Object.entries(query)) url.searchParams.set(key, value);
    // fetch sets Host itself, to the same value that was signed.
    const { host: _host, ...headers } = signed.headers;
    const response = await fetch(url, {
      method,
      headers,
      ...(body === undefined ? {} : { body }),
      redirect: 'error',
      signal: AbortSignal.timeout(this.options.timeoutMs),
    });
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = text === '' ? {} : JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    if (!response.ok) {
      const error = (parsed ?? {}) as { __type?: string; message?: string; Message?: string };
      const code = (error.__type ?? response.headers.get('x-amzn-errortype') ?? `Http${response.status}`)
        .split('#')
        .pop()!
        .split(':')[0]!;
      throw new AwsCallError(code, error.message ?? error.Message ?? response.statusText, response.status);
    }
    if (parsed === undefined)
      throw new AwsCallError(
        'MalformedResponse',
        `${this.options.signingName} answered non-JSON`,
        response.status,
      );
    return parsed;
  }
}
