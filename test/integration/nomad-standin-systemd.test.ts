import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNodeFleet, type NodeFleet } from '../../local/node/fleet';
import type { NodeSandbox } from '../../local/node/sandbox';
import { opensslCa } from '../helpers/openssl-ca';
import { eventually, issue, sleep, type TestCa } from '../helpers/standin-nodes';

// The `nomad` unit as systemd runs the packaged one, through the node's systemctl shim: MainPID and
// ActiveState for the install's settle check, and the default start limit (5 starts in 10 s) that
// stops a crash loop until `systemctl reset-failed`. Clients only: no serf, so starts are quick.

let baseDir: string;
let ca: TestCa;
let fleet: NodeFleet;
let commands = 0;

const node = (index: number) => fleet.nodes()[index]!;

async function systemctl(target: NodeSandbox, args: string) {
  commands += 1;
  return target.runScript({
    script: `systemctl ${args}`,
    commandId: `systemctl-${commands}`,
    timeoutSeconds: 30,
  });
}

beforeAll(async () => {
  baseDir = await mkdtemp(join(tmpdir(), 'nomad-standin-systemd-'));
  ca = await opensslCa();
  fleet = await createNodeFleet({
    baseDir,
    servers: 0,
    clients: 3,
    clusterName: 'systemd',
    restartDelayMs: 100,
  });
  await Promise.all(fleet.nodes().map((target) => issue(target, ca)));
});

afterAll(async () => {
  await fleet?.stop();
  await ca?.dispose();
  await rm(baseDir, { recursive: true, force: true });
});

describe('systemd unit through the systemctl shim', () => {
  it('show reports MainPID (0 when stopped) and ActiveState, with options in any order', async () => {
    const target = node(0);

    const stopped = await systemctl(target, 'show nomad --property=MainPID --value');
    await systemctl(target, 'start nomad');
    const pid = target.unitState().pid;
    const shortForm = await systemctl(target, 'show -p MainPID --value nomad');
    const both = await systemctl(target, 'show nomad --property=MainPID,ActiveState');
    const valueFirst = await systemctl(target, '--value show -p ActiveState nomad');

    expect(stopped).toMatchObject({ exitCode: 0, stdout: '0\n' });
    expect(shortForm).toMatchObject({ exitCode: 0, stdout: `${pid}\n` });
    expect(both.stdout).toBe(`MainPID=${pid}\nActiveState=active\n`);
    expect(valueFirst.stdout).toBe('active\n');
    // The agent's own process: the one a SIGHUP reaches.
    expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8')).toContain('nomad-standin');
  });

  it('MainPID changes on every restart, so a settle check can see the agent was restarted', async () => {
    const target = node(0);
    const before = (await systemctl(target, 'show -p MainPID --value nomad')).stdout.trim();

    await systemctl(target, 'restart nomad');
    const after = (await systemctl(target, 'show -p MainPID --value nomad')).stdout.trim();
    const active = await systemctl(target, 'is-active nomad');

    expect(after).not.toBe(before);
    expect(Number(after)).toBe(target.unitState().pid);
    expect(active).toMatchObject({ exitCode: 0, stdout: 'active\n' });
  });

  it('refuses the sixth start within ten seconds until reset-failed', async () => {
    const target = node(1);
    const firstFive = [await systemctl(target, 'start nomad')];
    for (let restart = 0; restart < 4; restart += 1) firstFive.push(await systemctl(target, 'restart nomad'));

    const sixth = await systemctl(target, 'restart nomad');
    const state = await systemctl(target, 'is-active nomad');
    const start = await systemctl(target, 'start nomad');
    const reset = await systemctl(target, 'reset-failed nomad');
    const afterReset = await systemctl(target, 'start nomad');

    expect(firstFive.map((result) => result.exitCode)).toEqual([0, 0, 0, 0, 0]);
    expect(sixth.exitCode).toBe(1);
    expect(sixth.stderr).toContain('Start request repeated too quickly.');
    expect(state).toMatchObject({ exitCode: 3, stdout: 'failed\n' });
    expect(start.exitCode).toBe(1);
    expect(reset.exitCode).toBe(0);
    expect(afterReset.exitCode).toBe(0);
    expect(target.unitState().state).toBe('active');
  });

  it('a crash loop ends at the start limit: failed, no more restarts, until reset-failed', async () => {
    const target = node(2);
    await writeFile(join(target.root, 'opt/nomad/agent-certs/ca.crt'), 'not a certificate\n');

    const first = await systemctl(target, 'start nomad');
    const result = await eventually(
      async () => (await systemctl(target, 'show nomad -p Result --value')).stdout.trim(),
      (value) => value === 'start-limit-hit',
    );
    await sleep(500);
    const properties = await systemctl(target, 'show nomad -p ActiveState -p NRestarts -p MainPID');
    await issue(target, ca);
    const refused = await systemctl(target, 'start nomad');
    await systemctl(target, 'reset-failed nomad');
    const started = await systemctl(target, 'start nomad');

    expect(first.exitCode).toBe(1);
    expect(result).toBe('start-limit-hit');
    expect(properties.stdout).toBe('ActiveState=failed\nNRestarts=5\nMainPID=0\n');
    expect(refused.exitCode).toBe(1);
    expect(started.exitCode).toBe(0);
  });
});
