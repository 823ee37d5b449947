import { badRequest, list, seconds } from './protocol';

interface AwsRole {
  auth_type: string;
  bound_iam_principal_arn: string[];
  token_policies: string[];
  token_ttl: number;
  token_max_ttl: number;
  token_period: number;
}

export interface AwsLoginResult {
  role: string;
  policies: string[];
  ttl: number;
  period: number;
  metadata: Record<string, string>;
}

const STS_BODY = 'Action=GetCallerIdentity&Version=2011-06-15';

/**
 * The AWS auth method's IAM login. Vault would replay the signed GetCallerIdentity request to STS and
 * take the caller ARN from the answer. There is no STS here, so THE SIGNATURE IS NOT VERIFIED: the
 * caller is the identity configured for the request's access key id. Everything else Vault checks
 * is checked: method, URL, body, the Authorization header's form, X-Amz-Date, the server-id header.
 */
export class AwsAuthMethod {
  readonly #roles = new Map<string, AwsRole>();
  /** Unset until config/client is written: Vault then answers its read with 404. */
  #serverIdHeader: string | undefined;

  constructor(private readonly identities: Record<string, string>) {}

  config(): Record<string, unknown> | undefined {
    return this.#serverIdHeader === undefined
      ? undefined
      : { iam_server_id_header_value: this.#serverIdHeader };
  }

  writeConfig(body: Record<string, unknown>): void {
    this.#serverIdHeader = String(body.iam_server_id_header_value ?? '');
  }

  role(name: string): AwsRole | undefined {
    return this.#roles.get(name);
  }

  writeRole(name: string, body: Record<string, unknown>): void {
    this.#roles.set(name, {
      auth_type: String(body.auth_type ?? 'iam'),
      bound_iam_principal_arn: list(body.bound_iam_principal_arn),
      token_policies: list(body.token_policies ?? body.policies),
      token_ttl: seconds(body.token_ttl),
      token_max_ttl: seconds(body.token_max_ttl),
      token_period: seconds(body.token_period),
    });
  }

  login(body: Record<string, unknown>): AwsLoginResult {
    const decode = (field: string) => {
      const value = body[field];
      if (value === undefined || value === '') throw badRequest(`missing ${field}`);
      try {
        return Buffer.from(String(value), 'base64').toString('utf8');
      } catch {
        throw badRequest(`failed to base64 decode ${field}`);
      }
    };
    if (String(body.iam_http_request_method ?? '') !== 'POST') {
      throw badRequest("invalid iam_http_request_method; currently only 'POST' is supported");
    }
    const url = decode('iam_request_url');
    if (!/^https:\/\/sts(\.[a-z0-9-]+)?\.amazonaws\.com\/?$/.test(url))
      throw badRequest(`error making upstream request: unexpected endpoint ${url}`);
    if (decode('iam_request_body') !== STS_BODY)
      throw badRequest('error making upstream request: not a GetCallerIdentity request');
    const headers = normaliseHeaders(
      JSON.parse(decode('iam_request_headers')) as Record<string, string | string[]>,
    );
    const authorization = headers.authorization ?? '';
    const credential =
      /^AWS4-HMAC-SHA256 Credential=([A-Z0-9]+)\/\d{8}\/[a-z0-9-]+\/sts\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=[0-9a-f]+$/.exec(
        authorization,
      );
    if (credential === null || headers['x-amz-date'] === undefined)
      throw badRequest('error making upstream request: missing or malformed signature');
    if (this.#serverIdHeader !== undefined && this.#serverIdHeader !== '') {
      const sent = headers['x-vault-aws-iam-server-id'];
      if (sent === undefined)
        throw badRequest(
          'error validating X-Vault-AWS-IAM-Server-ID header: missing header "X-Vault-AWS-IAM-Server-ID"',
        );
      if (sent !== this.#serverIdHeader)
        throw badRequest(
          `error validating X-Vault-AWS-IAM-Server-ID header: expected "${this.#serverIdHeader}" but got "${sent}"`,
        );
      if (!credential[2]!.split(';').includes('x-vault-aws-iam-server-id'))
        throw badRequest("error validating X-Vault-AWS-IAM-Server-ID header: vault header wasn't signed");
    }
    const callerArn = this.identities[credential[1]!];
    if (callerArn === undefined)
      throw badRequest(
        'error making upstream request: received error code 403 from STS: InvalidClientTokenId',
      );
    const roleName = String(body.role ?? '');
    const role = this.#roles.get(roleName);
    if (role === undefined) throw badRequest(`entry for role ${roleName} not found`);
    if (role.auth_type !== 'iam') throw badRequest(`auth method iam not allowed for role ${roleName}`);
    const canonical = canonicalArn(callerArn);
    if (!role.bound_iam_principal_arn.includes(canonical)) {
      throw badRequest(`IAM Principal "${callerArn}" does not belong to the role "${roleName}"`);
    }
    return {
      role: roleName,
      policies: role.token_policies,
      ttl: role.token_ttl,
      period: role.token_period,
      metadata: {
        client_arn: callerArn,
        canonical_arn: canonical,
        auth_type: 'iam',
        role_id: roleName,
        account_id: canonical.split(':')[4] ?? '',
      },
    };
  }
}

function normaliseHeaders(headers: Record<string, string | string[]>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(headers).map(([key, value]) => [
      key.toLowerCase(),
      Array.isArray(value) ? value.join(',') : value,
    ]),
  );
}

/** arn:aws:sts::<acct>:assumed-role/<Role>/<session> → arn:aws:iam::<acct>:role/<Role>, as Vault's parseIamArn. */
function canonicalArn(arn: string): string {
  const assumed = /^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role\/([^/]+)\/.+$/.exec(arn);
  return assumed ? `arn:${assumed[1]}:iam::${assumed[2]}:role/${assumed[3]}` : arn;
}
