import { Sha256 } from '@aws-crypto/sha256-js';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEVELOPER, OPERATOR } from '../../local/world';
import { type AwsPrincipal, type FunctionUrl, LambdaEmulator } from '../../local/world/lambda';

let lambda: LambdaEmulator;
let url: FunctionUrl;
/** Every event the function received: a refused request never reaches it. */
let received: { requestContext: { authorizer: { iam: { userArn: string } } }; body: string }[];
let release: () => void = () => {};
let blocking: Promise<void>;

beforeEach(async () => {
  received = [];
  blocking = Promise.resolve();
  lambda = new LambdaEmulator({
    region: 'us-east-1',
    accountId: '123456789012',
    principals: [OPERATOR, DEVELOPER],
  });
  lambda.register('manual', async (event: never) => {
    received.push(event);
    await blocking;
    return { statusCode: 200, headers: { 'content-type': 'application/json' }, body: '{"ok":true}' };
  });
  url = await lambda.addFunctionUrl('manual', {
    allowedRoleArns: [OPERATOR.roleArn],
    reservedConcurrency: 2,
    timeoutMs: 10_000,
  });
});

afterEach(async () => {
  release();
  await lambda.stop();
});

/** A POST signed as the CLI signs it (SigV4, service lambda), optionally altered after signing. */
async function post(
  as: Pick<AwsPrincipal, 'accessKeyId' | 'secretAccessKey'> | undefined,
  body: string,
  alter: (
    headers: Record<string, string>,
    body: string,
  ) => { headers: Record<string, string>; body: string } = (headers) => ({
    headers,
    body,
  }),
): Promise<Response> {
  const target = new URL(url.url);
  let headers: Record<string, string> = { 'content-type': 'application/json' };
  if (as !== undefined) {
    const signed = await new SignatureV4({
      credentials: { accessKeyId: as.accessKeyId, secretAccessKey: as.secretAccessKey },
      region: 'us-east-1',
      service: 'lambda',
      sha256: Sha256,
    }).sign(
      new HttpRequest({
        method: 'POST',
        protocol: 'http:',
        hostname: target.hostname,
        port: Number(target.port),
        path: '/',
        headers: { host: target.host, 'content-type': 'application/json' },
        body,
      }),
    );
    const { host: _host, ...rest } = signed.headers;
    headers = rest;
  }
  const sent = alter(headers, body);
  return fetch(target, { method: 'POST', headers: sent.headers, body: sent.body });
}

describe('function URL with AuthType AWS_IAM (local world)', () => {
  it('runs the function for a named operator role and hands it the identity it verified', async () => {
    const response = await post(OPERATOR, '{"action":"plan"}');

    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ ok: true });
    expect(received.map((event) => event.requestContext.authorizer.iam.userArn)).toEqual([OPERATOR.arn]);
    expect(received[0]?.body).toBe('{"action":"plan"}');
  });

  it.each([
    ['unsigned', undefined],
    ['signed by a role the deployment did not name', DEVELOPER],
    ['signed with an unknown access key', { accessKeyId: 'ASIAUNKNOWN', secretAccessKey: 'x' }],
    ['signed with a known key id but the wrong secret', { ...OPERATOR, secretAccessKey: 'guessed' }],
  ])('answers 403 before the function runs when %s', async (_case, principal) => {
    const response = await post(principal, '{"action":"reissue"}');

    expect(response.status).toBe(403);
    expect(await response.json()).toEqual({ Message: 'Forbidden' });
    expect(received).toEqual([]);
  });

  it('answers 403 to a signed request whose body was changed afterwards', async () => {
    const response = await post(OPERATOR, '{"action":"plan"}', (headers) => ({
      headers,
      body: '{"action":"reissue"}',
    }));

    expect(response.status).toBe(403);
    expect(received).toEqual([]);
  });

  it('throttles calls beyond the reserved concurrency with 429, and takes them again once one ends', async () => {
    blocking = new Promise<void>((resolve) => {
      release = resolve;
    });
    const running = [post(OPERATOR, '{}'), post(OPERATOR, '{}')];
    while (received.length < 2) await new Promise((resolve) => setTimeout(resolve, 5));

    const throttled = await post(OPERATOR, '{}');
    release();
    const finished = await Promise.all(running);
    const after = await post(OPERATOR, '{}');

    expect(throttled.status).toBe(429);
    expect(finished.map((response) => response.status)).toEqual([200, 200]);
    expect(after.status).toBe(200);
  });
});
