import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEVELOPER, OPERATOR, startWorld, type World } from '../../local/world';

const execute = promisify(execFile);
let world: World;

/** The real `npx nomad-rotator` entry point, with the environment an operator would export. */
function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return cliWith({}, ...args);
}

/** The CLI with some of the environment replaced, e.g. another role's credentials. */
async function cliWith(
  environment: Record<string, string>,
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execute(process.execPath, ['bin/nomad-rotator.mjs', ...args], {
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        USER: 'operator',
        ...world.cliEnvironment(),
        ...environment,
      },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

beforeAll(async () => {
  world = await startWorld({ servers: 1, clients: 1, cluster: { name: 'cli' } });
  await world.tick();
  await world.settle();
});

afterAll(async () => {
  await world?.stop();
});

describe('operator CLI against the local world (state table + the manual-ops function URL)', () => {
  it('shows every node with its serial in the fleet table', async () => {
    const records = await world.runtime.table.listNodes('cli');

    const { code, stdout, stderr } = await cli('status', '--cluster', 'cli');

    expect(code).toBe(0);
    expect(stderr).toBe('');
    for (const record of records) {
      expect(stdout).toContain(record.instanceId);
      expect(stdout).toContain(record.agent!.serial.replaceAll(':', '').slice(-6));
    }
  });

  it('plans without changing anything, then rotates one node on request', async () => {
    const [client] = world.fleet.nodes().filter((node) => node.role === 'client');
    const before = await world.runtime.table.getNode('cli', client!.instanceId);

    const plan = await cli('plan', '--cluster', 'cli');
    expect(plan.code).toBe(0);
    expect(JSON.parse(plan.stdout)).toMatchObject({ action: 'plan' });
    expect(await world.runtime.table.getNode('cli', client!.instanceId)).toEqual(before);

    const rotate = await cli(
      'rotate',
      '--cluster',
      'cli',
      '--targets',
      client!.instanceId,
      '--reason',
      'OPS-1',
    );
    await world.settle();

    expect(rotate.code).toBe(0);
    expect(JSON.parse(rotate.stdout)).toMatchObject({ action: 'rotate', message: 'rollout started' });
    const after = await world.runtime.table.getNode('cli', client!.instanceId);
    expect(after?.agent?.serial).not.toBe(before?.agent?.serial);
    expect(after?.status).toBe('idle');
    // Who asked is the role session the function URL verified; $USER rides along only as a claim.
    const audit = await world.runtime.table.listAudit('cli', world.clock.now());
    const request = audit.find((entry) => entry.action === 'manual-rotate' && entry.reason === 'OPS-1');
    expect(request?.actor).toBe(OPERATOR.arn);
    expect(request?.details?.claimedRequestedBy).toBe('cli:operator');
  });

  it('rotates the gossip key: a dry run changes nothing, the rotation ends on the key gossip-status shows', async () => {
    const [server] = world.fleet.nodes().filter((node) => node.role === 'server');
    const rollouts = async () => (await world.runtime.table.listRollouts('cli')).length;
    const before = await rollouts();

    const dryRun = await cli('rotate-gossip', '--cluster', 'cli', '--reason', 'OPS-2', '--dry-run');
    expect(dryRun.code).toBe(0);
    expect(JSON.parse(dryRun.stdout)).toMatchObject({ dryRun: true, servers: [server!.instanceId] });
    expect(await rollouts()).toBe(before);

    const rotate = await cli('rotate-gossip', '--cluster', 'cli', '--reason', 'OPS-2');
    await world.settle();
    const status = await cli('gossip-status', '--cluster', 'cli');

    expect(rotate.code).toBe(0);
    const { rolloutId } = JSON.parse(rotate.stdout) as { rolloutId: string };
    expect(await world.runtime.table.getRollout('cli', rolloutId)).toMatchObject({ status: 'completed' });
    expect(status.code).toBe(0);
    expect(status.stderr).toBe('');
    const report = JSON.parse(status.stdout) as {
      secret: { current: string };
      servers: { instanceId: string; answered: boolean; keyringFile: string[]; healthy: boolean }[];
    };
    expect(report.servers).toEqual([
      expect.objectContaining({
        instanceId: server!.instanceId,
        answered: true,
        keyringFile: [report.secret.current],
        healthy: true,
      }),
    ]);
  });

  it('refuses a role the deployment did not name with 403, and changes nothing', async () => {
    const before = await world.runtime.table.listNodes('cli');
    const auditBefore = await world.runtime.table.listAudit('cli', world.clock.now());
    const asDeveloper = {
      AWS_ACCESS_KEY_ID: DEVELOPER.accessKeyId,
      AWS_SECRET_ACCESS_KEY: DEVELOPER.secretAccessKey,
    };

    const reissue = await cliWith(
      asDeveloper,
      'reissue',
      '--cluster',
      'cli',
      '--targets',
      'all',
      '--reason',
      'INC-9',
    );
    const unsigned = await fetch(world.manualOpsUrl.url, {
      method: 'POST',
      body: JSON.stringify({ action: 'reissue', cluster: 'cli', targets: 'all', reason: 'INC-9' }),
    });
    await world.settle();

    expect(reissue.code).toBe(1);
    expect(reissue.stderr).toMatch(/^403 Forbidden/);
    expect(unsigned.status).toBe(403);
    expect(await world.runtime.table.listNodes('cli')).toEqual(before);
    expect(await world.runtime.table.listAudit('cli', world.clock.now())).toEqual(auditBefore);
  });

  it('reports a refused request with the function error and a usage mistake with exit code 2', async () => {
    const refused = await cli('reissue', '--cluster', 'cli', '--targets', 'i-123', '--reason', 'INC-1');
    const usage = await cli('rotate', '--cluster', 'cli', '--targets', 'all');

    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/targets\.0: must be an EC2 instance id/);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/--reason is required/);
  });
});
