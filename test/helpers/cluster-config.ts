import { type ClusterConfigInput, parseClusterConfig } from '../../shared/config';
import type { GossipClusterConfig } from '../../shared/gossip/plan';
import { testInventory } from './inventory';
import { UNCHECKED_TRUST_ANCHORS } from './trust-anchors';

/** The least a cluster `prod` needs, as an operator would write it. */
export const MINIMAL_CLUSTER = {
  name: 'prod',
  inventory: testInventory('prod'),
  certificates: UNCHECKED_TRUST_ANCHORS,
  vault: {
    address: 'https://vault.internal:8200',
    tokenSecretId: 'nomad/prod/token',
    tokenRotation: { iamServerIdHeader: 'vault.internal' },
  },
} satisfies ClusterConfigInput;

/** Cluster `prod` with a gossip section (its secret `nomad/prod/gossip`), parsed with the defaults. */
export function gossipCluster(gossip: Partial<NonNullable<ClusterConfigInput['gossip']>> = {}) {
  return parseClusterConfig({
    ...MINIMAL_CLUSTER,
    gossip: { secretId: 'nomad/prod/gossip', ...gossip },
  }) as GossipClusterConfig;
}
