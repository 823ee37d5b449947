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
