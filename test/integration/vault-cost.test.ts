import { describe, expect, it } from 'vitest';
import { measureVaultCost } from '../../bench/vault-cost';

describe('vault cost bench', () => {
  it('counts three issues per node for the seed and two signs for ours, and the seed costs Vault more CPU', async () => {
    const result = await measureVaultCost({ nodes: 4, repetitions: 1 });

    expect(result.nodes).toBe(4);
    expect(result.seed.requestsPerNode).toBe(3);
    expect(result.seed.serverRequestsPerNode).toBe(3);
    expect(result.ours.requestsPerNode).toBe(2);
    expect(result.ours.serverRequestsPerNode).toBe(2);
    expect(result.seed.cpuMsPerNode).toBeGreaterThan(0);
    expect(result.ours.cpuMsPerNode).toBeGreaterThan(0);
    expect(result.seed.cpuMsPerNode).toBeGreaterThan(result.ours.cpuMsPerNode);
    expect(result.cpuRatio).toBeGreaterThan(1);
  });
});
