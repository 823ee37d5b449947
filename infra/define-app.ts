import { type App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ConfigError } from '../shared/errors';
import { loadClustersFile, loadNetworkFile, parseOperatorRoleArns } from './config';
import { NomadRotatorStack } from './stack';

export const DEFAULT_CLUSTERS_FILE = 'infra/clusters.example.json';

/**
 * Everything `cdk synth` builds, for the CLI entry point and the tests alike: the stack from the
 * clusters file named by context `clustersFile`, in the region of context `region` (else the CLI's
 * default region), checked by cdk-nag's AwsSolutions pack. With context `networkFile` (a JSON file
 * like infra/network.example.json) the functions run in that VPC's subnets; without it, outside any
 * VPC. Context `operatorRoleArns` names the roles that may invoke the manual-operations function URL
 * (none when absent).
 */
export function defineApp(app: App): NomadRotatorStack {
  const clustersFile = stringContext(app, 'clustersFile') ?? DEFAULT_CLUSTERS_FILE;
  // A CMK-encrypted TableV2 cannot be rendered region-agnostic, and a deployment is regional anyway.
  const region = stringContext(app, 'region') ?? process.env.CDK_DEFAULT_REGION;
  if (region === undefined) {
    throw new ConfigError('no target region', [
      'region: pass -c region=<aws region>, or configure a default region (AWS_REGION or the profile)',
    ]);
  }
  const { inputs, clusters } = loadClustersFile(clustersFile);
  const networkFile = stringContext(app, 'networkFile');
  const network = networkFile === undefined ? undefined : loadNetworkFile(networkFile, region);
  const operatorRoleArns = parseOperatorRoleArns(app.node.tryGetContext('operatorRoleArns') ?? []);
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
  return new NomadRotatorStack(app, 'NomadRotator', {
    env: { region },
    description: 'nomad-rotator: rotation of Nomad agent/CLI certificates and the Vault token',
    clusterInputs: inputs,
    clusters,
    network,
    operatorRoleArns,
  });
}

function stringContext(app: App, name: string): string | undefined {
  const value: unknown = app.node.tryGetContext(name);
  if (value === undefined || value === '') return undefined;
  if (typeof value !== 'string')
    throw new ConfigError(`invalid context ${name}`, [`${name}: must be a string`]);
  return value;
}
