import { BlockList, isIP } from 'node:net';
import { badRequest, bool, list, seconds } from './protocol';

/** auth/token/roles/<name> as token_store.go stores and reads it back (tsRoleEntry). */
export interface TokenRole {
  name: string;
  allowed_policies: string[];
  disallowed_policies: string[];
  orphan: boolean;
  renewable: boolean;
  path_suffix: string;
  token_period: number;
  token_explicit_max_ttl: number;
  token_no_default_policy: boolean;
  token_bound_cidrs: string[];
  token_type: string;
}

const TOKEN_TYPES = ['service', 'batch', 'default-service', 'default-batch'];

/**
 * tokenStoreRoleCreateUpdate: a create takes the defaults for what the body leaves out, an update
 * keeps the stored value of every field it does not name (unlike a PKI role, which is replaced).
 */
export function writeTokenRole(
  name: string,
  existing: TokenRole | undefined,
  body: Record<string, unknown>,
): TokenRole {
  if (name === '') throw badRequest('role name cannot be empty');
  const base: TokenRole = existing ?? {
    name,
    allowed_policies: [],
    disallowed_policies: [],
    orphan: false,
    renewable: true,
    path_suffix: '',
    token_period: 0,
    token_explicit_max_ttl: 0,
    token_no_default_policy: false,
    token_bound_cidrs: [],
    token_type: 'default-service',
  };
  const role = { ...base };
  if (body.orphan !== undefined) role.orphan = bool(body.orphan, false);
  if (body.renewable !== undefined) role.renewable = bool(body.renewable, true);
  if (body.path_suffix !== undefined) {
    role.path_suffix = String(body.path_suffix);
    if (role.path_suffix.includes('..'))
      throw badRequest('error registering path suffix: path cannot contain parent references');
  }
  // policyutil.SanitizePolicies without adding default; disallowed only de-duplicated and lower-cased.
  if (body.allowed_policies !== undefined) role.allowed_policies = sanitizedList(body.allowed_policies);
  if (body.disallowed_policies !== undefined)
    role.disallowed_policies = sanitizedList(body.disallowed_policies);
  if (body.token_type !== undefined) {
    const type = String(body.token_type);
    if (!TOKEN_TYPES.includes(type)) throw badRequest(`invalid 'token_type' value "${type}"`);
    role.token_type = type;
  }
  if (body.token_period !== undefined) role.token_period = seconds(body.token_period);
  else if (body.period !== undefined) role.token_period = seconds(body.period);
  if (body.token_explicit_max_ttl !== undefined)
    role.token_explicit_max_ttl = seconds(body.token_explicit_max_ttl);
  else if (body.explicit_max_ttl !== undefined) role.token_explicit_max_ttl = seconds(body.explicit_max_ttl);
  if (body.token_no_default_policy !== undefined)
    role.token_no_default_policy = bool(body.token_no_default_policy, false);
  const cidrs = body.token_bound_cidrs ?? body.bound_cidrs;
  if (cidrs !== undefined) {
    role.token_bound_cidrs = list(cidrs);
    const bad = role.token_bound_cidrs.find((cidr) => parseCidr(cidr) === undefined);
    if (bad !== undefined)
      throw badRequest(`error parsing role fields: error parsing token_bound_cidrs: invalid CIDR "${bad}"`);
  }
  if (role.token_type === 'batch' && role.token_period > 0)
    throw badRequest('error parsing role fields: batch tokens cannot have a period');
  return role;
}

/** The role as a read answers it, with the deprecated twins Vault still reports. */
export function describeTokenRole(role: TokenRole): Record<string, unknown> {
  return {
    allowed_entity_aliases: null,
    allowed_policies: role.allowed_policies,
    allowed_policies_glob: [],
    disallowed_policies: role.disallowed_policies,
    disallowed_policies_glob: [],
    explicit_max_ttl: 0,
    name: role.name,
    orphan: role.orphan,
    path_suffix: role.path_suffix,
    period: 0,
    renewable: role.renewable,
    token_explicit_max_ttl: role.token_explicit_max_ttl,
    token_no_default_policy: role.token_no_default_policy,
    token_period: role.token_period,
    token_type: role.token_type,
    ...(role.token_bound_cidrs.length > 0 ? { token_bound_cidrs: role.token_bound_cidrs } : {}),
  };
}

/**
 * resolveTokenPolicies, role branch: with allowed or disallowed policies set, the request's
 * policies (or else the allowed ones) must be a subset of allowed_policies and hold none of
 * disallowed_policies; `default` is added unless the request, the role or the disallowed list refuse it.
 */
export function rolePolicies(
  role: TokenRole,
  requested: string[],
  noDefaultPolicy: boolean,
  parentPolicies: string[],
): string[] {
  const addDefault =
    !noDefaultPolicy && !role.token_no_default_policy && !role.disallowed_policies.includes('default');
  let policies = requested.length > 0 ? sanitize(requested, addDefault) : [];
  if (role.allowed_policies.length > 0) {
    const allowed = sanitize(role.allowed_policies, addDefault);
    if (policies.length === 0) policies = allowed;
    else if (policies.some((policy) => !allowed.includes(policy)))
      throw badRequest(
        `token policies (${goQuoted(policies)}) must be subset of the role's allowed policies (${goQuoted(allowed)}) or glob policies ([])`,
      );
  } else if (policies.length === 0) {
    policies = sanitize(parentPolicies, addDefault);
  }
  const disallowed = policies.find((policy) => role.disallowed_policies.includes(policy));
  if (disallowed !== undefined) throw badRequest(`token policy "${disallowed}" is disallowed by this role`);
  return noDefaultPolicy ? policies.filter((policy) => policy !== 'default') : policies;
}

/** request_handling.go: a token with bound CIDRs (non-expiring root tokens aside) is refused from elsewhere. */
export function addressAllowed(cidrs: readonly string[], remoteAddress: string | undefined): boolean {
  if (cidrs.length === 0) return true;
  if (remoteAddress === undefined) return false;
  const address = remoteAddress.replace(/^::ffff:/, '');
  const family = isIP(address);
  if (family === 0) return false;
  const blocks = new BlockList();
  for (const cidr of cidrs) {
    const parsed = parseCidr(cidr);
    if (parsed) blocks.addSubnet(parsed.network, parsed.prefix, parsed.family);
  }
  return blocks.check(address, family === 6 ? 'ipv6' : 'ipv4');
}

function parseCidr(cidr: string): { network: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const [network, prefixText] = cidr.split('/');
  const family = isIP(network ?? '');
  if (family === 0) return undefined;
  const max = family === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) return undefined;
  return { network: network!, prefix, family: family === 4 ? 'ipv4' : 'ipv6' };
}

function sanitizedList(value: unknown): string[] {
  return [...new Set(list(value).map((policy) => policy.toLowerCase()))].sort();
}

/** policyutil.SanitizePolicies: trimmed, lower-cased, unique, sorted, `root` alone, `default` when asked. */
export function sanitize(policies: string[], addDefault: boolean): string[] {
  const cleaned = [...new Set(policies.map((policy) => policy.trim().toLowerCase()).filter(Boolean))];
  if (cleaned.includes('root')) return ['root'];
  if (addDefault && !cleaned.includes('default')) cleaned.push('default');
  return cleaned.sort();
}

/** Go's %q of a []string: ["a" "b"]. */
function goQuoted(values: string[]): string {
  return `[${values.map((value) => JSON.stringify(value)).join(' ')}]`;
}
