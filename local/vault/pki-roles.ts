import { badRequest, bool, goDuration, list, seconds } from './protocol';

const ROLE_DEFAULTS = {
  ttl: 0,
  max_ttl: 0,
  allow_localhost: true,
  allowed_domains: [] as string[],
  allow_bare_domains: false,
  allow_subdomains: false,
  allow_glob_domains: false,
  allow_any_name: false,
  allow_wildcard_certificates: true,
  enforce_hostnames: true,
  allow_ip_sans: true,
  server_flag: true,
  client_flag: true,
  key_type: 'rsa',
  key_bits: 0,
  use_csr_common_name: true,
  use_csr_sans: true,
  require_cn: true,
  generate_lease: false,
  no_store: false,
  not_before_duration: 30,
};
export type Role = typeof ROLE_DEFAULTS;

export const HOSTNAME =
  /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/** A role write replaces the whole role: a field the body leaves out takes its default, not its previous value. */
export function parseRole(body: Record<string, unknown>): Role {
  const role: Role = { ...ROLE_DEFAULTS };
  for (const [key, fallback] of Object.entries(ROLE_DEFAULTS) as [keyof Role, unknown][]) {
    const value = body[key];
    if (value === undefined) continue;
    if (typeof fallback === 'boolean') (role as Record<string, unknown>)[key] = bool(value, fallback);
    else if (Array.isArray(fallback)) (role as Record<string, unknown>)[key] = list(value);
    else if (key === 'key_type') role.key_type = String(value);
    else if (key === 'key_bits') role.key_bits = Number(value);
    else (role as Record<string, unknown>)[key] = seconds(value);
  }
  // path_roles.go: key_bits 0 means the type's default, and a read reports that default.
  if (role.key_bits === 0 && role.key_type !== 'any') role.key_bits = role.key_type === 'ec' ? 256 : 2048;
  if (role.key_type === 'rsa' && role.key_bits < 2048)
    throw badRequest('RSA keys < 2048 bits are unsafe and not supported');
  if (role.ttl > 0 && role.max_ttl > 0 && role.ttl > role.max_ttl)
    throw badRequest('"ttl" value must be less than "max_ttl" value');
  return role;
}

export function allowedName(role: Role, name: string): boolean {
  const lower = name.toLowerCase();
  if (role.allow_any_name) return true;
  if (role.allow_localhost && (lower === 'localhost' || lower === 'localdomain')) return true;
  if (lower.startsWith('*.') && !role.allow_wildcard_certificates) return false;
  return role.allowed_domains.some((domain) => {
    const wanted = domain.toLowerCase();
    if (role.allow_bare_domains && lower === wanted) return true;
    if (role.allow_subdomains && lower.endsWith(`.${wanted}`)) return true;
    return (
      role.allow_glob_domains &&
      new RegExp(`^${wanted.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`).test(lower)
    );
  });
}

/**
 * NotBefore and NotAfter of a new certificate: the requested TTL (else the role's, else the mount's
 * maximum), cut to the role's max_ttl and the mount's maximum with Vault's warning. CA operations
 * pass no role.
 */
export function validityWindow(
  limits: { now: number; mountMaxTtl: number },
  requested: unknown,
  role: Role | undefined,
  warnings: string[],
): { notBefore: Date; notAfter: Date } {
  const { now, mountMaxTtl } = limits;
  const max = role && role.max_ttl > 0 ? Math.min(role.max_ttl, mountMaxTtl) : mountMaxTtl;
  let ttl = seconds(requested, role && role.ttl > 0 ? role.ttl : mountMaxTtl);
  if (ttl > max) {
    warnings.push(
      `TTL "${goDuration(ttl)}" is longer than permitted maxTTL "${goDuration(max)}", so maxTTL is being used`,
    );
    ttl = max;
  }
  return {
    notBefore: new Date(now - (role?.not_before_duration ?? 30) * 1000),
    notAfter: new Date(now + ttl * 1000),
  };
}
