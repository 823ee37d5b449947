import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
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
  const absolute = resolve(path);
  let text: string;
  try {
    text = readFileSync(absolute, 'utf8');
  } catch (error) {
    throw new ValidationError(`cannot read the clusters file ${absolute}`, [
      error instanceof Error ? error.message : String(error),
    ]);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ValidationError(`the clusters file ${absolute} is not JSON`, [
      error instanceof Error ? error.message : String(error),
    ]);
  }
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
