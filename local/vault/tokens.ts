import { randomBytes } from 'node:crypto';
import type { Clock } from '../../shared/clock';
import { type AuthBlock, badRequest, DEFAULT_MAX_TTL, goDuration, list, seconds } from './protocol';
import { addressAllowed, sanitize, type TokenRole } from './token-roles';

const BASE62 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const base62 = (length: number) => [...randomBytes(length)].map((byte) => BASE62[byte % 62]).join('');

export interface Token {
  id: string;
  accessor: string;
  policies: string[];
  meta: Record<string, string> | null;
  displayName: string;
  path: string;
  parent?: string;
  orphan: boolean;
  period: number;
  ttl: number;
  explicitMaxTtl: number;
  renewable: boolean;
  createdAt: number;
  expiresAt?: number;
  lastRenewalAt?: number;
  numUses: number;
  /** The token role it was created against (auth/token/create/<role>), if any. */
  role?: string;
  /** The role's token_bound_cidrs: requests from any other address are refused. */
  boundCidrs: string[];
}

/**
 * Vault's token store: service tokens (`hvs.` + 24 base62), accessors, policies sanitised the way
 * policyutil does, periodic tokens whose renewal resets the TTL to the period, expiry on the clock,
 * and revocation that takes non-orphan children with it.
 */
export class TokenStore {
  readonly #tokens = new Map<string, Token>();
  /** auth/token/roles/<name>. */
  readonly roles = new Map<string, TokenRole>();

  constructor(private readonly clock: Clock) {}

  createRoot(): Token {
    return this.#store({
      id: `hvs.${base62(24)}`,
      accessor: base62(24),
      policies: ['root'],
      meta: null,
      displayName: 'root',
      path: 'auth/token/root',
      orphan: true,
      period: 0,
      ttl: 0,
      explicitMaxTtl: 0,
      renewable: false,
      createdAt: this.clock.now(),
      numUses: 0,
      boundCidrs: [],
    });
  }

  /** Whether a request from this address may use the token (bound CIDRs bind all but non-expiring tokens). */
  usableFrom(token: Token, remoteAddress: string | undefined): boolean {
    return token.expiresAt === undefined || addressAllowed(token.boundCidrs, remoteAddress);
  }

  /** A valid token by id; expired ones are revoked on sight, as the expiration manager would. */
  lookup(id: string | undefined): Token | undefined {
    const token = id === undefined ? undefined : this.#tokens.get(id);
    if (token?.expiresAt !== undefined && token.expiresAt <= this.clock.now()) {
      this.revoke(token.id);
      return undefined;
    }
    return token;
  }

  /** The token an accessor entry points at, even an expired one whose revocation has not run yet. */
  heldAccessor(accessor: string): Token | undefined {
    return [...this.#tokens.values()].find((candidate) => candidate.accessor === accessor);
  }

  byAccessor(accessor: string): Token | undefined {
    const token = this.heldAccessor(accessor);
    return token === undefined ? undefined : this.lookup(token.id);
  }

  /**
   * A new token. `policies`, when given, are final (a role's resolution); a role's period and
   * explicit max TTL win when smaller than the request's (parseAndMergeTTLPeriod), its bound CIDRs
   * bind the token and its renewable=false overrides the request.
   */
  create(
    body: Record<string, unknown>,
    options: { parent?: Token; path: string; orphan: boolean; role?: TokenRole; policies?: string[] },
  ): { token: Token; warnings: string[] } {
    const warnings: string[] = [];
    const { role } = options;
    const policies =
      options.policies ??
      sanitize(list(body.policies ?? options.parent?.policies ?? []), body.no_default_policy !== true);
    const period = lesser(seconds(body.period), role?.token_period ?? 0);
    const explicitMaxTtl = lesser(seconds(body.explicit_max_ttl), role?.token_explicit_max_ttl ?? 0);
    let ttl = period > 0 ? period : seconds(body.ttl, DEFAULT_MAX_TTL);
    const cap = explicitMaxTtl > 0 ? Math.min(DEFAULT_MAX_TTL, explicitMaxTtl) : DEFAULT_MAX_TTL;
    if (ttl > cap) {
      warnings.push(
        period > 0
          ? `period of "${goDuration(period)}" exceeded the effective max_ttl of "${goDuration(cap)}"; period value is capped accordingly`
          : `TTL of "${goDuration(ttl)}" exceeded the effective max_ttl of "${goDuration(cap)}"; TTL value is capped accordingly`,
      );
      ttl = cap;
    }
    const root = policies.length === 1 && policies[0] === 'root';
    const now = this.clock.now();
    const token = this.#store({
      id: `hvs.${base62(24)}`,
      accessor: base62(24),
      policies,
      meta: (body.meta as Record<string, string> | undefined) ?? null,
      displayName: `token${body.display_name ? `-${String(body.display_name).replace(/[^a-zA-Z0-9-]/g, '-')}` : ''}`,
      path: options.path,
      ...(options.orphan || !options.parent ? {} : { parent: options.parent.id }),
      orphan: options.orphan,
      period,
      ttl: root && body.ttl === undefined ? 0 : ttl,
      explicitMaxTtl,
      renewable:
        (body.renewable === undefined ? true : body.renewable === true || body.renewable === 'true') &&
        (role?.renewable ?? true),
      createdAt: now,
      ...(root && body.ttl === undefined ? {} : { expiresAt: now + ttl * 1000 }),
      numUses: Number(body.num_uses ?? 0),
      ...(role ? { role: role.name } : {}),
      boundCidrs: role?.token_bound_cidrs ?? [],
    });
    return { token, warnings };
  }

  /** renew-self / renew: periodic → TTL = period (increment ignored); otherwise increment or original TTL. */
  renew(token: Token, increment: unknown): { token: Token; warnings: string[] } {
    if (!token.renewable || token.expiresAt === undefined) throw badRequest('lease is not renewable');
    const now = this.clock.now();
    const wanted = token.period > 0 ? token.period : seconds(increment) || token.ttl;
    const hardLimit =
      token.createdAt + (token.explicitMaxTtl > 0 ? token.explicitMaxTtl : DEFAULT_MAX_TTL) * 1000;
    const warnings: string[] = [];
    let expiresAt = now + wanted * 1000;
    if (expiresAt > hardLimit) {
      if (hardLimit <= now) throw badRequest('past the max TTL, cannot renew');
      warnings.push(
        `TTL of "${goDuration(wanted)}" exceeded the effective max_ttl; TTL value is capped accordingly`,
      );
      expiresAt = hardLimit;
    }
    token.expiresAt = expiresAt;
    token.lastRenewalAt = now;
    return { token, warnings };
  }

  /** Revoke a token and, unless they are orphans, every token it created. */
  revoke(id: string): void {
    const token = this.#tokens.get(id);
    if (token === undefined) return;
    this.#tokens.delete(id);
    for (const child of [...this.#tokens.values()].filter((candidate) => candidate.parent === id))
      this.revoke(child.id);
  }

  remainingSeconds(token: Token): number {
    return token.expiresAt === undefined
      ? 0
      : Math.max(0, Math.round((token.expiresAt - this.clock.now()) / 1000));
  }

  auth(token: Token): AuthBlock {
    return {
      client_token: token.id,
      accessor: token.accessor,
      policies: token.policies,
      token_policies: token.policies,
      metadata: token.meta,
      lease_duration: this.remainingSeconds(token),
      renewable: token.renewable && token.expiresAt !== undefined,
      entity_id: '',
      token_type: 'service',
      orphan: token.orphan,
      mfa_requirement: null,
      num_uses: token.numUses,
    };
  }

  /** lookup-self / lookup / lookup-accessor data, with `period` and renewal fields only when they apply. */
  describe(token: Token, options: { hideId?: boolean } = {}): Record<string, unknown> {
    return {
      accessor: token.accessor,
      creation_time: Math.floor(token.createdAt / 1000),
      creation_ttl: token.expiresAt === undefined ? 0 : token.ttl,
      display_name: token.displayName,
      entity_id: '',
      expire_time: token.expiresAt === undefined ? null : new Date(token.expiresAt).toISOString(),
      explicit_max_ttl: token.explicitMaxTtl,
      id: options.hideId ? '' : token.id,
      meta: token.meta,
      num_uses: token.numUses,
      orphan: token.orphan,
      path: token.path,
      policies: token.policies,
      renewable: token.renewable,
      ttl: this.remainingSeconds(token),
      type: 'service',
      ...(token.role ? { role: token.role } : {}),
      ...(token.boundCidrs.length > 0 ? { bound_cidrs: token.boundCidrs } : {}),
      ...(token.period > 0 ? { period: token.period } : {}),
      ...(token.lastRenewalAt
        ? {
            last_renewal_time: Math.floor(token.lastRenewalAt / 1000),
            last_renewal: new Date(token.lastRenewalAt).toISOString(),
          }
        : {}),
    };
  }

  #store(token: Token): Token {
    this.#tokens.set(token.id, token);
    return token;
  }
}

/** The smaller of two limits where 0 means unset. */
function lesser(requested: number, role: number): number {
  if (requested === 0) return role;
  return role === 0 ? requested : Math.min(requested, role);
}
