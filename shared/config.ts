import { z } from 'zod';
import { installExecutionTimeoutSeconds } from './documents';
import { parseDurationSeconds } from './duration';
import { NODE_FILE_ROOTS, patternRegExp } from './patterns';
import { parseOrThrow, patternString as pattern, secureOrLoopback } from './validation';
import { GLOBAL_STS_ENDPOINT, stsEndpointRegion } from './vault/sts';

const absolutePath = pattern(
  'absolutePath',
  `an absolute path under ${NODE_FILE_ROOTS.join(', ')} of letters, digits, ".", "_", "-", with no "." or ".." segment`,
).max(256, { message: 'must be at most 256 characters' });

export const duration = (fallback: string) =>
  z
    .union([z.number().int().positive(), z.string()])
    .default(fallback)
    .transform((value, context) => {
      const seconds = typeof value === 'number' ? value : parseDurationSeconds(value);
      if (seconds === undefined || seconds <= 0) {
        context.addIssue({
          code: 'custom',
          message: 'must be a positive duration such as "24h", "90m" or seconds',
        });
        return z.NEVER;
      }
      return seconds;
    });

const fileSpec = (path: string, mode: string, group = 'root', key = false) =>
  z
    .strictObject({
      path: absolutePath.default(path),
      mode: (key
        ? pattern(
            'keyFileMode',
            'an octal mode of a private key, not world-accessible (no bits for others), such as 0600 or 0640',
          )
        : pattern('fileMode', 'an octal file mode such as 0644')
      ).default(mode),
      owner: pattern('posixName', 'a POSIX user name').default('root'),
      group: pattern('posixName', 'a POSIX group name').default(group),
    })
    .prefault({});

/** File layout on the nodes; defaults follow the seed guide's /opt/nomad layout. */
const filesSchema = z
  .strictObject({
    agentCert: fileSpec('/opt/nomad/agent-certs/agent.crt', '0644'),
    agentKey: fileSpec('/opt/nomad/agent-certs/agent.key', '0600', 'root', true),
    ca: fileSpec('/opt/nomad/agent-certs/ca.crt', '0644'),
    cliCert: fileSpec('/opt/nomad/cli-certs/cli.crt', '0644'),
    cliKey: fileSpec('/opt/nomad/cli-certs/cli.key', '0640', 'root', true),
  })
  .prefault({})
  .superRefine((files, context) => {
    if (dirname(files.agentKey.path) !== dirname(files.agentCert.path)) {
      context.addIssue({
        code: 'custom',
        path: ['agentKey', 'path'],
        message:
          'must be in the same directory as agentCert (atomic install and rollback work per directory)',
      });
    }
  });

const certificatesSchema = z.strictObject({
  ttl: duration('24h'),
  /** Renew when less than this fraction of the lifetime remains (before jitter). */
  renewWhenRemaining: z
    .number()
    .gt(0)
    .lt(1)
    .default(1 / 3),
  /** ± fraction applied to the renewal point so a fleet issued together does not renew together. */
  jitter: z.number().min(0).max(0.5).default(0.1),
  keyType: z.enum(['ec-p256', 'rsa-2048']).default('ec-p256'),
  serverExtraDnsSans: z.array(z.string().regex(/^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/)).default([]),
  serverExtraIpSans: z.array(z.union([z.ipv4(), z.ipv6()])).default([]),
  /** A node refuses a certificate that would expire sooner than this after installation. */
  minimumValidity: duration('15m'),
  /**
   * SHA-256 of the DER of each root CA the nodes may trust. They ride in the install document the
   * stack deploys, so a CA bundle holding any other root is refused on the node whatever a table
   * item or a caller says, and a CA rotation is a deliberate deploy.
   */
  trustedRootFingerprints: z
    .array(
      z
        .string()
        .transform((fingerprint) => fingerprint.replaceAll(':', '').toLowerCase())
        .pipe(
          z.string().regex(patternRegExp('sha256Fingerprint'), {
            message:
              'must be the SHA-256 of a root CA certificate (DER): 64 hex digits, optionally in the colon form AA:BB:…',
          }),
        ),
    )
    .min(1, { message: 'must name at least one root CA fingerprint (SHA-256 of the DER)' }),
});

/** How the rotate-token function logs in as the Vault admin role and what token it mints. */
const tokenRotationSchema = z
  .strictObject({
    /** Mount path of the AWS auth method the admin role lives in. */
    adminAuthMount: z
      .string()
      .regex(/^[a-z0-9_/-]+$/)
      .default('aws'),
    adminRole: z
      .string()
      .regex(/^[a-zA-Z0-9_.-]+$/)
      .default('nomad-rotator-admin'),
    /**
     * Sent and signed as X-Vault-AWS-IAM-Server-ID; vault-bootstrap sets it as the auth method's
     * iam_server_id_header_value, so a login signed for this Vault cannot be replayed to another.
     */
    iamServerIdHeader: z.string().min(1).max(256),
    /** The token role the admin mints through (auth/token/create/<role>); nomad-rotator-<cluster> when omitted. */
    tokenRole: z
      .string()
      .regex(/^[a-z0-9_-]+$/)
      .optional(),
    /** The minted token dies this long after creation whatever its renewals: a leaked token cannot live on. */
    tokenExplicitMaxTtl: duration('168h'),
    /**
     * The addresses Vault sees the functions' requests come from (their NAT or VPC endpoint CIDRs):
     * the token role binds its tokens to them, so a copied token is refused from anywhere else.
     */
    tokenBoundCidrs: z.array(z.union([z.cidrv4(), z.cidrv6()])).optional(),
    tokenPolicy: z
      .string()
      .regex(/^[a-z0-9_-]+$/)
      .default('tls-policy'),
    /** The minted token's period; the rotation runs every half period so a token never outlives two. */
    tokenPeriod: duration('24h'),
    /**
     * The STS endpoint the admin login's GetCallerIdentity is signed for; the auth method's sts_endpoint
     * must reach the same STS. aws-cn and aws-us-gov have no global endpoint: name a regional one.
     */
    stsEndpoint: z.string().default(GLOBAL_STS_ENDPOINT),
    /** The region in the signature's credential scope; derived from stsEndpoint, and must agree with it. */
    stsRegion: z
      .string()
      .regex(/^[a-z]{2}(-gov)?-[a-z]+-\d$/, { message: 'must be an AWS region such as us-east-1' })
      .optional(),
  })
  .transform((tokenRotation, context) => {
    const endpointRegion = stsEndpointRegion(tokenRotation.stsEndpoint);
    if (endpointRegion === undefined) {
      context.addIssue({
        code: 'custom',
        path: ['stsEndpoint'],
        message: `must be an STS endpoint: ${GLOBAL_STS_ENDPOINT}, https://sts.<region>.amazonaws.com, https://sts.us-gov-west-1.amazonaws.com or https://sts.cn-north-1.amazonaws.com.cn`,
      });
      return z.NEVER;
    }
    if (tokenRotation.tokenExplicitMaxTtl < 2 * tokenRotation.tokenPeriod) {
      context.addIssue({
        code: 'custom',
        path: ['tokenExplicitMaxTtl'],
        message: `must be at least twice tokenPeriod (${tokenRotation.tokenPeriod}s): a token serves as AWSCURRENT then AWSPREVIOUS, half a period each, and must survive one missed rotation`,
      });
      return z.NEVER;
    }
    if (tokenRotation.stsRegion !== undefined && tokenRotation.stsRegion !== endpointRegion) {
      context.addIssue({
        code: 'custom',
        path: ['stsRegion'],
        message: `must be ${endpointRegion}, the region of stsEndpoint ${tokenRotation.stsEndpoint} (or omitted)`,
      });
      return z.NEVER;
    }
    return { ...tokenRotation, stsRegion: endpointRegion };
  });

/** A PKI role name: it becomes a path segment of <pkiMount>/sign/<role>. */
const pkiRoleName = (fallback: string) =>
  z
    .string()
    .regex(/^[a-z0-9_-]+$/)
    .default(fallback);

const vaultSchema = z.strictObject({
  // The token rides on every request: only over TLS, verified against caBundlePem or the system roots
  // (plain http only to a loopback address, where it never leaves the machine).
  address: z
    .url({ protocol: /^https?$/ })
    .refine((address) => !URL.canParse(address) || secureOrLoopback(new URL(address)), {
      error: 'an https:// address of Vault (plain http only on a loopback address)',
    }),
  caBundlePem: z.string().includes('BEGIN CERTIFICATE').optional(),
  namespace: z.string().min(1).optional(),
  pkiMount: z
    .string()
    .regex(/^[a-z0-9_/-]+$/)
    .default('pki_int'),
  /** Signs server agent certificates only; vault-bootstrap's serverRole. */
  serverRole: pkiRoleName('nomad-server'),
  /** Signs client agent certificates only; vault-bootstrap's clientRole. */
  clientRole: pkiRoleName('nomad-client'),
  cliRole: pkiRoleName('nomad-cli'),
  /** Secrets Manager secret whose AWSCURRENT holds the periodic tls-policy token as {token, accessor}. */
  tokenSecretId: z.string().min(1),
  requestTimeoutMs: z.number().int().positive().default(10_000),
  tokenRotation: tokenRotationSchema,
});

const rolloutSchema = z
  .strictObject({
    clientWaveSize: z.number().int().min(1).max(50).default(5),
    /**
     * Client waves run side by side while together they hold at most this many nodes; servers
     * always go one at a time. A node's turn takes about 10 s, and a wave of 50 clients costs four
     * SSM requests (a send and a listing for its prepare and for its install, measured in
     * bench:fleet): 250 nodes in flight keep about 2 requests a second busy, the rate we assume SSM
     * allows an account. Raise it where SSM allows more.
     */
    maxNodesInFlight: z.number().int().min(1).max(10_000).default(250),
    serverHealthTimeoutSeconds: z.number().int().min(10).max(3600).default(120),
    maxAttempts: z.number().int().min(1).max(20).default(5),
    backoffBaseSeconds: z.number().int().min(1).default(60),
    backoffMaxSeconds: z.number().int().min(1).default(3600),
    /** How long an SSM command may take on a node before it is treated as lost. */
    commandTimeoutSeconds: z.number().int().min(30).max(3600).default(600),
  })
  .prefault({});

const secretId = pattern('secretId', 'a Secrets Manager secret name or ARN');

/**
 * The cluster's gossip key rotation (servers only). The key lives in `secretId`, which the stack
 * creates for each cluster; servers read it with their instance role, the functions never do.
 */
const gossipSchema = z.strictObject({
  secretId,
  /** A secret whose AWSCURRENT is a Nomad ACL token with agent:write, read by the servers; none without ACLs. */
  aclTokenSecretId: secretId.optional(),
  /** `<data_dir>/server/serf.keyring`. */
  keyringPath: absolutePath.default('/opt/nomad/data/server/serf.keyring'),
  /** A config file of its own for `encrypt`, which Nomad reads only into a fresh data dir. */
  encryptConfigPath: absolutePath.default('/etc/nomad.d/gossip-encrypt.hcl'),
  encryptConfigOwner: pattern('posixName', 'a POSIX user name').default('root'),
  /**
   * How often the scheduled tick rotates the key: a rotation starts once none began (and none was
   * cut short) within this long, `off` for manual rotations only. A cluster never rotated by us is
   * due at once: its key is the hand-set one.
   */
  rotateEvery: z.union([z.literal('off'), duration('30d')]).default(30 * 86_400),
  /**
   * A stage whose check fails on any server runs again on every server after backoff, and a server
   * whose step failed runs it again; each counts as a try of that server. Out of tries the rotation
   * halts. The defaults leave room for Nomad's WAN gossip timings (a stopped server is
   * suspect, and counted, for about 30 s).
   */
  maxTries: z.number().int().min(1).max(30).default(10),
  backoffBaseSeconds: z.number().int().min(1).default(30),
  backoffMaxSeconds: z.number().int().min(1).default(300),
  /**
   * After every rotation, restart the servers one at a time to prove each boots on its persisted
   * keyring. Off by default: a keyring change is live without a restart, and every restart is a
   * leader election risked for a proof (a manual rotation may still ask with restart: "staged").
   */
  restartAfterRotation: z.boolean().default(false),
  /**
   * How long a restarted or repaired server must pass the gate without a break before the next
   * one is touched; autopilot's own server_stabilization_time is 10 s.
   */
  stabilizationSeconds: z.number().int().min(0).max(600).default(10),
});

/** How the install script reaches the node's own agent and what it must prove there. */
const nomadAgentSchema = z
  .strictObject({
    /**
     * The agent's HTTPS address as seen on the node. The SSM agent's environment has no NOMAD_ADDR,
     * so the address travels as a document parameter.
     */
    address: pattern('httpsUrl', 'an https:// address with a host and an optional port').default(
      'https://127.0.0.1:4646',
    ),
    /**
     * The agent's tls.verify_https_client. When true (the seed guide's setting) the HTTPS API asks for
     * a client certificate and the proof uses the new CLI certificate; Nomad checks no name on it.
     */
    verifyHttpsClient: z.boolean().default(true),
    /**
     * After the new serial is served the same agent process must still run this long: Nomad serves
     * the new leaf before the part of a reload that can still fail (and exit).
     */
    settleSeconds: z.number().int().min(1).max(60).default(3),
  })
  .prefault({});

/** EC2 Auto Scaling group names as the reserved `aws:autoscaling:groupName` tag carries them. */
const autoScalingGroupName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/, {
  message: 'must be an Auto Scaling group name of letters, digits, ".", "_" or "-"',
});
const instanceProfileArn = z
  .string()
  .regex(/^arn:aws(?:-cn|-us-gov)?:iam::\d{12}:instance-profile\/[\w+=,.@/-]{1,128}$/, {
    message:
      'must be an instance profile ARN such as arn:aws:iam::123456789012:instance-profile/nomad-server',
  });

/**
 * What makes an instance a node of this role: attributes only the account's provisioning sets. An
 * instance must match every list given (its Auto Scaling group and its instance profile).
 */
const roleIdentitySchema = z
  .strictObject({
    autoScalingGroups: z.array(autoScalingGroupName).default([]),
    instanceProfileArns: z.array(instanceProfileArn).default([]),
  })
  .refine((identity) => identity.autoScalingGroups.length + identity.instanceProfileArns.length > 0, {
    message: 'must name at least one Auto Scaling group or instance profile ARN',
  });

const inventorySchema = z
  .strictObject({
    /**
     * Instances carry tag <clusterTagKey>=<cluster name>. It decides nothing: it only narrows the
     * SendCommand permission for roles identified by instance profile, which IAM cannot condition on.
     */
    clusterTagKey: z.string().min(1).max(128).default('nomad-cluster'),
    servers: roleIdentitySchema,
    clients: roleIdentitySchema,
    /**
     * The servers this cluster may have: a server certificate for an instance never seen as a server
     * needs room in this set (a count of live servers, or the instance ids).
     */
    serverSet: z.union([
      z.strictObject({ count: z.number().int().min(1).max(11) }),
      z.strictObject({
        instanceIds: z.array(pattern('instanceId', 'an EC2 instance id')).min(1).max(11),
      }),
    ]),
  })
  .superRefine((inventory, context) => {
    for (const field of ['autoScalingGroups', 'instanceProfileArns'] as const) {
      const servers = new Set(inventory.servers[field]);
      inventory.clients[field].forEach((value, index) => {
        if (servers.has(value))
          context.addIssue({
            code: 'custom',
            path: ['clients', field, index],
            message: `${value} is also listed for servers; a role must follow from the instance alone`,
          });
      });
    }
  });

export const clusterConfigSchema = z
  .strictObject({
    name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,47}$/, {
      message: 'must be 1-48 lower-case letters, digits or "-", starting with a letter or digit',
    }),
    region: pattern('region', 'a Nomad region name').default('global'),
    inventory: inventorySchema,
    vault: vaultSchema,
    certificates: certificatesSchema,
    files: filesSchema,
    rollout: rolloutSchema,
    nomad: nomadAgentSchema,
    gossip: gossipSchema.optional(),
  })
  .superRefine((cluster, context) => {
    const install = installExecutionTimeoutSeconds(
      cluster.rollout.serverHealthTimeoutSeconds,
      cluster.nomad.settleSeconds,
    );
    if (cluster.rollout.commandTimeoutSeconds < install) {
      context.addIssue({
        code: 'custom',
        path: ['rollout', 'commandTimeoutSeconds'],
        message: `must be at least ${install}: an install may run that long (twice serverHealthTimeoutSeconds plus nomad.settleSeconds, for the proof and a rollback's proof, plus 120 s of work)`,
      });
    }
    const stabilization = cluster.gossip?.stabilizationSeconds;
    if (stabilization !== undefined && stabilization >= cluster.rollout.serverHealthTimeoutSeconds) {
      context.addIssue({
        code: 'custom',
        path: ['gossip', 'stabilizationSeconds'],
        message: `must be less than rollout.serverHealthTimeoutSeconds (${cluster.rollout.serverHealthTimeoutSeconds}): a restarted server has that long to hold the gate this long`,
      });
    }
  });

export type ClusterConfig = z.output<typeof clusterConfigSchema>;
export type ClusterConfigInput = z.input<typeof clusterConfigSchema>;
export type FileSpec = ClusterConfig['files']['agentCert'];

export const clustersConfigSchema = z
  .array(clusterConfigSchema)
  .min(1)
  .superRefine((clusters, context) => {
    const seen = new Set<string>();
    clusters.forEach((cluster, index) => {
      if (seen.has(cluster.name)) {
        context.addIssue({
          code: 'custom',
          path: [index, 'name'],
          message: `duplicate cluster name ${cluster.name}`,
        });
      }
      seen.add(cluster.name);
    });
    const owners = new Map<string, string>();
    clusters.forEach((cluster, index) => {
      for (const role of ['servers', 'clients'] as const)
        for (const field of ['autoScalingGroups', 'instanceProfileArns'] as const)
          cluster.inventory[role][field].forEach((value, position) => {
            const owner = owners.get(value);
            if (owner !== undefined && owner !== cluster.name)
              context.addIssue({
                code: 'custom',
                path: [index, 'inventory', role, field, position],
                message: `${value} already identifies nodes of cluster ${owner}`,
              });
            owners.set(value, cluster.name);
          });
    });
  });

export function parseClusterConfig(input: unknown): ClusterConfig {
  return parseOrThrow(clusterConfigSchema, input, 'cluster configuration');
}

export function parseClustersConfig(input: unknown): ClusterConfig[] {
  return parseOrThrow(clustersConfigSchema, input, 'clusters configuration');
}

function dirname(path: string): string {
  return path.slice(0, path.lastIndexOf('/')) || '/';
}
