/** The two clusters the model runs, their nodes and the one configuration each keeps for every schedule. */

import type { NodeRole } from '../../shared/certificates/names';
import { type ClusterConfig, parseClusterConfig } from '../../shared/config';
import { testInventory } from '../helpers/inventory';
import { UNCHECKED_TRUST_ANCHORS } from '../helpers/trust-anchors';
import type { FakeNode } from './fleet-state';

export const START = Date.UTC(2026, 0, 5, 9);
export const SECOND = 1000;

export interface FleetSpec {
  name: string;
  servers: number;
  clients: number;
  /** Instance ids are `i-<prefix><14 digits>`, so the clusters never share one. */
  prefix: string;
}

export const FLEETS: readonly FleetSpec[] = [
  { name: 'alpha', servers: 3, clients: 4, prefix: 'aaa' },
  { name: 'beta', servers: 1, clients: 2, prefix: 'bbb' },
];

export const CLUSTER_NAMES = FLEETS.map((fleet) => fleet.name);

const ROLLOUT_SETTINGS = {
  clientWaveSize: 2,
  maxAttempts: 3,
  backoffBaseSeconds: 60,
  backoffMaxSeconds: 600,
  commandTimeoutSeconds: 600,
};

/** Parsed once: a schedule never changes configuration, and zod parsing per run would dominate it. */
export const CONFIGS: ReadonlyMap<string, ClusterConfig> = new Map(
  FLEETS.map((fleet) => [
    fleet.name,
    parseClusterConfig({
      name: fleet.name,
      inventory: testInventory(fleet.name, fleet.servers),
      certificates: UNCHECKED_TRUST_ANCHORS,
      vault: {
        address: 'https://vault.internal:8200',
        tokenSecretId: 'nomad-rotator/token',
        tokenRotation: { iamServerIdHeader: 'vault.internal' },
      },
      rollout: ROLLOUT_SETTINGS,
    }),
  ]),
);

/** How far quiesce moves the clock per round: every backoff, lease and command timeout is over by then. */
export const QUIESCE_STEP_MS =
  (ROLLOUT_SETTINGS.backoffMaxSeconds + ROLLOUT_SETTINGS.commandTimeoutSeconds) * SECOND;

/** The node agent SIGKILLs an install at its executionTimeout; prepare runs under the document default. */
export const PREPARE_EXECUTION_TIMEOUT_MS = 900 * SECOND;

function instanceId(prefix: string, index: number): string {
  return `i-${prefix}${String(index).padStart(14, '0')}`;
}

/** Every node of every fleet as a schedule starts: online, running, and holding no certificate yet. */
export function startingNodes(): FakeNode[] {
  return FLEETS.flatMap((fleet) => {
    const roles: NodeRole[] = [
      ...Array.from({ length: fleet.servers }, () => 'server' as const),
      ...Array.from({ length: fleet.clients }, () => 'client' as const),
    ];
    return roles.map((role, index) => {
      const id = instanceId(fleet.prefix, index + 1);
      return {
        cluster: fleet.name,
        instanceId: id,
        role,
        ip: `10.${fleet.prefix === 'aaa' ? 1 : 2}.0.${index + 10}`,
        online: true,
        terminated: false,
      };
    });
  });
}
