import { hasSudo } from './acl';
import type { AwsAuthMethod } from './aws-auth';
import { badRequest, bool, envelope, list, NOT_FOUND, type Reply, seconds, VaultHttpError } from './protocol';
import { describeTokenRole, rolePolicies, sanitize, type TokenRole, writeTokenRole } from './token-roles';
import type { Token, TokenStore } from './tokens';

function createToken(
  tokens: TokenStore,
  policies: ReadonlyMap<string, string>,
  token: Token,
  path: string,
  body: Record<string, unknown>,
  role?: TokenRole,
): Reply {
  const sudo = hasSudo(policies, token, path);
  // token_store.go: a role decides orphan and bound CIDRs itself; no_parent and period need sudo.
  const orphan = role ? role.orphan : path === 'auth/token/create-orphan' || body.no_parent === true;
  if (seconds(body.period) > 0 && !sudo)
    throw badRequest('root or sudo privileges required to create periodic token');
  if (!role && path === 'auth/token/create' && body.no_parent === true && !sudo) {
    throw badRequest('root or sudo privileges required to create orphan token');
  }
  if (body.id !== undefined && !sudo)
    throw badRequest('root or sudo privileges required to specify token id');
  const requested = list(body.policies);
  const noDefault = bool(body.no_default_policy, false);
  let resolved: string[] | undefined;
  if (role && (role.allowed_policies.length > 0 || role.disallowed_policies.length > 0)) {
    resolved = rolePolicies(role, requested, noDefault, token.policies);
  } else if (!sudo && requested.some((policy) => !token.policies.includes(policy) && policy !== 'default')) {
    throw badRequest('child policies must be subset of parent');
  }
  const final = resolved ?? sanitize(requested.length > 0 ? requested : token.policies, !noDefault);
  if (final.includes('root') && !token.policies.includes('root'))
    throw badRequest('root tokens may not be created without parent token being root');
  const { token: created, warnings } = tokens.create(body, {
    parent: token,
    path,
    orphan,
    ...(role ? { role } : {}),
    ...(resolved ? { policies: resolved } : {}),
  });
  for (const policy of created.policies)
    if (!policies.has(policy) && policy !== 'root') warnings.push(`Policy "${policy}" does not exist`);
  return { status: 200, body: envelope({ auth: tokens.auth(created), warnings, mountType: 'token' }) };
}

/** auth/token/roles[/<name>]: read, list, write (create or update) and delete. */
function tokenRoleRoute(
  tokens: TokenStore,
  method: string,
  name: string,
  body: Record<string, unknown>,
  listing: boolean,
): Reply {
  if (name === '') {
    if (method !== 'GET' || !listing) throw new VaultHttpError(405, 'unsupported operation');
    if (tokens.roles.size === 0) throw NOT_FOUND();
    return {
      status: 200,
      body: envelope({ data: { keys: [...tokens.roles.keys()].sort() }, mountType: 'token' }),
    };
  }
  if (method === 'GET') {
    const role = tokens.roles.get(name);
    if (role === undefined) throw NOT_FOUND();
    return { status: 200, body: envelope({ data: describeTokenRole(role), mountType: 'token' }) };
  }
  if (method === 'DELETE') {
    tokens.roles.delete(name);
    return { status: 204 };
  }
  tokens.roles.set(name, writeTokenRole(name, tokens.roles.get(name), body));
  return { status: 204 };
}

/** auth/token/*, for a token that already passed the ACL check on `path`. */
export function tokenRoute(
  tokens: TokenStore,
  policies: ReadonlyMap<string, string>,
  token: Token,
  path: string,
  body: Record<string, unknown>,
  method = 'POST',
  listing = false,
): Reply {
  const op = path.slice('auth/token/'.length);
  const roles = /^roles(?:\/(.+))?$/.exec(op);
  if (roles) return tokenRoleRoute(tokens, method, roles[1] ?? '', body, listing);
  const againstRole = /^create\/(.+)$/.exec(op);
  if (againstRole) {
    const role = tokens.roles.get(againstRole[1]!);
    if (role === undefined) throw badRequest(`unknown role ${againstRole[1]}`);
    return createToken(tokens, policies, token, path, body, role);
  }
  switch (op) {
    case 'create':
    case 'create-orphan':
      return createToken(tokens, policies, token, path, body);
    case 'lookup-self':
      return { status: 200, body: envelope({ data: tokens.describe(token), mountType: 'token' }) };
    case 'lookup': {
      const target = tokens.lookup(String(body.token ?? ''));
      if (target === undefined) throw new VaultHttpError(403, 'bad token');
      return { status: 200, body: envelope({ data: tokens.describe(target), mountType: 'token' }) };
    }
    case 'lookup-accessor': {
      const target = tokens.byAccessor(String(body.accessor ?? ''));
      if (target === undefined) throw badRequest('invalid accessor');
      return {
        status: 200,
        body: envelope({ data: tokens.describe(target, { hideId: true }), mountType: 'token' }),
      };
    }
    case 'renew-self':
    case 'renew': {
      const target = op === 'renew-self' ? token : tokens.lookup(String(body.token ?? ''));
      if (target === undefined) throw badRequest('token not found');
      const { warnings } = tokens.renew(target, body.increment);
      return { status: 200, body: envelope({ auth: tokens.auth(target), warnings, mountType: 'token' }) };
    }
    case 'revoke':
      if (body.token === undefined) throw badRequest('missing token ID');
      tokens.revoke(String(body.token));
      return { status: 204 };
    case 'revoke-self':
      tokens.revoke(token.id);
      return { status: 204 };
    case 'revoke-accessor': {
      // vault/token_store.go handleUpdateRevokeAccessor: three distinct answers before any revocation.
      const accessor = String(body.accessor ?? '');
      if (accessor === '') throw badRequest('missing accessor');
      const target = tokens.heldAccessor(accessor);
      if (target === undefined)
        return {
          status: 200,
          body: envelope({ warnings: ['No token found with this accessor'], mountType: 'token' }),
        };
      // The accessor entry outlives an expired token until the expiration manager has revoked it.
      if (tokens.lookup(target.id) === undefined) throw badRequest('token not found');
      tokens.revoke(target.id);
      return { status: 204 };
    }
    default:
      throw new VaultHttpError(404, `no handler for route "${path}". route entry not found.`);
  }
}

/** auth/<aws mount>/login needs no token: the method's answer becomes a new orphan token. */
export function awsLogin(
  auth: AwsAuthMethod,
  tokens: TokenStore,
  path: string,
  body: Record<string, unknown>,
): Reply {
  const result = auth.login(body);
  const { token } = tokens.create(
    {
      policies: result.policies,
      ttl: result.ttl || undefined,
      period: result.period || undefined,
      no_default_policy: result.noDefaultPolicy,
      meta: result.metadata,
      display_name: `aws-${result.role}`,
    },
    { path, orphan: true },
  );
  return { status: 200, body: envelope({ auth: tokens.auth(token), mountType: 'aws' }) };
}

/** auth/<aws mount>/config/client and role/<name>; `endpoint` is the path after the mount. */
export function awsConfigRoute(
  auth: AwsAuthMethod,
  method: string,
  endpoint: string,
  body: Record<string, unknown>,
): Reply {
  if (endpoint === 'config/client') {
    if (method === 'GET') {
      const config = auth.config();
      if (config === undefined) throw NOT_FOUND();
      return { status: 200, body: envelope({ data: config }) };
    }
    auth.writeConfig(body);
    return { status: 204 };
  }
  const roleName = endpoint.slice('role/'.length);
  if (method === 'GET') {
    const role = auth.role(roleName);
    if (role === undefined) throw NOT_FOUND();
    return { status: 200, body: envelope({ data: role }) };
  }
  auth.writeRole(roleName, body);
  return { status: 204 };
}
