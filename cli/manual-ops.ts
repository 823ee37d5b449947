import { Sha256 } from '@aws-crypto/sha256-js';
import { fromNodeProviderChain } from '@aws-sdk/credential-providers';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { CommandFailed, UsageError } from './args';

/**
 * POST the request to the manual-ops function URL, signed with SigV4 (service `lambda`) by the caller's
 * credentials: Lambda checks the signature and the function's resource policy before the function
 * runs, and hands it the identity it verified. A refusal is CommandFailed with the function's error.
 */
export async function manualRequest(
  functionUrl: string,
  payload: unknown,
  environment: Readonly<Record<string, string | undefined>>,
): Promise<unknown> {
  let url: URL;
  try {
    url = new URL(functionUrl);
  } catch {
    throw new UsageError(
      `--url ${functionUrl}: must be a URL such as https://<id>.lambda-url.<region>.on.aws/`,
    );
  }
  if (url.protocol !== 'https:' && !['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname))
    throw new UsageError(`--url ${functionUrl}: must be https (plain http only to a loopback address)`);
  const region = regionOf(url) ?? environment.AWS_REGION ?? environment.AWS_DEFAULT_REGION;
  if (region === undefined)
    throw new UsageError(`--url ${functionUrl}: names no region; set AWS_REGION to the stack's region`);
  const body = JSON.stringify(payload);
  const signed = await new SignatureV4({
    credentials: fromNodeProviderChain(),
    region,
    service: 'lambda',
    sha256: Sha256,
  }).sign(
    new HttpRequest({
      method: 'POST',
      protocol: url.protocol,
      hostname: url.hostname,
      ...(url.port === '' ? {} : { port: Number(url.port) }),
      path: url.pathname,
      headers: { host: url.host, 'content-type': 'application/json' },
      body,
    }),
  );
  // fetch sets Host itself, to the same value that was signed.
  const { host: _host, ...headers } = signed.headers;
  const response = await fetch(url, { method: 'POST', headers, body });
  const text = await response.text();
  if (!response.ok) {
    const error = parseJson(text) as
      | { errorType?: string; errorMessage?: string; Message?: string }
      | undefined;
    throw new CommandFailed(
      error?.errorMessage === undefined
        ? `${response.status} ${error?.Message ?? text}${response.status === 403 ? ' (is your role one of the deployment’s operatorRoleArns?)' : ''}`
        : `${error.errorType ?? 'Error'}: ${error.errorMessage}`,
    );
  }
  return parseJson(text) ?? null;
}

/** The region of a function URL (`https://<id>.lambda-url.<region>.on.aws/`). */
function regionOf(url: URL): string | undefined {
  return /^[a-z0-9]+\.lambda-url\.([a-z0-9-]+)\.on\.aws$/.exec(url.hostname)?.[1];
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
