import { describe, expect, it } from 'vitest';
import { ConflictError } from '../../shared/errors';
import { followersFirst, GossipRestartPlan } from '../../shared/gossip/restart';
import { type GossipStatusReport, settledServers } from '../../shared/gossip/status';
import type { AttemptRecord, RolloutRecord } from '../../shared/rollout/model';
import type { NodeRecord } from '../../shared/state/records';
import { gossipCluster } from '../helpers/cluster-config';

// The staged restart plan's judgement of one server's restart, and the order and settledness a
// restart rollout starts from. The real restarts behind the gate run in the gossip e2e suite.

const FINGERPRINT = 'bbbbbbbbbbbbbbbb';
const TOKEN = 'restart-0001';

const cluster = gossipCluster({ maxTries: 3 });

const rollout = {
  cluster: 'prod',
  rolloutId: 'r-1',
  plan: 'gossiprestart',
  settings: { servers: 3, after: 'r-0' },
  reason: 'staged restart after gossip rotation r-0',
  haltReason: 'i-0000000000000000a: restart-failed:not-stable',
} as unknown as RolloutRecord;

const attempt = { target: 'i-0000000000000000a', token: TOKEN, step: 'restart' } as AttemptRecord;

function harness(offline: string[] = []) {
  const events: { type: string; detail: Record<string, unknown> }[] = [];
  const alarms: string[] = [];
  const sent: { operation: string; targets: readonly string[]; expectedServers?: number }[] = [];
  const plan = new GossipRestartPlan({
    cluster,
    commands: {
      send: async (operation, targets, request) => {
        sent.push({ operation, targets, expectedServers: request.expectedServers });
        return 'command-1';
      },
    },
    nodes: {
      getNodes: async (_cluster, ids) =>
        ids.map((instanceId) => ({
          instanceId,
          ping: offline.includes(instanceId) ? 'ConnectionLost' : 'Online',
        })) as NodeRecord[],
    },
    events: { publish: async (type, detail) => void events.push({ type, detail }) },
    telemetry: { gossipRotationFailed: (name) => void alarms.push(name) },
  });
  return { plan, events, alarms, sent };
}

function report(overrides: Record<string, unknown> = {}): string {
  return `${JSON.stringify({
    ok: true,
    stage: 'gossip',
    operation: 'restart',
    attemptId: TOKEN,
    mutation: { ok: true, changed: true, wasLeader: false },
    list: { ok: true, counts: { [FINGERPRINT]: 3 }, numNodes: 3 },
    keyringFile: [FINGERPRINT],
    healthy: true,
    members: { alive: 3, total: 3 },
    leader: '10.0.0.1:4647',
    autopilot: { healthy: true, failureTolerance: 1, cleanupDeadServers: true },
    leaderHere: false,
    ...overrides,
  })}\n`;
}

const refusal = (reason: string, detail?: string) =>
  `${JSON.stringify({ ok: false, stage: 'gossip', operation: 'restart', attemptId: TOKEN, reason, detail })}\n`;

describe('a staged restart of one server', () => {
  it('passes a server back as a healthy voter with tolerance restored, carrying whether it led', async () => {
    const { plan } = harness();

    const verdict = await plan.judge(rollout, attempt, {
      state: 'succeeded',
      stdout: report({ mutation: { ok: true, changed: true, wasLeader: true } }),
    });

    expect(verdict).toEqual({ ok: true, carry: { wasLeader: true } });
  });

  it('tries again later when the gate before the restart was closed: nothing was touched', async () => {
    const { plan } = harness();

    const verdict = await plan.judge(rollout, attempt, {
      state: 'failed',
      detail: 'Failed',
      stdout: refusal('gate-closed', 'failure-tolerance-0'),
    });

    expect(verdict).toEqual({ ok: false, reason: 'gate-closed:failure-tolerance-0' });
  });

  it('halts at once when a restarted server did not come back stable', async () => {
    const { plan } = harness();

    const verdict = await plan.judge(rollout, attempt, {
      state: 'succeeded',
      stdout: report({ mutation: { ok: false, error: 'not-stable' }, healthy: false }),
    });

    expect(verdict).toEqual({ ok: false, reason: 'restart-failed:not-stable', final: true });
  });

  it('halts when the report claims success but shows the cluster short of a server', async () => {
    const { plan } = harness();

    const verdict = await plan.judge(rollout, attempt, {
      state: 'succeeded',
      stdout: report({
        members: { alive: 2, total: 3 },
        autopilot: { healthy: false, failureTolerance: 0, cleanupDeadServers: true },
      }),
    });

    expect(verdict).toMatchObject({ ok: false, reason: 'restart-not-proven:2-of-3-alive', final: true });
  });

  it("refuses another attempt's report or one that is not a restart's", async () => {
    const { plan } = harness();

    const verdicts = await Promise.all(
      [report({ attemptId: 'restart-0002' }), report({ operation: 'inspect' }), 'not json'].map((stdout) =>
        plan.judge(rollout, attempt, { state: 'succeeded', stdout }),
      ),
    );

    expect(verdicts).toEqual(Array(3).fill({ ok: false, reason: 'gossip-output-unreadable', final: true }));
  });

  it('sends no restart to a server whose SSM agent is offline, and one command per server otherwise', async () => {
    const { plan } = harness(['i-0000000000000000b']);
    const attempts = ['i-0000000000000000a', 'i-0000000000000000b'].map(
      (target) => ({ ...attempt, target }) as AttemptRecord,
    );

    const batches = await plan.batch(rollout, 'restart', attempts);

    expect(batches.batches.map((batch) => batch.map((a) => a.target))).toEqual([['i-0000000000000000a']]);
    expect(batches.unreachable).toEqual([{ attempt: attempts[1], reason: 'server-offline' }]);
  });

  it('tells the restart how many servers must be alive around it', async () => {
    const { plan, sent } = harness();

    await plan.send(rollout, 'restart', [attempt], 'key');

    expect(sent).toEqual([{ operation: 'restart', targets: [attempt.target], expectedServers: 3 }]);
  });

  it('alarms and says why when the restarts halt', async () => {
    const { plan, events, alarms } = harness();

    await plan.announce(rollout, 'halted', []);

    expect(alarms).toEqual(['prod']);
    expect(events).toEqual([
      {
        type: 'GossipRestartHalted',
        detail: { cluster: 'prod', rolloutId: 'r-1', reason: rollout.haltReason },
      },
    ]);
  });
});

function status(servers: GossipStatusReport['servers']): GossipStatusReport {
  return { cluster: 'prod', secret: { current: FINGERPRINT }, servers };
}

function answered(instanceId: string, overrides: Record<string, unknown> = {}) {
  return {
    instanceId,
    answered: true as const,
    list: { ok: true as const, counts: { [FINGERPRINT]: 3 }, numNodes: 3 },
    keyringFile: [FINGERPRINT],
    healthy: true,
    members: { alive: 3, total: 3 },
    leader: '10.0.0.1:4647',
    autopilot: { healthy: true, failureTolerance: 1, cleanupDeadServers: true },
    leaderHere: false,
    ...overrides,
  };
}

describe('where staged restarts start from', () => {
  it('restarts the followers first and the leader last', () => {
    const order = followersFirst(
      settledServers(
        status([
          answered('i-0000000000000000a', { leaderHere: true }),
          answered('i-0000000000000000b'),
          answered('i-0000000000000000c'),
        ]),
      ),
    );

    expect(order).toEqual(['i-0000000000000000b', 'i-0000000000000000c', 'i-0000000000000000a']);
  });

  it('refuses a cluster that could not lose a server now, naming each server that is short', () => {
    const unsettled = status([
      answered('i-0000000000000000a', {
        autopilot: { healthy: false, failureTolerance: 0, cleanupDeadServers: true },
      }),
      answered('i-0000000000000000b', { autopilot: null }),
      { instanceId: 'i-0000000000000000c', answered: false, reason: 'no-answer-in-time' },
    ]);

    const refused = () => settledServers(unsettled);

    expect(refused).toThrow(ConflictError);
    expect(refused).toThrow(
      /i-0000000000000000a: autopilot failure tolerance 0; i-0000000000000000b: autopilot health unreadable \(the ACL token needs operator:read\); i-0000000000000000c: no-answer-in-time/,
    );
  });
});
