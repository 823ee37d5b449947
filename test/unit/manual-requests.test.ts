import { describe, expect, it } from 'vitest';
import type { Plan } from '../../shared/certificates/planner';
import { type FakeClusterHarness, fakeCluster } from '../helpers/fake-cluster';
import { invokeManualOps, settleFakeCluster } from '../helpers/fake-cluster-handler';

const fleet = [
  { instanceId: 'i-00000000000000001', role: 'server' as const },
  { instanceId: 'i-0000000000000000a', role: 'client' as const },
];

let harness: FakeClusterHarness;

/** A cluster whose nodes all hold their first certificates. */
async function issuedCluster(): Promise<{ replacedSerials: string[] }> {
  harness = await fakeCluster(fleet);
  await harness.rotation().tick({ deadline: Number.MAX_SAFE_INTEGER, owner: 'test', actor: 'schedule' });
  await settleFakeCluster(harness);
  const nodes = await harness.table.listNodes('prod');
  return { replacedSerials: nodes.flatMap((node) => [node.agent!.serial, node.cli!.serial]) };
}

function installModes(): string[] {
  return harness.fleet.commands
    .filter((command) => command.kind === 'install')
    .slice(-fleet.length)
    .map((command) => command.parameters.mode!);
}

describe('reissue and its revoke choice', () => {
  it('keeps the replaced serials valid when the operator says --no-revoke', async () => {
    await issuedCluster();

    await invokeManualOps(harness, {
      action: 'reissue',
      cluster: 'prod',
      targets: 'all',
      reason: 'INC-7 drill',
      revokePrevious: false,
    });
    await settleFakeCluster(harness);

    expect(harness.authority.revoked).toEqual([]);
    expect(installModes()).toEqual(['restart', 'restart']);
  });

  it('revokes the replaced serials when the request does not say', async () => {
    const { replacedSerials } = await issuedCluster();

    await invokeManualOps(harness, { action: 'reissue', cluster: 'prod', targets: 'all', reason: 'INC-7' });
    await settleFakeCluster(harness);

    expect(harness.authority.revoked.sort()).toEqual(replacedSerials.sort());
  });
});

describe('the invocation deadline', () => {
  it('starts a manual rotation but sends nothing when the invocation has no time left to spend', async () => {
    await issuedCluster();
    const sentBefore = harness.fleet.commands.length;

    // 15 s left is inside the 20 s safety margin: the rollout is recorded, the next tick dispatches it.
    const answer = (await invokeManualOps(
      harness,
      { action: 'rotate', cluster: 'prod', targets: 'all', reason: 'OPS-42' },
      15_000,
    )) as { rolloutId: string | null };

    expect(answer.rolloutId).not.toBeNull();
    expect(harness.fleet.commands.length).toBe(sentBefore);
  });
});

describe('plan', () => {
  it.each([
    { choices: {}, mode: 'reload', revokePrevious: false },
    { choices: { restart: true }, mode: 'restart', revokePrevious: false },
    { choices: { revokePrevious: true }, mode: 'reload', revokePrevious: true },
  ])('shows the mode and revoke decision a rotation with $choices then uses', async (expected) => {
    await issuedCluster();
    const request = { cluster: 'prod', targets: 'all', reason: 'OPS-42', ...expected.choices };

    const planned = (await invokeManualOps(harness, { action: 'plan', ...request })) as { plan: Plan };
    await invokeManualOps(harness, { action: 'rotate', ...request });

    const rollout = (await harness.table.getActiveRollout('prod'))!;
    expect({ mode: planned.plan.mode, revokePrevious: planned.plan.revokePrevious }).toEqual({
      mode: expected.mode,
      revokePrevious: expected.revokePrevious,
    });
    expect({ mode: rollout.settings.mode, revokePrevious: rollout.settings.revokePrevious }).toEqual({
      mode: expected.mode,
      revokePrevious: expected.revokePrevious,
    });
  });
});

describe('gossip requests', () => {
  it('refuses a bad gossip request naming the field, and writes nothing', async () => {
    harness = await fakeCluster(fleet, { gossip: { secretId: 'gossip-key', rotateEvery: 'off' } });

    const refusals = await Promise.all(
      [
        { action: 'rotate-gossip', cluster: 'prod' },
        { action: 'rotate-gossip', cluster: 'prod', reason: 'ok reason', targets: 'all' },
        { action: 'rotate-gossip', cluster: 'elsewhere', reason: 'ok reason' },
        { action: 'disable-gossip', cluster: 'prod', reason: 'ok reason' },
        { action: 'rotate-gossip', cluster: 'prod', reason: 'ok reason', restart: 'always' },
        { action: 'repair-gossip', cluster: 'prod', reason: 'ok reason', restart: 'staged' },
      ].map((payload) => invokeManualOps(harness, payload).catch((error: Error) => error.message)),
    );

    expect(refusals).toEqual([
      expect.stringMatching(/^400: .*reason/),
      expect.stringMatching(/^400: .*targets: unknown field/),
      expect.stringMatching(/^400: .*cluster: elsewhere is not configured/),
      expect.stringMatching(
        /^400: .*action: must be one of plan, rotate, reissue, rotate-gossip, enable-gossip, repair-gossip, gossip-status/,
      ),
      expect.stringMatching(/^400: .*restart: must be "none" or "staged"/),
      expect.stringMatching(/^400: .*restart: only rotate-gossip takes it/),
    ]);
    expect(await harness.table.listAudit('prod', harness.clock.now())).toEqual([]);
    expect(harness.fleet.commands).toEqual([]);
  });

  it('refuses a gossip rotation of a cluster with no gossip section, before anything is written', async () => {
    harness = await fakeCluster(fleet);

    const refused = invokeManualOps(harness, { action: 'rotate-gossip', cluster: 'prod', reason: 'OPS-1' });

    await expect(refused).rejects.toThrow(/400: .*cluster: prod has no gossip section/);
    expect(await harness.table.listAudit('prod', harness.clock.now())).toEqual([]);
    expect(await harness.table.listRollouts('prod')).toEqual([]);
  });

  it('names the servers on a dry run and changes nothing', async () => {
    harness = await fakeCluster(fleet, { gossip: { secretId: 'gossip-key', rotateEvery: 'off' } });
    await harness.rotation().tick({ deadline: Number.MAX_SAFE_INTEGER, owner: 'test', actor: 'schedule' });
    await settleFakeCluster(harness);
    const rolloutsBefore = await harness.table.listRollouts('prod');
    const commandsBefore = harness.fleet.commands.length;

    const answer = await invokeManualOps(harness, {
      action: 'rotate-gossip',
      cluster: 'prod',
      reason: 'OPS-2',
      dryRun: true,
    });

    expect(answer).toMatchObject({
      dryRun: true,
      rolloutId: null,
      servers: ['i-00000000000000001'],
      restart: 'none',
    });
    expect(await harness.table.listRollouts('prod')).toEqual(rolloutsBefore);
    expect(harness.fleet.commands).toHaveLength(commandsBefore);
    expect(await harness.gossipKeys.stages()).toEqual({});
  });
});
