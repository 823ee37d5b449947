import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../shared/errors';
import { serviceConfigFromEnvironment } from '../../shared/runtime';
import { testInventory } from '../helpers/inventory';
import { UNCHECKED_TRUST_ANCHORS } from '../helpers/trust-anchors';

const clusters = JSON.stringify([
  {
    name: 'prod-eu',
    inventory: testInventory('prod-eu'),
    certificates: UNCHECKED_TRUST_ANCHORS,
    vault: {
      address: 'https://vault.internal:8200',
      tokenSecretId: 'NomadRotator/prod-eu/vault-token',
      tokenRotation: { iamServerIdHeader: 'vault.internal' },
    },
  },
]);
const base = {
  STATE_TABLE_NAME: 'state',
  EVENT_BUS_NAME: 'bus',
  PREPARE_DOCUMENT_NAME: 'NomadRotator-Prepare',
  INSTALL_DOCUMENT_NAME: 'NomadRotator-Install',
  GOSSIP_DOCUMENT_NAME: 'NomadRotator-Gossip',
};
const issuesOf = (act: () => unknown): string[] => {
  try {
    act();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return [...(error as ConfigError).issues];
  }
  throw new Error('no ConfigError');
};

describe('service configuration read at start-up', () => {
  it('reads the clusters from the file in the bundle, as the deployed functions do', () => {
    const read: string[] = [];

    const config = serviceConfigFromEnvironment(
      { ...base, CLUSTERS_CONFIG_FILE: '/var/task/clusters.json' },
      (path) => {
        read.push(path);
        return clusters;
      },
    );

    expect(read).toEqual(['/var/task/clusters.json']);
    expect(config.clusters.map((cluster) => cluster.name)).toEqual(['prod-eu']);
  });

  it('accepts the clusters inline too', () => {
    expect(serviceConfigFromEnvironment({ ...base, CLUSTERS_CONFIG: clusters }).clusters).toHaveLength(1);
  });

  it('names the variable when both, neither, an unreadable file or bad JSON is given', () => {
    const missing = () => {
      throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
    };

    expect(issuesOf(() => serviceConfigFromEnvironment(base))).toEqual([
      'CLUSTERS_CONFIG, CLUSTERS_CONFIG_FILE: exactly one must be set',
    ]);
    expect(
      issuesOf(() =>
        serviceConfigFromEnvironment({
          ...base,
          CLUSTERS_CONFIG: clusters,
          CLUSTERS_CONFIG_FILE: '/var/task/c.json',
        }),
      ),
    ).toEqual(['CLUSTERS_CONFIG, CLUSTERS_CONFIG_FILE: exactly one must be set']);
    expect(
      issuesOf(() =>
        serviceConfigFromEnvironment({ ...base, CLUSTERS_CONFIG_FILE: '/var/task/c.json' }, missing),
      ),
    ).toEqual(['CLUSTERS_CONFIG_FILE: cannot be read (ENOENT)']);
    expect(
      issuesOf(() =>
        serviceConfigFromEnvironment({ ...base, CLUSTERS_CONFIG_FILE: '/var/task/c.json' }, () => '{'),
      ),
    ).toEqual(['CLUSTERS_CONFIG_FILE: must be a JSON array of cluster configurations']);
  });
});
