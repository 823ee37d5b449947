import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type World } from '../../local/world';
import { countCalls } from '../../bench/measure';
import { normalizeSerial } from '../../shared/certificates/outputs';

// A simulated fleet through the real functions, SDK clients and emulators: what one rotation costs
// per node, as counts (the benchmark measures the time).

const SERVERS = 3;
const CLIENTS = 120;
const WAVE = 20;
const IN_FLIGHT = 60;

let world: World;
let calls: Map<string, number>;

const count = (key: string) => calls.get(key) ?? 0;
const total = (prefix: string) =>
  [...calls.entries()].filter(([key]) => key.startsWith(prefix)).reduce((sum, [, value]) => sum + value, 0);

beforeAll(async () => {
  world = await startWorld({
    servers: SERVERS,
    clients: CLIENTS,
    simulated: {
      seed: 7,
      latency: { prepare: { minMs: 20, maxMs: 80 }, install: { minMs: 50, maxMs: 200 } },
    },
    cluster: { name: 'fleet', rollout: { clientWaveSize: WAVE, maxNodesInFlight: IN_FLIGHT } },
  });
  calls = countCalls(world);
  await world.tick();
  await world.settle();
}, 180_000);

afterAll(async () => {
  await world?.stop();
});

describe('a rotation of a simulated fleet', () => {
  it('gives every node certificates that the table records and the node serves', async () => {
    const nodes = await world.runtime.table.listNodes(world.cluster.name);

    expect(nodes).toHaveLength(SERVERS + CLIENTS);
    for (const node of nodes) {
      expect(node.status).toBe('idle');
      expect(normalizeSerial(world.simulated!.node(node.instanceId)!.servedSerial() ?? '')).toBe(
        normalizeSerial(node.agent?.serial ?? 'none'),
      );
    }
  });

  it('sends one command per step and batch: each server alone, clients 20 to a command', () => {
    const commands = 2 * (SERVERS + Math.ceil(CLIENTS / WAVE));

    expect(count('ssm.SendCommandCommand')).toBe(commands);
  });

  it('reads each command’s results with one listing, never one read per node', () => {
    const commands = 2 * (SERVERS + Math.ceil(CLIENTS / WAVE));

    expect(count('ssm.GetCommandInvocationCommand')).toBe(0);
    expect(count('ssm.ListCommandInvocationsCommand')).toBeLessThanOrEqual(commands);
    expect(total('ssm.') / (SERVERS + CLIENTS)).toBeLessThan(0.5);
  });

  it('asks Vault for two signatures per node', () => {
    const signs = world.vault.requestLog.filter(
      (request) => request.method === 'POST' && /\/sign\//.test(request.path),
    );

    expect(signs).toHaveLength(2 * (SERVERS + CLIENTS));
  });

  it('runs client waves side by side within the bound of nodes in flight', () => {
    const peak = world.simulated!.peakInFlight();

    expect(peak).toBeGreaterThan(WAVE);
    expect(peak).toBeLessThanOrEqual(IN_FLIGHT);
  });
});
