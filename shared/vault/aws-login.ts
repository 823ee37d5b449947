import { Sha256 } from '@aws-crypto/sha256-js';
import { fromNodeProviderChain } from '@aws-sdk/credential-providers';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import type { AwsCredentialIdentityProvider } from '@smithy/types';
import type { Clock } from '../clock';
import { ValidationError } from '../errors';
import type { VaultClient } from './client';
import { VaultBadRequestError } from './errors';
import { GLOBAL_STS_ENDPOINT, stsEndpointRegion } from './sts';

const GET_CALLER_IDENTITY_BODY = 'Action=GetCallerIdentity&Version=2011-06-15';
const SERVER_ID_HEADER = 'x-vault-aws-iam-server-id';

/** A Vault login: the token and its accessor are secrets to the caller and are never logged. */
export interface VaultLogin {
  token: string;
  accessor: string;
  ttl: number;
}

export interface AwsIamLoginOptions {
  /** Mount path of the AWS auth method, e.g. `aws`. */
  mount: string;
  role: string;
  /** Sent and signed as X-Vault-AWS-IAM-Server-ID when the auth method requires it. */
  serverIdHeader?: string;
  /** The STS the request is addressed and signed for; the global endpoint (us-east-1) when omitted. */
  sts?: StsTarget;
  /** The function's credentials; the Node provider chain (Lambda's environment) when omitted. */
  credentials?: AwsCredentialIdentityProvider;
  clock?: Clock;
}

/** An STS endpoint and the region its requests are signed for (config keeps the two consistent). */
export interface StsTarget {
  endpoint: string;
  region: string;
}

/** The four login fields Vault's IAM method expects, as Vault's own Go helper builds them. */
export interface IamLoginData {
  iam_http_request_method: 'POST';
  iam_request_url: string;
  iam_request_body: string;
  iam_request_headers: string;
}

/**
 * Sign `sts:GetCallerIdentity` with the caller's credentials without sending it: Vault sends it to STS
 * and learns who we are from the answer, so no static secret is needed anywhere.
 */
export async function buildIamLoginData(options: {
  credentials: AwsCredentialIdentityProvider;
  serverIdHeader?: string;
  sts?: StsTarget;
  signingDate?: Date;
}): Promise<IamLoginData> {
  const sts = options.sts ?? { endpoint: GLOBAL_STS_ENDPOINT, region: 'us-east-1' };
  if (stsEndpointRegion(sts.endpoint) !== sts.region) {
    throw new ValidationError(
      `STS endpoint ${sts.endpoint} is not signed for region ${sts.region}; STS would refuse the login`,
    );
  }
  const host = new URL(sts.endpoint).hostname;
  const headers: Record<string, string> = {
    host,
    'content-type': 'application/x-www-form-urlencoded; charset=utf-8',
  };
  if (options.serverIdHeader !== undefined) headers[SERVER_ID_HEADER] = options.serverIdHeader;
  const request = new HttpRequest({
    method: 'POST',
    protocol: 'https:',
    hostname: host,
    path: '/',
    headers,
    body: GET_CALLER_IDENTITY_BODY,
  });
  const signer = new SignatureV4({
    credentials: options.credentials,
    region: sts.region,
    service: 'sts',
    sha256: Sha256,
    // Go's STS client does not send x-amz-content-sha256; keep the request exactly as Vault expects it.
    applyChecksum: false,
  });
  const signed = await signer.sign(request, options.signingDate ? { signingDate: options.signingDate } : {});
  return {
    iam_http_request_method: 'POST',
    iam_request_url: base64(`https://${host}/`),
    iam_request_body: base64(GET_CALLER_IDENTITY_BODY),
    iam_request_headers: base64(JSON.stringify(goHttpHeader(signed.headers))),
  };
}

interface LoginResponse {
  auth?: { client_token?: string; accessor?: string; lease_duration?: number } | null;
}

/** Log in to Vault's AWS auth method with the function's IAM identity. */
export async function awsIamLogin(vault: VaultClient, options: AwsIamLoginOptions): Promise<VaultLogin> {
  const credentials = options.credentials ?? fromNodeProviderChain();
  const loginData = await buildIamLoginData({
    credentials,
    ...(options.serverIdHeader !== undefined ? { serverIdHeader: options.serverIdHeader } : {}),
    ...(options.sts !== undefined ? { sts: options.sts } : {}),
    ...(options.clock ? { signingDate: new Date(options.clock.now()) } : {}),
  });
  const path = `auth/${options.mount}/login`;
  // The login path is unauthenticated: an explicit empty token keeps any cached token out of it.
  const response = await vault.write<LoginResponse>(path, { role: options.role, ...loginData }, '');
  const auth = response.auth;
  if (typeof auth?.client_token !== 'string' || typeof auth.accessor !== 'string') {
    throw new VaultBadRequestError(`Vault ${path} answered without a token for role ${options.role}`);
  }
  return { token: auth.client_token, accessor: auth.accessor, ttl: auth.lease_duration ?? 0 };
}

/** Headers as Go's `json.Marshal(http.Header)`: canonical names, each value a list; Host is not a header in Go. */
function goHttpHeader(headers: Record<string, string>): Record<string, string[]> {
  const result: Record<string, string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (name.toLowerCase() === 'host') continue;
    result[canonicalHeaderName(name)] = [value];
  }
  return result;
}

function canonicalHeaderName(name: string): string {
  return name
    .toLowerCase()
    .split('-')
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
    .join('-');
}

function base64(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64');
}
