import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countCalls } from '../../bench/measure';
import { DOCUMENT_NAMES, startWorld, type World } from '../../local/world';
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

  it('prepares each server alone and each client wave with one command', () => {
    const prepares = world.ssm.history().filter((command) => command.DocumentName === DOCUMENT_NAMES.prepare);

    expect(prepares).toHaveLength(SERVERS + CLIENTS / WAVE);
    expect(prepares.filter((command) => command.TargetCount === WAVE)).toHaveLength(CLIENTS / WAVE);
  });

  it('installs a wave in as few commands as SSM’s 64 KB allow, never one per node', () => {
    const installs = world.ssm.history().filter((command) => command.DocumentName === DOCUMENT_NAMES.install);
    const clientInstalls = installs.filter((command) => command.TargetCount > 1);

    expect(installs.reduce((sum, command) => sum + command.TargetCount, 0)).toBe(SERVERS + CLIENTS);
    // Gzipped, two certificates per node take about 570 characters: a wave of 20 is one command.
    expect(clientInstalls).toHaveLength(CLIENTS / WAVE);
  });

  it('reads each command’s results with one listing, never one read per node', () => {
    const commands = world.ssm.history().length;

    expect(count('ssm.GetCommandInvocationCommand')).toBe(0);
    expect(count('ssm.ListCommandInvocationsCommand')).toBe(commands);
    expect(count('ssm.SendCommandCommand')).toBe(commands);
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
