import { hasSudo } from './acl';
import type { AwsAuthMethod } from './aws-auth';
import { badRequest, envelope, list, NOT_FOUND, type Reply, VaultHttpError } from './protocol';
import type { Token, TokenStore } from './tokens';

function createToken(
  tokens: TokenStore,
  policies: ReadonlyMap<string, string>,
  token: Token,
  path: string,
  body: Record<string, unknown>,
): Reply {
  const orphan = path === 'auth/token/create-orphan' || body.no_parent === true;
  if (body.period !== undefined && !hasSudo(policies, token, path))
    throw badRequest('root or sudo privileges required to create periodic token');
  if (path === 'auth/token/create' && body.no_parent === true && !hasSudo(policies, token, path)) {
    throw badRequest('root or sudo privileges required to create orphan token');
  }
  const requested = list(body.policies);
  if (
    !hasSudo(policies, token, path) &&
    requested.some((policy) => !token.policies.includes(policy) && policy !== 'default')
  ) {
    throw badRequest('child policies must be subset of parent');
  }
  const { token: created, warnings } = tokens.create(body, { parent: token, path, orphan });
  for (const policy of created.policies)
    if (!policies.has(policy) && policy !== 'root') warnings.push(`Policy "${policy}" does not exist`);
  return { status: 200, body: envelope({ auth: tokens.auth(created), warnings, mountType: 'token' }) };
}

/** auth/token/*, for a token that already passed the ACL check on `path`. */
export function tokenRoute(
  tokens: TokenStore,
  policies: ReadonlyMap<string, string>,
  token: Token,
  path: string,
  body: Record<string, unknown>,
): Reply {
  const op = path.slice('auth/token/'.length);
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
