import { z } from 'zod';
import { type CertificateKind, certificateNames } from '../../shared/certificates/names';
import { type ClusterConfig, duration } from '../../shared/config';
import { formatDuration } from '../../shared/duration';
import { PATTERNS, patternRegExp } from '../../shared/patterns';
import { GLOBAL_STS_ENDPOINT, stsEndpointRegion } from '../../shared/vault/sts';
import { tokenRoleName } from '../../shared/vault-token/tokens';

const mountPath = z
  .string()
  .regex(/^[a-z0-9_-]+$/, { message: 'must be a mount name of a-z, 0-9, "_", "-"' });
const vaultName = z.string().regex(/^[a-z0-9_-]+$/, { message: 'must be a name of a-z, 0-9, "_", "-"' });
const iamRoleArn = z.string().regex(/^arn:aws[a-z-]*:iam::\d{12}:role\/[A-Za-z0-9+=,.@_/-]+$/, {
  message: 'must be an IAM role ARN (arn:aws:iam::<account>:role/<name>)',
});

const KEY_BITS = { ec: [224, 256, 384, 521], rsa: [2048, 3072, 4096] } as const;

/** What vault-bootstrap sets up; defaults follow the seed guide (pki + pki_int), one role per certificate kind. */
export const bootstrapSpecSchema = z
  .strictObject({
    region: z
      .string()
      .regex(patternRegExp('region'), { message: `must be a Nomad region name (pattern ${PATTERNS.region})` })
      .default('global'),
    rootMount: mountPath.default('pki'),
    intermediateMount: mountPath.default('pki_int'),
    rootMaxTtl: duration('87600h'),
    intermediateMaxTtl: duration('43800h'),
    /** The root CA lives outside this Vault: no root is generated, the intermediate is signed elsewhere. */
    externalRoot: z.boolean().default(false),
    /** With externalRoot: the intermediate (plus chain) signed for the CSR an earlier run printed. */
    intermediateCertificatePem: z.string().includes('BEGIN CERTIFICATE').optional(),
    serverRole: vaultName.default('nomad-server'),
    clientRole: vaultName.default('nomad-client'),
    cliRole: vaultName.default('nomad-cli'),
    /**
     * The single agent role earlier versions created. It may stay on the mount while clusters move to
     * serverRole and clientRole, reported as to delete; any other role not ours is refused.
     */
    legacyAgentRole: vaultName.default('nomad-cluster'),
    certificateMaxTtl: duration('720h'),
    keyType: z.enum(['ec', 'rsa']).default('ec'),
    keyBits: z.number().int().optional(),
    tokenPolicy: vaultName.default('tls-policy'),
    adminPolicy: vaultName.default('nomad-rotator-admin'),
    awsAuthMount: mountPath.default('aws'),
    adminRole: vaultName.default('nomad-rotator-admin'),
    /** The rotate-token function's execution role(s): the only principals that may log in as admin. */
    adminRoleArns: z.array(iamRoleArn).min(1),
    adminTokenTtl: duration('15m'),
    /**
     * The auth method's iam_server_id_header_value: a login must carry and sign it, so a request
     * signed for this Vault cannot be replayed to another that trusts the same IAM roles.
     */
    iamServerIdHeader: z.string().min(1).max(256),
    /**
     * Vault's default: the admin role binds the IAM roles' unique ids (Vault resolves them with
     * iam:GetRole when the role is written), so a role deleted and recreated under the same name is
     * refused until the Vault role is written again. Vault does not allow turning it off later.
     */
    resolveAwsUniqueIds: z.boolean().default(true),
    /**
     * The STS Vault replays admin logins to (config/client sts_endpoint, sts_region); Vault's default is
     * the global endpoint. Must be the STS the rotate-token function signs for (tokenRotation.stsEndpoint).
     */
    stsEndpoint: z.string().optional(),
    /** Base of the CA (AIA) and CRL URLs put into issued certificates; the Vault address when omitted. */
    pkiUrlBase: z.url({ protocol: /^https?$/ }).optional(),
    /** How often Vault's auto-tidy runs on the intermediate mount. */
    autoTidyInterval: duration('12h'),
    /** How long after expiry (or revocation) a certificate is kept before auto-tidy removes it. */
    tidySafetyBuffer: duration('72h'),
  })
  .superRefine((spec, context) => {
    const allowed: readonly number[] = KEY_BITS[spec.keyType];
    if (spec.keyBits !== undefined && !allowed.includes(spec.keyBits)) {
      context.addIssue({
        code: 'custom',
        path: ['keyBits'],
        message: `must be one of ${allowed.join(', ')} for key type ${spec.keyType}`,
      });
    }
    if (spec.stsEndpoint !== undefined && stsEndpointRegion(spec.stsEndpoint) === undefined) {
      context.addIssue({
        code: 'custom',
        path: ['stsEndpoint'],
        message: `must be an STS endpoint: ${GLOBAL_STS_ENDPOINT}, https://sts.<region>.amazonaws.com, https://sts.us-gov-west-1.amazonaws.com or https://sts.cn-north-1.amazonaws.com.cn`,
      });
    }
    if (spec.intermediateCertificatePem !== undefined && !spec.externalRoot) {
      context.addIssue({
        code: 'custom',
        path: ['intermediateCertificatePem'],
        message: 'only with externalRoot: otherwise the root in this Vault signs the intermediate',
      });
    }
  });

export type BootstrapSpecInput = z.input<typeof bootstrapSpecSchema>;
export type BootstrapSpec = z.output<typeof bootstrapSpecSchema>;

export type BootstrapAction = 'created' | 'updated' | 'unchanged' | 'skipped' | 'pending' | 'to-delete';

export interface BootstrapItem {
  item: string;
  action: BootstrapAction;
  detail?: string;
  /** The policy text, for policies, so an operator can review exactly what is (or would be) written. */
  hcl?: string;
  /** With an external root: the intermediate CSR to have signed, then re-run with the certificate. */
  csrPem?: string;
}

export interface BootstrapReport {
  dryRun: boolean;
  items: BootstrapItem[];
}

/** The tls-policy: what the issuing functions need to sign node CSRs and revoke superseded certificates. */
export function tlsPolicyHcl(spec: BootstrapSpec): string {
  const mount = spec.intermediateMount;
  return [
    `# ${spec.tokenPolicy}: held by the periodic token of the issuing functions (nomad-rotator).`,
    '# Keys stay on the nodes, so CSRs are signed; no issue/* path is granted.',
    '# Its token carries no default policy: looking itself up, renewing and revoking itself are all it keeps.',
    hclPath(`${mount}/sign/${spec.serverRole}`, ['update']),
    hclPath(`${mount}/sign/${spec.clientRole}`, ['update']),
    hclPath(`${mount}/sign/${spec.cliRole}`, ['update']),
    hclPath(`${mount}/revoke`, ['update']),
    hclPath(`${mount}/ca/pem`, ['read']),
    hclPath(`${mount}/ca_chain`, ['read']),
    hclPath(`${mount}/cert/ca_chain`, ['read']),
    hclPath('auth/token/lookup-self', ['read']),
    hclPath('auth/token/renew-self', ['update']),
    hclPath('auth/token/revoke-self', ['update']),
    hclPath('sys/capabilities-self', ['update']),
  ].join('\n');
}

/**
 * The admin policy: what the rotate-token function needs to mint the periodic token, through each
 * cluster's token role only (the role decides its policy, period and lifetime; no sudo anywhere),
 * and to revoke its own login. The login carries no default policy.
 */
export function adminPolicyHcl(spec: BootstrapSpec, clusters: readonly ClusterConfig[]): string {
  return [
    `# ${spec.adminPolicy}: held for minutes by the rotate-token function after its AWS IAM login.`,
    `# It mints only through the token roles, which allow ${spec.tokenPolicy} and nothing else.`,
    ...[...new Set(clusters.map(tokenRoleName))].map((role) =>
      hclPath(`auth/token/create/${role}`, ['update']),
    ),
    hclPath('auth/token/revoke-self', ['update']),
  ].join('\n');
}

/** The policies no token of the role may carry, whatever the request names ("default" included). */
export function disallowedPolicies(spec: BootstrapSpec): string[] {
  return [...new Set(['default', 'root', spec.adminPolicy])].sort();
}

/**
 * auth/token/roles/<role> of a cluster: tokenPolicy only, orphan (it outlives the admin login),
 * periodic with the cluster's period, dead at the explicit max TTL whatever its renewals, no
 * default policy, bound to the functions' CIDRs when configured, a service token.
 */
export function tokenRoleFields(spec: BootstrapSpec, cluster: ClusterConfig): Record<string, unknown> {
  const { tokenRotation } = cluster.vault;
  return {
    allowed_policies: [spec.tokenPolicy],
    disallowed_policies: disallowedPolicies(spec),
    orphan: true,
    renewable: true,
    path_suffix: '',
    token_period: tokenRotation.tokenPeriod,
    token_explicit_max_ttl: tokenRotation.tokenExplicitMaxTtl,
    token_no_default_policy: true,
    token_bound_cidrs: tokenRotation.tokenBoundCidrs ?? [],
    token_type: 'service',
  };
}

function hclPath(path: string, capabilities: string[]): string {
  return `path "${path}" {\n  capabilities = [${capabilities.map((capability) => `"${capability}"`).join(', ')}]\n}`;
}

/** The key each cluster key type makes, as Vault's signCert measures it against a role's key_type and key_bits. */
const CLUSTER_KEYS = {
  'ec-p256': { keyType: 'ec', bits: 256 },
  'rsa-2048': { keyType: 'rsa', bits: 2048 },
} as const;

export interface PkiRole {
  kind: CertificateKind;
  name: string;
  /** The role as written to <intermediateMount>/roles/<name>. */
  fields: {
    allowed_domains: string[];
    allow_localhost: boolean;
    allow_ip_sans: boolean;
    server_flag: boolean;
    max_ttl: number;
  } & Record<string, unknown>;
}

/**
 * The three roles, each admitting exactly the names certificateNames issues for its kind (bare
 * domains only, localhost and IP SANs only where issued), so a token that can sign one kind cannot
 * obtain a certificate Nomad would accept as another. Servers and clients get both usages: each
 * serves TLS (RPC, HTTP) and dials others. max_ttl is the longest certificate TTL of the clusters
 * given, never above certificateMaxTtl.
 */
export function pkiRoles(spec: BootstrapSpec, clusters: readonly ClusterConfig[]): PkiRole[] {
  const maxTtl = roleMaxTtl(spec, clusters);
  const kinds: [CertificateKind, string, { server_flag: boolean; client_flag: boolean }][] = [
    ['server', spec.serverRole, { server_flag: true, client_flag: true }],
    ['client', spec.clientRole, { server_flag: true, client_flag: true }],
    ['cli', spec.cliRole, { server_flag: false, client_flag: true }],
  ];
  return kinds.map(([kind, name, flags]) => {
    const issued = issuedNames(kind, spec.region, clusters);
    return {
      kind,
      name,
      fields: {
        allowed_domains: issued.dnsNames.filter((dnsName) => dnsName !== 'localhost'),
        allow_bare_domains: true,
        allow_subdomains: false,
        allow_glob_domains: false,
        allow_any_name: false,
        allow_wildcard_certificates: false,
        enforce_hostnames: true,
        allow_localhost: issued.dnsNames.includes('localhost'),
        allow_ip_sans: issued.ipAddresses.length > 0,
        ...flags,
        key_type: spec.keyType,
        key_bits: keyBitsOf(spec),
        use_csr_common_name: false,
        use_csr_sans: false,
        require_cn: false,
        generate_lease: false,
        max_ttl: maxTtl,
      },
    };
  });
}

/** The longest certificates.ttl of the clusters, capped by certificateMaxTtl; certificateMaxTtl without clusters. */
export function roleMaxTtl(spec: BootstrapSpec, clusters: readonly ClusterConfig[]): number {
  if (clusters.length === 0) return spec.certificateMaxTtl;
  return Math.min(spec.certificateMaxTtl, Math.max(...clusters.map((cluster) => cluster.certificates.ttl)));
}

/** Every DNS and IP SAN certificateNames issues for a kind in any of the clusters (node IPs aside). */
function issuedNames(
  kind: CertificateKind,
  region: string,
  clusters: readonly ClusterConfig[],
): { dnsNames: string[]; ipAddresses: string[] } {
  const bare = { region, certificates: { serverExtraDnsSans: [], serverExtraIpSans: [] } };
  const issued = [bare, ...clusters].map((cluster) => certificateNames(kind, cluster));
  return {
    dnsNames: [...new Set(issued.flatMap((names) => names.dnsNames))],
    ipAddresses: [...new Set(issued.flatMap((names) => names.ipAddresses))],
  };
}

/**
 * What a cluster would request that the roles of this spec refuse at signing time (Vault's
 * cert_util.go: key_type must match, key_bits is a minimum, every DNS SAN must be an allowed name),
 * and names that must agree for the cluster to use what bootstrap creates. Empty when they agree.
 */
export function clusterDisagreements(spec: BootstrapSpec, clusters: readonly ClusterConfig[]): string[] {
  const issues: string[] = [];
  const roleBits = keyBitsOf(spec);
  clusters.forEach((cluster, index) => {
    const at = `clusters[${index}] (${cluster.name})`;
    const key = CLUSTER_KEYS[cluster.certificates.keyType];
    if (key.keyType !== spec.keyType || key.bits < roleBits) {
      const fitting = Object.entries(CLUSTER_KEYS).find(
        ([, candidate]) => candidate.keyType === spec.keyType && candidate.bits >= roleBits,
      )?.[0];
      issues.push(
        `${at}.certificates.keyType: ${cluster.certificates.keyType} makes ${key.keyType} ${key.bits}-bit keys, but the roles require key_type ${spec.keyType} of at least ${roleBits} bits (spec keyType ${spec.keyType}, keyBits ${roleBits}); allowed: ${fitting ?? 'no cluster key type'} with this spec, or spec keyType ${key.keyType} with keyBits of at most ${key.bits}`,
      );
    }
    if (cluster.region !== spec.region) {
      issues.push(
        `${at}.region: ${cluster.region} is not the spec's region ${spec.region}; the roles allow server.${spec.region}.nomad, client.${spec.region}.nomad and cli.${spec.region}.nomad only`,
      );
    } else {
      for (const name of cluster.certificates.serverExtraDnsSans.filter((candidate) =>
        namesAnotherKind(spec.region, candidate),
      )) {
        issues.push(
          `${at}.certificates.serverExtraDnsSans: ${name} is a name Nomad verifies as a client, a CLI or another region's server; the server role admits it only for servers of ${spec.region}, so it is refused; allowed: any other hostname`,
        );
      }
    }
    if (cluster.certificates.ttl > spec.certificateMaxTtl) {
      issues.push(
        `${at}.certificates.ttl: ${formatDuration(cluster.certificates.ttl)} exceeds the roles' max_ttl; allowed: at most certificateMaxTtl ${formatDuration(spec.certificateMaxTtl)}`,
      );
    }
    const sameNames: [field: string, cluster: string, specField: string, spec: string][] = [
      ['vault.pkiMount', cluster.vault.pkiMount, 'intermediateMount', spec.intermediateMount],
      ['vault.serverRole', cluster.vault.serverRole, 'serverRole', spec.serverRole],
      ['vault.clientRole', cluster.vault.clientRole, 'clientRole', spec.clientRole],
      ['vault.cliRole', cluster.vault.cliRole, 'cliRole', spec.cliRole],
      [
        'vault.tokenRotation.tokenPolicy',
        cluster.vault.tokenRotation.tokenPolicy,
        'tokenPolicy',
        spec.tokenPolicy,
      ],
      [
        'vault.tokenRotation.adminAuthMount',
        cluster.vault.tokenRotation.adminAuthMount,
        'awsAuthMount',
        spec.awsAuthMount,
      ],
      ['vault.tokenRotation.adminRole', cluster.vault.tokenRotation.adminRole, 'adminRole', spec.adminRole],
      [
        'vault.tokenRotation.iamServerIdHeader',
        cluster.vault.tokenRotation.iamServerIdHeader,
        'iamServerIdHeader',
        spec.iamServerIdHeader,
      ],
    ];
    for (const [field, value, specField, wanted] of sameNames) {
      if (value !== wanted) issues.push(`${at}.${field}: ${value} is not the spec's ${specField} ${wanted}`);
    }
  });
  return issues;
}

/**
 * Nomad verifies a peer by `<role>.<region>.nomad`: an extra server name that is (or sits under) a
 * client's or CLI's name, or another region's server name, would hand servers that identity too.
 */
function namesAnotherKind(region: string, name: string): boolean {
  const match = /(?:^|\.)(server|client|cli)\.([^.]+)\.nomad$/.exec(name.toLowerCase());
  return match !== null && (match[1] !== 'server' || match[2] !== region);
}

export function keyBitsOf(spec: BootstrapSpec): number {
  return spec.keyBits ?? (spec.keyType === 'ec' ? 256 : 2048);
}
