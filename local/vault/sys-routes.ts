import type { Clock } from '../../shared/clock';
import { parsePolicy, requireCapability, tokenCapabilities } from './acl';
import { AwsAuthMethod, type IamDirectory } from './aws-auth';
import { PkiMount } from './pki';
import {
  badRequest,
  DEFAULT_MAX_TTL,
  envelope,
  list,
  NOT_FOUND,
  type Reply,
  seconds,
  VaultHttpError,
} from './protocol';
import type { Token } from './tokens';

export interface Mount {
  type: string;
  accessor: string;
  description: string;
  maxLeaseTtl: number;
  defaultLeaseTtl: number;
  pki?: PkiMount;
}

/** What sys/ reads and changes: the emulator's mounts, auth methods and ACL policy texts by name. */
export interface SysState {
  readonly clock: Clock;
  readonly mounts: Map<string, Mount>;
  readonly authMethods: Map<string, AwsAuthMethod>;
  readonly policies: Map<string, string>;
  /** What STS would answer for a signing access key id, for every AWS auth method enabled. */
  readonly awsIdentities: Record<string, string>;
  readonly iam: IamDirectory;
}

export function healthBody(sealed: boolean, now: number) {
  return {
    initialized: true,
    sealed,
    standby: sealed,
    performance_standby: false,
    replication_performance_mode: sealed ? 'unknown' : 'disabled',
    replication_dr_mode: sealed ? 'unknown' : 'disabled',
    server_time_utc: Math.floor(now / 1000),
    version: '1.17.0',
    ...(sealed
      ? {}
      : { cluster_name: 'vault-cluster-local', cluster_id: '00000000-0000-0000-0000-000000000000' }),
  };
}

export function sealStatusBody(sealed: boolean) {
  return {
    type: 'shamir',
    initialized: true,
    sealed,
    t: 1,
    n: 1,
    progress: 0,
    nonce: '',
    version: '1.17.0',
    migration: false,
    recovery_seal: false,
    storage_type: 'inmem',
  };
}

function describeMount(mount: Mount) {
  return {
    accessor: mount.accessor,
    config: {
      default_lease_ttl: mount.defaultLeaseTtl,
      force_no_cache: false,
      max_lease_ttl: mount.maxLeaseTtl,
    },
    description: mount.description,
    external_entropy_access: false,
    local: false,
    options: null,
    seal_wrap: false,
    type: mount.type,
    uuid: mount.accessor,
  };
}

/** sys/capabilities-self needs only `update` on itself, whatever the paths it asks about. */
export function capabilitiesSelf(
  policies: ReadonlyMap<string, string>,
  token: Token,
  path: string,
  body: Record<string, unknown>,
): Reply {
  requireCapability(policies, token, path, ['update']);
  const paths = list(body.paths ?? body.path);
  const data: Record<string, string[]> = {};
  for (const each of paths) {
    const granted = tokenCapabilities(policies, token, each);
    data[each] = granted === 'root' ? ['root'] : granted.size === 0 ? ['deny'] : [...granted].sort();
  }
  if (paths.length === 1) data.capabilities = data[paths[0]!]!;
  return { status: 200, body: envelope({ data }) };
}

/** sys/mounts, sys/auth and the ACL policies, for a token that already passed the ACL check on `path`. */
export function sysRoute(
  state: SysState,
  path: string,
  method: string,
  body: Record<string, unknown>,
  listing: boolean,
): Reply {
  const { clock, mounts, authMethods, policies } = state;
  const rest = path.slice('sys/'.length);
  if (rest === 'mounts' && method === 'GET') {
    return {
      status: 200,
      body: envelope({
        data: Object.fromEntries([...mounts].map(([name, mount]) => [`${name}/`, describeMount(mount)])),
      }),
    };
  }
  const tune = /^mounts\/(.+)\/tune$/.exec(rest);
  if (tune) {
    const mount = mounts.get(tune[1]!);
    if (mount === undefined) throw badRequest(`cannot fetch sysview for path "${tune[1]}/"`);
    if (method === 'GET')
      return {
        status: 200,
        body: envelope({
          data: {
            default_lease_ttl: mount.defaultLeaseTtl,
            max_lease_ttl: mount.maxLeaseTtl,
            force_no_cache: false,
            description: mount.description,
          },
        }),
      };
    if (body.max_lease_ttl !== undefined) mount.maxLeaseTtl = seconds(body.max_lease_ttl);
    if (body.default_lease_ttl !== undefined) mount.defaultLeaseTtl = seconds(body.default_lease_ttl);
    return { status: 204 };
  }
  const mountPath = /^mounts\/(.+)$/.exec(rest);
  if (mountPath) {
    const name = mountPath[1]!;
    if (method === 'DELETE') {
      mounts.delete(name);
      return { status: 204 };
    }
    if (method === 'GET') {
      const mount = mounts.get(name);
      if (mount === undefined) throw NOT_FOUND();
      return { status: 200, body: envelope({ data: describeMount(mount) }) };
    }
    if (mounts.has(name)) throw badRequest(`path is already in use at ${name}/`);
    const config = (body.config ?? {}) as Record<string, unknown>;
    const mount: Mount = {
      type: String(body.type ?? ''),
      accessor: `${String(body.type)}_${Math.random().toString(16).slice(2, 10)}`,
      description: String(body.description ?? ''),
      maxLeaseTtl: seconds(config.max_lease_ttl, 0),
      defaultLeaseTtl: seconds(config.default_lease_ttl, 0),
    };
    if (mount.type === 'pki') mount.pki = new PkiMount(clock, () => mount.maxLeaseTtl || DEFAULT_MAX_TTL);
    mounts.set(name, mount);
    return { status: 204 };
  }
  if (rest === 'auth' && method === 'GET') {
    const methods: Record<string, unknown> = {
      'token/': { type: 'token', description: 'token based credentials' },
    };
    for (const name of authMethods.keys()) methods[`${name}/`] = { type: 'aws', description: '' };
    return { status: 200, body: envelope({ data: methods }) };
  }
  const auth = /^auth\/(.+)$/.exec(rest);
  if (auth) {
    if (authMethods.has(auth[1]!)) throw badRequest(`path is already in use at ${auth[1]}/`);
    if (body.type !== 'aws') throw badRequest(`unknown auth method type "${String(body.type)}"`);
    authMethods.set(auth[1]!, new AwsAuthMethod(state.awsIdentities, state.iam));
    return { status: 204 };
  }
  const policy = /^(?:policies\/acl|policy)(?:\/(.+))?$/.exec(rest);
  if (policy) {
    const name = policy[1]?.toLowerCase();
    if (name === undefined || listing) {
      const keys = [...policies.keys(), 'root'].sort();
      return {
        status: 200,
        body: envelope({ data: { keys, ...(rest.startsWith('policy') ? { policies: keys } : {}) } }),
      };
    }
    if (method === 'GET') {
      const text = policies.get(name);
      if (text === undefined) throw NOT_FOUND();
      return {
        status: 200,
        body: envelope({
          data: { name, policy: text, ...(rest.startsWith('policy') ? { rules: text } : {}) },
        }),
      };
    }
    if (method === 'DELETE') {
      policies.delete(name);
      return { status: 204 };
    }
    const text = String(body.policy ?? body.rules ?? '');
    parsePolicy(text);
    policies.set(name, text);
    return { status: 204 };
  }
  throw new VaultHttpError(404, `no handler for route "${path}". route entry not found.`);
}
