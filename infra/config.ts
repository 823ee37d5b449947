import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { type ClusterConfig, type ClusterConfigInput, clustersConfigSchema } from '../shared/config';
import { ValidationError } from '../shared/errors';
import { parseOrThrow } from '../shared/validation';

/**
 * Stands in for `vault.tokenSecretId` while the file is validated: the stack creates each cluster's
 * token secret and hands its ARN to the functions, so the file need not name one and any it names is
 * replaced.
 */
const SECRET_MANAGED_BY_STACK = 'created-by-the-stack';

export interface ClustersFile {
  /** The clusters as written, for the functions' CLUSTERS_CONFIG (they apply the defaults themselves). */
  inputs: ClusterConfigInput[];
  /** The same clusters with every default applied, for the infrastructure's own decisions. */
  clusters: ClusterConfig[];
}

/**
 * Read and validate the clusters file at synth time with the schema the functions use at start-up,
 * so a bad file fails `cdk synth` with the field named instead of failing every Lambda cold start.
 */
export function loadClustersFile(path: string): ClustersFile {
  const { absolute, parsed } = readJsonFile(path, 'clusters file');
  const withSecrets = Array.isArray(parsed) ? parsed.map(withManagedSecret) : parsed;
  const clusters = parseOrThrow(clustersConfigSchema, withSecrets, `clusters configuration in ${absolute}`);
  return { inputs: withSecrets as ClusterConfigInput[], clusters };
}

function withManagedSecret(cluster: unknown): unknown {
  if (typeof cluster !== 'object' || cluster === null) return cluster;
  const { vault } = cluster as { vault?: unknown };
  if (typeof vault !== 'object' || vault === null) return cluster;
  return { ...cluster, vault: { ...vault, tokenSecretId: SECRET_MANAGED_BY_STACK } };
}

function readJsonFile(path: string, what: string): { absolute: string; parsed: unknown } {
  const absolute = resolve(path);
  let text: string;
  try {
    text = readFileSync(absolute, 'utf8');
  } catch (error) {
    throw new ValidationError(`cannot read the ${what} ${absolute}`, [
      error instanceof Error ? error.message : String(error),
    ]);
  }
  try {
    return { absolute, parsed: JSON.parse(text) };
  } catch (error) {
    throw new ValidationError(`the ${what} ${absolute} is not JSON`, [
      error instanceof Error ? error.message : String(error),
    ]);
  }
}

/** An EC2 resource id: the prefix, then 8 (older resources) or 17 hex digits. */
const ec2Id = (prefix: string, what: string) =>
  z.string().regex(new RegExp(`^${prefix}-(?:[0-9a-f]{8}|[0-9a-f]{17})$`), {
    message: `must be ${what} id such as ${prefix}-0123456789abcdef0`,
  });

/** An availability zone name: its region, then one letter (eu-west-1a, us-gov-west-1b). */
const AVAILABILITY_ZONE = /^([a-z]{2}(?:-[a-z]+)+-\d+)[a-z]$/;

/**
 * Where the functions run when the Vault servers are only reachable inside a VPC. The ids are used as
 * given (no lookup), so `cdk synth` needs no credentials; what they name must exist when deploying.
 */
export const networkConfigSchema = z
  .strictObject({
    vpcId: ec2Id('vpc', 'a VPC'),
    /** The zones of the subnets, in order: privateSubnetIds[i] lies in availabilityZones[i % n]. */
    availabilityZones: z
      .array(
        z.string().regex(AVAILABILITY_ZONE, {
          message: 'must be an availability zone name such as eu-west-1a',
        }),
      )
      .min(1, { message: 'must name at least one availability zone' }),
    /**
     * Subnets without a public route; they must reach the AWS APIs the functions call (DynamoDB, SSM,
     * Secrets Manager, EventBridge) through a NAT gateway or VPC endpoints, and the Vault servers.
     */
    privateSubnetIds: z
      .array(ec2Id('subnet', 'a subnet'))
      .min(1, { message: 'must name at least one subnet' }),
    /** The Vault servers' security group: the functions' Vault egress goes to it instead of 0.0.0.0/0. */
    vaultSecurityGroupId: ec2Id('sg', 'a security group').optional(),
  })
  .superRefine((network, context) => {
    for (const field of ['availabilityZones', 'privateSubnetIds'] as const) {
      const seen = new Set<string>();
      network[field].forEach((value, index) => {
        if (seen.has(value))
          context.addIssue({ code: 'custom', path: [field, index], message: 'is listed twice' });
        seen.add(value);
      });
    }
    const zones = network.availabilityZones.length;
    if (network.privateSubnetIds.length % zones !== 0) {
      context.addIssue({
        code: 'custom',
        path: ['privateSubnetIds'],
        message: `must hold a multiple of availabilityZones' ${zones} entries (subnet i lies in zone i mod ${zones})`,
      });
    }
  });

export type NetworkConfig = z.output<typeof networkConfigSchema>;

/**
 * Read and validate the network file (context `networkFile`) at synth time. Every availability zone
 * must belong to `region`, the stack's region, or the subnets could not be in the stack's VPC.
 */
export function loadNetworkFile(path: string, region: string): NetworkConfig {
  const { absolute, parsed } = readJsonFile(path, 'network file');
  const inRegion = networkConfigSchema.superRefine((network, context) => {
    network.availabilityZones.forEach((zone, index) => {
      const zoneRegion = AVAILABILITY_ZONE.exec(zone)?.[1];
      if (zoneRegion !== region) {
        context.addIssue({
          code: 'custom',
          path: ['availabilityZones', index],
          message: `must be a zone of the target region ${region}`,
        });
      }
    });
  });
  return parseOrThrow(inRegion, parsed, `network configuration in ${absolute}`);
}

/**
 * An IAM role ARN as a Lambda resource policy names a principal: the role itself (with its path), never
 * a session (`assumed-role/...`), a user or a wildcard, which would let more callers in than the one role.
 */
const ROLE_ARN = /^arn:aws(?:-cn|-us-gov)?:iam::\d{12}:role\/(?:[\w+=,.@-]+\/)*[\w+=,.@-]{1,64}$/;

/** The operator roles that may invoke the manual-operations function, as context `operatorRoleArns` names them. */
export const operatorRoleArnsSchema = z
  .array(
    z.string().regex(ROLE_ARN, {
      message:
        'must be an IAM role ARN such as arn:aws:iam::123456789012:role/nomad-operator (no session, user or wildcard)',
    }),
    { message: 'must be a list of IAM role ARNs, or one string of them separated by commas' },
  )
  .superRefine((arns, context) => {
    const seen = new Set<string>();
    arns.forEach((arn, index) => {
      if (seen.has(arn)) context.addIssue({ code: 'custom', path: [index], message: 'is listed twice' });
      seen.add(arn);
    });
  });

/**
 * Context `operatorRoleArns`: a JSON array in cdk.json, or on the command line one string of ARNs
 * separated by commas (`-c operatorRoleArns=arn:...:role/a,arn:...:role/b`). Absent, no one may invoke
 * the manual-operations function.
 */
export function parseOperatorRoleArns(value: unknown): string[] {
  const list =
    typeof value === 'string'
      ? value
          .split(',')
          .map((arn) => arn.trim())
          .filter((arn) => arn.length > 0)
      : value;
  return parseOrThrow(
    z.strictObject({ operatorRoleArns: operatorRoleArnsSchema }),
    { operatorRoleArns: list },
    'context operatorRoleArns',
  ).operatorRoleArns;
}
