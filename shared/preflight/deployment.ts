import { z } from 'zod';
import { type ClusterConfig, parseClustersConfig } from '../config';
import { ConfigError } from '../errors';
import { describeIssues } from '../validation';

/**
 * What the stack tells the doctor about itself, in one SSM parameter (`deploymentParameterName`):
 * the names CloudFormation chose, which an operator could otherwise find only in the console. The
 * clusters as the functions read them sit beside it, one parameter each (`clustersParameterPath`),
 * so no cluster's CA bundle crowds another out of a parameter's 8 KB.
 */
export const deploymentSchema = z.strictObject({
  documents: z.strictObject({
    prepare: z.string().min(1),
    install: z.string().min(1),
    gossip: z.string().min(1),
  }),
  tickSchedule: z.strictObject({ name: z.string().min(1), group: z.string().min(1) }),
  eventRules: z.array(z.string().min(1)),
  deadLetterQueues: z.record(z.string(), z.url()),
  alarmNamePrefix: z.string().min(1),
});

export type Deployment = z.output<typeof deploymentSchema>;

export function deploymentParameterName(stackName: string): string {
  return `/${stackName}/deployment`;
}

export function clustersParameterPath(stackName: string): string {
  return `/${stackName}/clusters`;
}

export function clusterParameterName(stackName: string, clusterName: string): string {
  return `${clustersParameterPath(stackName)}/${clusterName}`;
}

export function parseDeployment(text: string | undefined): Deployment {
  const parsed = deploymentSchema.safeParse(parseJson(text));
  if (!parsed.success)
    throw new ConfigError('invalid deployment parameter', describeIssues(parsed.error.issues));
  return parsed.data;
}

/** The clusters' parameters, each one cluster's JSON, validated together as the functions validate them. */
export function parseClusterParameters(values: readonly (string | undefined)[]): ClusterConfig[] {
  return parseClustersConfig(values.map(parseJson));
}

function parseJson(text: string | undefined): unknown {
  try {
    return text === undefined ? undefined : JSON.parse(text);
  } catch {
    return undefined;
  }
}
