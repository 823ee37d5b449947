import { createHash, randomBytes } from 'node:crypto';
import { badRequest, bool, list, seconds } from './protocol';

interface AwsRole {
  auth_type: string;
  bound_iam_principal_arn: string[];
  /** The IAM unique ids the ARNs resolved to when the role was written (resolve_aws_unique_ids). */
  bound_iam_principal_id: string[];
  resolve_aws_unique_ids: boolean;
  token_policies: string[];
  token_ttl: number;
  token_max_ttl: number;
  token_period: number;
  token_no_default_policy: boolean;
}

/**
 * The IAM roles behind the callers, as IAM GetRole would answer Vault: every role has a unique id
 * (AROA…) that changes when the role is deleted and created again under the same name.
 */
export class IamDirectory {
  readonly #uniqueIds = new Map<string, string>();
  /** Whether Vault's own AWS credentials may call iam:GetRole. */
  vaultCanGetRole = true;

  uniqueId(roleArn: string): string {
    let id = this.#uniqueIds.get(roleArn);
    if (id === undefined) {
      id = uniqueIdFrom(createHash('sha256').update(roleArn).digest());
      this.#uniqueIds.set(roleArn, id);
    }
    return id;
  }

  /** Delete and recreate the role: same name and ARN, a new unique id. */
  recreate(roleArn: string): void {
    this.#uniqueIds.set(roleArn, uniqueIdFrom(randomBytes(32)));
  }
}

function uniqueIdFrom(bytes: Buffer): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  return `AROA${[...bytes.subarray(0, 17)].map((byte) => alphabet[byte % 32]).join('')}`;
}

/** config/client fields the emulator models; Vault reports "" for what was never set. */
interface ClientConfig {
  iam_server_id_header_value: string;
  sts_endpoint: string;
  sts_region: string;
  use_sts_region_from_client: boolean;
}

export interface AwsLoginResult {
  role: string;
  policies: string[];
  ttl: number;
  period: number;
  noDefaultPolicy: boolean;
  metadata: Record<string, string>;
}

/**
 * The AWS auth method's IAM login. Vault would replay the signed GetCallerIdentity request to STS and
 * take the caller ARN from the answer. There is no STS here, so THE SIGNATURE IS NOT VERIFIED: the
 * caller is the identity configured for the request's access key id. Everything else Vault checks
 * is checked: method, URL, body, the Authorization header's form, X-Amz-Date, the server-id header.
 */
export class AwsAuthMethod {
  readonly #roles = new Map<string, AwsRole>();
  /** Unset until config/client is written: Vault then answers its read with 404. */
  #config: ClientConfig | undefined;

  constructor(
    private readonly identities: Record<string, string>,
    private readonly iam: IamDirectory,
  ) {}

  config(): ClientConfig | undefined {
    return this.#config;
  }

  writeConfig(body: Record<string, unknown>): void {
    const current = this.#config ?? {
      iam_server_id_header_value: '',
      sts_endpoint: '',
      sts_region: '',
      use_sts_region_from_client: false,
    };
    this.#config = {
      iam_server_id_header_value: String(
        body.iam_server_id_header_value ?? current.iam_server_id_header_value,
      ),
      sts_endpoint: String(body.sts_endpoint ?? current.sts_endpoint),
      sts_region: String(body.sts_region ?? current.sts_region),
      use_sts_region_from_client: bool(body.use_sts_region_from_client, current.use_sts_region_from_client),
    };
  }

  role(name: string): AwsRole | undefined {
    return this.#roles.get(name);
  }

  /**
   * path_role.go: a write updates the fields it names and keeps the rest. resolve_aws_unique_ids
   * defaults to true on create and cannot be turned off later; with it, every bound ARN without a
   * wildcard is resolved through IAM with Vault's own credentials whenever the ARNs are written.
   */
  writeRole(name: string, body: Record<string, unknown>): void {
    const existing = this.#roles.get(name);
    const resolve = bool(body.resolve_aws_unique_ids, existing?.resolve_aws_unique_ids ?? true);
    if (existing?.resolve_aws_unique_ids && !resolve)
      throw badRequest('changing resolve_aws_unique_ids from true to false is not allowed');
    const arns =
      body.bound_iam_principal_arn === undefined
        ? (existing?.bound_iam_principal_arn ?? [])
        : list(body.bound_iam_principal_arn);
    let ids = body.bound_iam_principal_arn === undefined ? (existing?.bound_iam_principal_id ?? []) : [];
    if (!resolve) ids = [];
    else if (ids.length === 0)
      ids = arns.filter((arn) => !arn.endsWith('*')).map((arn) => this.#resolve(arn));
    const policies = body.token_policies ?? body.policies;
    this.#roles.set(name, {
      auth_type: String(body.auth_type ?? existing?.auth_type ?? 'iam'),
      bound_iam_principal_arn: arns,
      bound_iam_principal_id: ids,
      resolve_aws_unique_ids: resolve,
      token_policies: policies === undefined ? (existing?.token_policies ?? []) : list(policies),
      token_ttl: body.token_ttl === undefined ? (existing?.token_ttl ?? 0) : seconds(body.token_ttl),
      token_max_ttl:
        body.token_max_ttl === undefined ? (existing?.token_max_ttl ?? 0) : seconds(body.token_max_ttl),
      token_period:
        body.token_period === undefined ? (existing?.token_period ?? 0) : seconds(body.token_period),
      token_no_default_policy: bool(body.token_no_default_policy, existing?.token_no_default_policy ?? false),
    });
  }

  /** iam:GetRole with Vault's own credentials, as resolveArnToRealUniqueId does. */
  #resolve(arn: string): string {
    if (!this.iam.vaultCanGetRole) {
      throw badRequest(
        `unable to resolve ARN "${arn}" to internal ID: AccessDenied: User: arn:aws:iam::${arn.split(':')[4]}:user/vault-server is not authorized to perform: iam:GetRole on resource: role ${arn.split('/').at(-1)}`,
      );
    }
    return this.iam.uniqueId(arn);
  }

  /** The region of the STS endpoint Vault sends the request to (path_login.go), as that STS checks the scope. */
  #stsRegion(clientScope: string): string {
    const config = this.#config;
    if (config?.use_sts_region_from_client) return clientScope;
    if (config?.sts_region) return config.sts_region;
    const host = config?.sts_endpoint ? new URL(config.sts_endpoint).hostname : 'sts.amazonaws.com';
    return /^sts(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$/.exec(host)?.[1] ?? 'us-east-1';
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
    // path_login.go: a query string is refused outright, the body may hold Action and Version only.
    if (URL.canParse(url) && new URL(url).search !== '') throw badRequest('invalid request');
    if (!STS_URL.test(url)) throw badRequest(`error making upstream request: unexpected endpoint ${url}`);
    const form = new URLSearchParams(decode('iam_request_body'));
    if (
      form.getAll('Action').join() !== 'GetCallerIdentity' ||
      [...form.keys()].some((key) => key !== 'Action' && key !== 'Version')
    )
      throw badRequest('iam request body is invalid');
    const headers = normaliseHeaders(
      JSON.parse(decode('iam_request_headers')) as Record<string, string | string[]>,
    );
    const authorization = headers.authorization ?? '';
    const credential =
      /^AWS4-HMAC-SHA256 Credential=([A-Z0-9]+)\/\d{8}\/([a-z0-9-]+)\/sts\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=[0-9a-f]+$/.exec(
        authorization,
      );
    if (credential === null || headers['x-amz-date'] === undefined)
      throw badRequest('error making upstream request: missing or malformed signature');
    const serverIdHeader = this.#config?.iam_server_id_header_value ?? '';
    if (serverIdHeader !== '') {
      const sent = headers['x-vault-aws-iam-server-id'];
      if (sent === undefined)
        throw badRequest(
          'error validating X-Vault-AWS-IAM-Server-ID header: missing header "X-Vault-AWS-IAM-Server-ID"',
        );
      if (sent !== serverIdHeader)
        throw badRequest(
          `error validating X-Vault-AWS-IAM-Server-ID header: expected "${serverIdHeader}" but got "${sent}"`,
        );
      if (!credential[3]!.split(';').includes('x-vault-aws-iam-server-id'))
        throw badRequest("error validating X-Vault-AWS-IAM-Server-ID header: vault header wasn't signed");
    }
    // Vault replays the request to its own STS endpoint; STS refuses a signature scoped to another region.
    const scope = credential[2]!;
    const answering = this.#stsRegion(scope);
    if (scope !== answering) {
      throw badRequest(
        `error making upstream request: received error code 403 from STS: <ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code><Message>Credential should be scoped to a valid region, not '${scope}'. </Message></Error></ErrorResponse>`,
      );
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
    // STS answers with the caller's current unique id; path_login.go matches it when ids were resolved.
    const callerUniqueId = this.iam.uniqueId(canonical);
    const bound = role.resolve_aws_unique_ids
      ? role.bound_iam_principal_id.includes(callerUniqueId)
      : role.bound_iam_principal_arn.includes(canonical);
    if (!bound) {
      throw badRequest(`IAM Principal "${callerArn}" does not belong to the role "${roleName}"`);
    }
    return {
      role: roleName,
      policies: role.token_policies,
      ttl: role.token_ttl,
      period: role.token_period,
      noDefaultPolicy: role.token_no_default_policy,
      metadata: {
        client_arn: callerArn,
        canonical_arn: canonical,
        client_user_id: callerUniqueId,
        auth_type: 'iam',
        role_id: roleName,
        account_id: canonical.split(':')[4] ?? '',
      },
    };
  }
}

/** The STS hosts of the aws, aws-us-gov and aws-cn partitions, global or regional, FIPS or not. */
const STS_URL = /^https:\/\/sts(-fips)?(\.[a-z0-9-]+)?\.amazonaws\.com(\.cn)?\/?$/;

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
