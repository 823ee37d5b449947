import { describe, expect, it } from 'vitest';
import { RecordingLogger } from '../../local/world/recording';
import { GossipEnablePlan } from '../../shared/gossip/enable';
import type { GossipCommandRequest } from '../../shared/gossip/plan';
import type { AttemptRecord, RolloutRecord } from '../../shared/rollout/model';
import type { NodeRecord } from '../../shared/state/records';
import { gossipCluster } from '../helpers/cluster-config';
import { InMemoryGossipKeys } from '../helpers/fake-cluster';

// How the enable plan judges one server coming up encrypted, what it tells each server, and when
// the staged key becomes the cluster's. The real restarts run in test/e2e/gossip-enable.test.ts.

const TOKEN = 'enable-0001';
const SERVERS = ['i-0000000000000000a', 'i-0000000000000000b', 'i-0000000000000000c'];

const cluster = gossipCluster();

const rollout = {
  cluster: 'prod',
  rolloutId: 'r-enable',
  plan: 'gossipenable',
  settings: { servers: 3, cleanupDeadServers: true },
  waveCount: 3,
  reason: 'enable gossip encryption',
} as unknown as RolloutRecord;

const attemptOn = (wave: number) =>
  ({ target: SERVERS[wave], token: TOKEN, step: 'enable', wave }) as unknown as AttemptRecord;

function harness() {
  const custody = new InMemoryGossipKeys();
  const sent: GossipCommandRequest[] = [];
  const plan = new GossipEnablePlan({
    cluster,
    custody,
    commands: {
      send: async (_operation, _targets, request) => {
        sent.push(request);
        return 'command-1';
      },
    },
    nodes: {
      getNodes: async (_c, ids) => ids.map((instanceId) => ({ instanceId, ping: 'Online' })) as NodeRecord[],
    },
    events: { publish: async () => undefined },
    telemetry: { gossipRotationFailed: () => undefined },
    logger: new RecordingLogger(),
  });
  return { plan, custody, sent };
}

async function report(custody: InMemoryGossipKeys, overrides: Record<string, unknown> = {}) {
  const { pending, current } = await custody.stages();
  const fingerprint = (pending ?? current)!.fingerprint!;
  return `${JSON.stringify({
    ok: true,
    stage: 'gossip',
    operation: 'enable',
    attemptId: TOKEN,
    mutation: { ok: true, changed: true },
    list: { ok: true, counts: { [fingerprint]: 1 }, numNodes: 1 },
    keyringFile: [fingerprint],
    healthy: false,
    members: { alive: 1, total: 3 },
    leader: '',
    autopilot: null,
    leaderHere: null,
    ...overrides,
  })}\n`;
}

describe('enabling gossip encryption, server by server', () => {
  it('stages one key for the whole rollout and tells only the last server to wait for the full gate and restore the cleanup', async () => {
    const { plan, sent } = harness();

    for (const wave of [0, 1, 2]) await plan.send(rollout, 'enable', [attemptOn(wave)], 'key');

    expect(new Set(sent.map((request) => request.keyFingerprint)).size).toBe(1);
    expect(sent.map((request) => [request.lastServer, request.restoreCleanup])).toEqual([
      [false, false],
      [false, false],
      [true, true],
    ]);
    expect(sent.every((request) => request.expectedServers === 3)).toBe(true);
  });

  it('leaves the cleanup off at the end when it was off before the rollout', async () => {
    const { plan, sent } = harness();
    const cleanupWasOff = {
      ...rollout,
      settings: { servers: 3, cleanupDeadServers: false },
    } as RolloutRecord;

    await plan.send(cleanupWasOff, 'enable', [attemptOn(2)], 'key');

    expect(sent[0]).toMatchObject({ lastServer: true, restoreCleanup: false });
  });

  it('passes a follower up on the staged key alone and keeps the key pending', async () => {
    const { plan, custody } = harness();
    await plan.send(rollout, 'enable', [attemptOn(0)], 'key');

    const verdict = await plan.judge(rollout, attemptOn(0), {
      state: 'succeeded',
      stdout: await report(custody),
    });

    expect(verdict).toEqual({ ok: true });
    expect((await custody.stages()).current).toBeUndefined();
  });

  it('makes the key current only once the last server shows it on every server', async () => {
    const { plan, custody } = harness();
    await plan.send(rollout, 'enable', [attemptOn(2)], 'key');
    const staged = (await custody.stages()).pending!.fingerprint!;

    const short = await plan.judge(rollout, attemptOn(2), {
      state: 'succeeded',
      stdout: await report(custody),
    });
    const whole = await plan.judge(rollout, attemptOn(2), {
      state: 'succeeded',
      stdout: await report(custody, { list: { ok: true, counts: { [staged]: 3 }, numNodes: 3 } }),
    });

    expect(short).toEqual({
      ok: false,
      reason: 'enable-not-proven:keyring-not-on-every-server',
      final: true,
    });
    expect(whole).toEqual({ ok: true });
    expect((await custody.stages()).current?.fingerprint).toBe(staged);
  });

  it('halts when a server came up on another keyring than the staged key', async () => {
    const { plan, custody } = harness();
    await plan.send(rollout, 'enable', [attemptOn(0)], 'key');

    const verdict = await plan.judge(rollout, attemptOn(0), {
      state: 'succeeded',
      stdout: await report(custody, { keyringFile: ['cccccccccccccccc'] }),
    });

    expect(verdict).toEqual({ ok: false, reason: 'enable-not-proven:keyring-not-seeded', final: true });
  });

  it('tries a server again when its gate before the restart did not hold, and halts when it did not come back', async () => {
    const { plan, custody } = harness();
    await plan.send(rollout, 'enable', [attemptOn(1)], 'key');
    const refusal = `${JSON.stringify({ ok: false, stage: 'gossip', operation: 'enable', attemptId: TOKEN, reason: 'gate-closed', detail: 'raft-voters-2-of-3' })}\n`;

    const closed = await plan.judge(rollout, attemptOn(1), {
      state: 'failed',
      detail: 'Failed',
      stdout: refusal,
    });
    const notBack = await plan.judge(rollout, attemptOn(1), {
      state: 'succeeded',
      stdout: await report(custody, { mutation: { ok: false, error: 'not-stable' } }),
    });

    expect(closed).toEqual({ ok: false, reason: 'gate-closed:raft-voters-2-of-3' });
    expect(notBack).toEqual({ ok: false, reason: 'enable-failed:not-stable', final: true });
  });
});
