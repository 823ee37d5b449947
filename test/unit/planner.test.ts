import { describe, expect, it } from 'vitest';
import { planRotation } from '../../shared/certificates/planner';
import { parseClusterConfig } from '../../shared/config';
import type { NodeRecord } from '../../shared/state/records';
import { testInventory } from '../helpers/inventory';
import { UNCHECKED_TRUST_ANCHORS } from '../helpers/trust-anchors';

const HOUR = 3_600_000;
const NOW = 1_800_000_000_000;
const cluster = parseClusterConfig({
  name: 'prod',
  inventory: testInventory('prod'),
  certificates: UNCHECKED_TRUST_ANCHORS,
  vault: {
    address: 'https://vault:8200',
    tokenSecretId: 't',
    tokenRotation: { iamServerIdHeader: 'vault.internal' },
  },
  rollout: { clientWaveSize: 2 },
});

function node(id: string, role: 'server' | 'client', overrides: Partial<NodeRecord> = {}): NodeRecord {
  const issued = { serial: `s-${id}`, notBefore: NOW - 2 * HOUR, notAfter: NOW + 22 * HOUR };
  return {
    cluster: 'prod',
    instanceId: id,
    role,
    ip: '10.0.0.1',
    status: 'idle',
    agent: issued,
    cli: issued,
    failures: 0,
    version: 1,
    updatedAt: NOW,
    ping: 'Online',
    ...overrides,
  };
}

describe('rotation plan', () => {
  it('rotates only due nodes and says why for every node', () => {
    const due = { serial: 'old', notBefore: NOW - 20 * HOUR, notAfter: NOW + 4 * HOUR };
    const nodes = [
      node('i-00000000000000001', 'server'),
      node('i-00000000000000002', 'client', { agent: due, cli: due }),
      node('i-00000000000000003', 'client', { agent: undefined, cli: undefined }),
    ];

    const plan = planRotation(cluster, nodes, { kind: 'rotate', targets: 'all', force: false }, NOW);

    expect(plan.entries.map((entry) => [entry.instanceId, entry.decision])).toEqual([
      ['i-00000000000000001', 'wait'],
      ['i-00000000000000002', 'rotate'],
      ['i-00000000000000003', 'rotate'],
    ]);
    expect(plan.entries[0]!.reason).toMatch(/^not due until /);
    expect(plan.entries[1]!.reason).toBe('renewal due: 4.0h of validity left');
    expect(plan.entries[2]!.reason).toBe('no certificate issued yet');
  });

  it('puts every server in a wave of its own, first, and clients in bounded waves', () => {
    const nodes = [
      node('i-0000000000000000a', 'client'),
      node('i-00000000000000001', 'server'),
      node('i-0000000000000000b', 'client'),
      node('i-00000000000000002', 'server'),
      node('i-0000000000000000c', 'client'),
    ];

    const plan = planRotation(cluster, nodes, { kind: 'emergency', targets: 'all', force: true }, NOW);

    expect(plan.mode).toBe('restart');
    expect(plan.waves).toEqual([
      { role: 'server', instanceIds: ['i-00000000000000001'] },
      { role: 'server', instanceIds: ['i-00000000000000002'] },
      { role: 'client', instanceIds: ['i-0000000000000000a', 'i-0000000000000000b'] },
      { role: 'client', instanceIds: ['i-0000000000000000c'] },
    ]);
  });

  it('orders recently failing servers last so they do not block healthy ones', () => {
    const nodes = [
      node('i-00000000000000001', 'server', {
        failures: 3,
        status: 'failed',
        nextAttemptAt: NOW - 1,
        lastError: 'x',
      }),
      node('i-00000000000000002', 'server'),
    ];

    const plan = planRotation(cluster, nodes, { kind: 'rotate', targets: 'servers', force: true }, NOW);

    expect(plan.waves.map((wave) => wave.instanceIds[0])).toEqual([
      'i-00000000000000002',
      'i-00000000000000001',
    ]);
  });

  it('waits for offline nodes, backing-off nodes and skips in-flight or retired ones', () => {
    const nodes = [
      node('i-00000000000000001', 'client', { ping: 'ConnectionLost' }),
      node('i-00000000000000002', 'client', {
        status: 'failed',
        failures: 2,
        nextAttemptAt: NOW + HOUR,
        lastError: 'node-offline',
      }),
      node('i-00000000000000003', 'client'),
      node('i-00000000000000004', 'client', { status: 'retired' }),
    ];
    const inFlight = new Map([['i-00000000000000003', { rolloutId: 'r1', step: 'install', state: 'sent' }]]);

    const plan = planRotation(
      cluster,
      nodes,
      { kind: 'rotate', targets: 'all', force: false },
      NOW,
      inFlight,
    );

    expect(plan.entries.map((entry) => entry.decision)).toEqual(['wait', 'wait', 'skip', 'skip']);
    expect(plan.entries[1]!.reason).toContain('backing off after 2 failure(s) (node-offline)');
    expect(plan.waves).toEqual([]);
  });

  it('keeps an offline node in an explicit request, last, instead of dropping it', () => {
    const nodes = [
      node('i-00000000000000001', 'client', { ping: 'ConnectionLost' }),
      node('i-00000000000000002', 'client'),
    ];

    const plan = planRotation(cluster, nodes, { kind: 'emergency', targets: 'all', force: true }, NOW);

    expect(plan.waves).toEqual([
      { role: 'client', instanceIds: ['i-00000000000000002', 'i-00000000000000001'] },
    ]);
    expect(plan.entries[0]!.reason).toBe(
      'requested (emergency); SSM agent offline, tried last and retried until it is back',
    );
  });

  it('selects by role or by instance list', () => {
    const nodes = [node('i-00000000000000001', 'server'), node('i-00000000000000002', 'client')];

    expect(
      planRotation(cluster, nodes, { kind: 'rotate', targets: 'clients', force: true }, NOW).waves,
    ).toEqual([{ role: 'client', instanceIds: ['i-00000000000000002'] }]);
    expect(
      planRotation(cluster, nodes, { kind: 'rotate', targets: ['i-00000000000000001'], force: true }, NOW)
        .waves,
    ).toEqual([{ role: 'server', instanceIds: ['i-00000000000000001'] }]);
  });
});
