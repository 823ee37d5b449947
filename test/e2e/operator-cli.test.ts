import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEVELOPER, OPERATOR, startWorld, type World } from '../../local/world';

const execute = promisify(execFile);
let world: World;

// biome-ignore lint/suspicious/noControlCharactersInRegex: colour escapes are what is looked for
const COLOUR = /\u001b\[\d+m/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: any escape at all
const ESCAPE = /\u001b/;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function environmentWith(environment: Record<string, string>): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    USER: 'operator',
    ...world.cliEnvironment(),
    ...environment,
  };
}

async function settled(run: Promise<{ stdout: string; stderr: string }>): Promise<Run> {
  try {
    const { stdout, stderr } = await run;
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

/** The real `npx nomad-rotator` entry point, with the environment an operator would export. */
function cli(...args: string[]): Promise<Run> {
  return cliWith({}, ...args);
}

/** The CLI with some of the environment replaced, e.g. another role's credentials. */
function cliWith(environment: Record<string, string>, ...args: string[]): Promise<Run> {
  return settled(
    execute(process.execPath, ['bin/nomad-rotator.mjs', ...args], { env: environmentWith(environment) }),
  );
}

/**
 * The CLI on a pseudo-terminal, as an operator's shell runs it: util-linux `script` gives it a tty
 * and (-e) exits with its exit code. Its stdout is the terminal's, carriage returns included.
 */
function inTerminal(environment: Record<string, string>, ...args: string[]): Promise<Run> {
  const command = [process.execPath, 'bin/nomad-rotator.mjs', ...args].join(' ');
  return settled(execute('script', ['-qfec', command, '/dev/null'], { env: environmentWith(environment) }));
}

const json = <T>(run: Run): T => JSON.parse(run.stdout) as T;
const clients = () => world.fleet.nodes().filter((node) => node.role === 'client');

interface AuditJson {
  at: string;
  action: string;
  actor: string;
  outcome: string;
  instanceId: string | null;
  rolloutId: string | null;
  details: Record<string, string | number | boolean>;
}

beforeAll(async () => {
  world = await startWorld({
    servers: 1,
    clients: 2,
    // One try a node: a failed install exhausts its attempt and halts the rollout, for watch to report.
    cluster: { name: 'cli', rollout: { maxAttempts: 1 } },
  });
  await world.tick();
  await world.settle();
}, 120_000);

afterAll(async () => {
  await world?.stop();
});

describe('operator CLI against the local world (state table + the manual-ops function URL)', () => {
  it('shows every node with its serial in the fleet table, and the same facts with --json', async () => {
    const records = await world.runtime.table.listNodes('cli');

    const table = await cli('status', '--cluster', 'cli');
    const document = await cli('status', '--cluster', 'cli', '--json');

    expect(table.code).toBe(0);
    expect(table.stderr).toBe('');
    // Not a terminal: no colour, no escape of any kind.
    expect(table.stdout).not.toMatch(ESCAPE);
    expect(table.stdout).toMatch(/^instance +role +serial +expires +status +last action$/m);
    expect(table.stdout).toContain('no rollout running');
    expect(table.stdout).toContain('gossip key: generation 0');
    for (const record of records) {
      expect(table.stdout).toContain(record.instanceId);
      expect(table.stdout).toContain(record.agent!.serial.replaceAll(':', '').slice(-6));
    }
    expect(document.code).toBe(0);
    expect(document.stderr).toBe('');
    const status = json<{
      cluster: string;
      nodes: { instanceId: string; serial: string; notAfter: string; status: string }[];
      rollouts: unknown[];
      gossip: { generation: number; lastRotatedAt: string | null };
    }>(document);
    expect(status.cluster).toBe('cli');
    expect(status.rollouts).toEqual([]);
    expect(status.gossip).toEqual({ generation: 0, lastRotatedAt: null, lastRolloutId: null });
    expect(status.nodes).toHaveLength(records.length);
    for (const record of records) {
      expect(status.nodes).toContainEqual(
        expect.objectContaining({
          instanceId: record.instanceId,
          serial: record.agent!.serial,
          notAfter: new Date(record.agent!.notAfter).toISOString(),
          status: 'idle',
        }),
      );
    }
  });

  it('plans as a table with a summary line, and as the plan document with --json, changing nothing', async () => {
    const before = await world.runtime.table.listNodes('cli');

    const table = await cli('plan', '--cluster', 'cli', '--targets', 'clients');
    const document = await cli('plan', '--cluster', 'cli', '--json');

    expect(table.code).toBe(0);
    expect(table.stderr).toBe('');
    expect(table.stdout).toMatch(/^instance +role +decision +reason +when$/m);
    for (const client of clients())
      expect(table.stdout).toMatch(new RegExp(`^${client.instanceId} +client +wait +not due until`, 'm'));
    expect(table.stdout).toMatch(
      /^0 to rotate in 0 waves \(rotate, reload, replaced serials kept\), 2 waiting, 0 skipped$/m,
    );
    expect(document.code).toBe(0);
    const plan = json<{ action: string; plan: { entries: { instanceId: string; decision: string }[] } }>(
      document,
    );
    expect(plan.action).toBe('plan');
    expect(plan.plan.entries.map((entry) => entry.decision)).toEqual(['wait', 'wait', 'wait']);
    expect(await world.runtime.table.listNodes('cli')).toEqual(before);
  });

  it('rotate --wait on a terminal draws the progress and exits 0 once the rollout completed', async () => {
    const client = clients()[0]!;
    const before = await world.runtime.table.getNode('cli', client.instanceId);

    const rotate = await inTerminal(
      {},
      'rotate',
      '--cluster',
      'cli',
      '--targets',
      client.instanceId,
      '--reason',
      'OPS-1',
      '--wait',
      '--interval',
      '1s',
    );

    expect(rotate.code).toBe(0);
    expect(rotate.stdout).toMatch(/rollout \S+: rollout started/);
    expect(rotate.stdout).toMatch(/\[[= >]{30}\]/);
    expect(rotate.stdout).toMatch(/in flight: /);
    expect(rotate.stdout).toMatch(/rollout \S+ .*completed.*: 1\/1 done in /);
    // A terminal: colour, and the frame drawn again in place.
    expect(rotate.stdout).toMatch(COLOUR);
    const after = await world.runtime.table.getNode('cli', client.instanceId);
    expect(after?.agent?.serial).not.toBe(before?.agent?.serial);
    // Who asked is the role session the function URL verified; $USER rides along only as a claim.
    const audit = await world.runtime.table.listAudit('cli', world.clock.now());
    const request = audit.find((entry) => entry.action === 'manual-rotate' && entry.reason === 'OPS-1');
    expect(request?.actor).toBe(OPERATOR.arn);
    expect(request?.details?.claimedRequestedBy).toBe('cli:operator');
  });

  it('watch follows a batched rollout a line per change off a terminal, and NO_COLOR keeps a terminal plain', async () => {
    const started = await cli(
      'rotate',
      '--cluster',
      'cli',
      '--targets',
      'clients',
      '--reason',
      'OPS-2',
      '--json',
    );
    expect(started.code).toBe(0);
    const { rolloutId } = json<{ rolloutId: string }>(started);

    const watch = await cli('watch', '--cluster', 'cli', '--rollout', rolloutId, '--interval', '1s');
    const plain = await inTerminal({ NO_COLOR: '1' }, 'watch', '--cluster', 'cli', '--rollout', rolloutId);
    const document = await cli('watch', '--cluster', 'cli', '--rollout', rolloutId, '--json');

    expect(watch.code).toBe(0);
    expect(watch.stderr).toBe('');
    expect(watch.stdout).not.toMatch(ESCAPE);
    const lines = watch.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe(`rollout ${rolloutId} (certs rotate): OPS-2`);
    expect(
      lines
        .slice(1, -1)
        .every((line) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d {2}\d\/2 done/.test(line)),
    ).toBe(true);
    expect(lines.at(-1)).toMatch(new RegExp(`^rollout ${rolloutId} completed: 2/2 done in `));
    expect(plain.code).toBe(0);
    expect(plain.stdout).toContain('completed');
    expect(plain.stdout).not.toMatch(COLOUR);
    expect(document.code).toBe(0);
    expect(json(document)).toMatchObject({
      rolloutId,
      status: 'completed',
      done: 2,
      targets: 2,
      failed: 0,
      haltReason: null,
    });
  });

  it('watch exits 1 and says why when the rollout halts', async () => {
    const client = clients()[1]!;
    const node = world.fleet.node(client.instanceId)!;
    // The fault must be on the node before the install runs, or the reload works.
    await node.injectFault('ignore-sighup');
    try {
      const rotate = await inTerminal(
        {},
        'rotate',
        '--cluster',
        'cli',
        '--targets',
        client.instanceId,
        '--reason',
        'OPS-3',
        '--wait',
        '--interval',
        '1s',
      );
      const rolloutId = /rollout (\S+): rollout started/.exec(rotate.stdout)?.[1];
      const watch = await cli('watch', '--cluster', 'cli', '--rollout', rolloutId ?? 'missing');

      expect(rotate.code).toBe(1);
      expect(rotate.stdout).toMatch(/halted.* after \S+: /);
      expect(watch.code).toBe(1);
      expect(watch.stderr).toBe('');
      // The halt reason, then each failed node with its step and what its try reported.
      expect(watch.stdout.trimEnd().split('\n').slice(-2)).toEqual([
        expect.stringMatching(new RegExp(`^rollout ${rolloutId} halted after \\S+: .*${client.instanceId}`)),
        `  ${client.instanceId} install: new-certificate-not-served`,
      ]);
    } finally {
      await node.clearFault('ignore-sighup');
    }
  });

  it('history reads the audit trail, filtered by node, rollout, action and time', async () => {
    const [first, second] = clients();
    const all = json<{ entries: AuditJson[] }>(await cli('history', '--cluster', 'cli', '--json')).entries;
    const batched = all.find(
      (entry) => entry.action === 'prepare-dispatched' && String(entry.details.instances ?? '').includes(','),
    );
    expect(batched?.instanceId).toBeNull();

    const table = await cli('history', '--cluster', 'cli', '--since', '1h');
    const byNode = json<{ entries: AuditJson[] }>(
      await cli('history', '--cluster', 'cli', '--node', second!.instanceId, '--json'),
    ).entries;
    const byRollout = json<{ entries: AuditJson[] }>(
      await cli('history', '--cluster', 'cli', '--rollout', batched!.rolloutId!, '--json'),
    ).entries;
    const requests = json<{ entries: AuditJson[] }>(
      await cli('history', '--cluster', 'cli', '--action', 'manual-rotate', '--json'),
    ).entries;
    const before = json<{ entries: AuditJson[] }>(
      await cli('history', '--cluster', 'cli', '--until', '2020-01-01T00:00:00Z', '--json'),
    ).entries;
    const recent = json<{ entries: AuditJson[] }>(
      await cli('history', '--cluster', 'cli', '--since', all.at(-1)!.at, '--json'),
    ).entries;

    expect(table.code).toBe(0);
    expect(table.stderr).toBe('');
    expect(table.stdout).toMatch(/^when +who +action +target +rollout +reason +outcome$/m);
    expect(table.stdout).toMatch(/assumed-role\/nomad-operator\/operator +manual-rotate +.*OPS-1 +requested/);
    expect(table.stdout).toMatch(/rotator +rollout-halted .* halted$/m);
    expect(table.stdout).toMatch(/^\d+ entries$/m);
    // A node's entries are its own and the batched commands that listed it, never another node's.
    expect(byNode).toContainEqual(
      expect.objectContaining({ action: 'prepare-dispatched', instanceId: null }),
    );
    for (const entry of byNode)
      expect([
        entry.instanceId,
        ...String(entry.details.instances ?? entry.details.targets ?? '').split(','),
      ]).toContain(second!.instanceId);
    expect(byNode.some((entry) => entry.instanceId === first!.instanceId)).toBe(false);
    expect(byRollout.length).toBeGreaterThan(3);
    expect(byRollout.every((entry) => entry.rolloutId === batched!.rolloutId)).toBe(true);
    expect(byRollout.map((entry) => entry.outcome)).toContain('completed');
    expect(requests.map((entry) => entry.details.targets)).toEqual(
      expect.arrayContaining([first!.instanceId, 'clients', second!.instanceId]),
    );
    expect(requests.every((entry) => entry.action === 'manual-rotate' && entry.outcome === 'requested')).toBe(
      true,
    );
    expect(before).toEqual([]);
    expect(recent.length).toBeGreaterThan(0);
    expect(recent.every((entry) => entry.at >= all.at(-1)!.at)).toBe(true);
  });

  it('rotates the gossip key with --wait; status then counts the new generation', async () => {
    const [server] = world.fleet.nodes().filter((node) => node.role === 'server');
    const rollouts = async () => (await world.runtime.table.listRollouts('cli')).length;
    const before = await rollouts();

    const dryRun = await cli('rotate-gossip', '--cluster', 'cli', '--reason', 'OPS-4', '--dry-run', '--json');
    expect(dryRun.code).toBe(0);
    expect(json(dryRun)).toMatchObject({ dryRun: true, servers: [server!.instanceId] });
    expect(await rollouts()).toBe(before);

    const rotate = await cli(
      'rotate-gossip',
      '--cluster',
      'cli',
      '--reason',
      'OPS-4',
      '--wait',
      '--interval',
      '1s',
    );
    const status = await cli('gossip-status', '--cluster', 'cli', '--json');
    const table = await cli('gossip-status', '--cluster', 'cli');
    const fleet = await cli('status', '--cluster', 'cli', '--json');

    expect(rotate.code).toBe(0);
    expect(rotate.stderr).toBe('');
    expect(rotate.stdout).toMatch(/servers: i-[0-9a-f]+; restart none/);
    expect(rotate.stdout).toMatch(/completed: 1\/1 done in /);
    const rolloutId = /^rollout (\S+): /.exec(rotate.stdout)?.[1];
    expect(await world.runtime.table.getRollout('cli', rolloutId!)).toMatchObject({ status: 'completed' });
    expect(status.code).toBe(0);
    expect(status.stderr).toBe('');
    const report = json<{
      secret: { current: string };
      servers: { instanceId: string; answered: boolean; keyringFile: string[]; healthy: boolean }[];
    }>(status);
    expect(report.servers).toEqual([
      expect.objectContaining({
        instanceId: server!.instanceId,
        answered: true,
        keyringFile: [report.secret.current],
        healthy: true,
      }),
    ]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(
      new RegExp(
        `^${server!.instanceId} +${report.secret.current} +${report.secret.current}×1 +1/1 alive +healthy +leader$`,
        'm',
      ),
    );
    expect(json<{ gossip: unknown }>(fleet).gossip).toEqual({
      generation: 1,
      lastRotatedAt: expect.stringMatching(/Z$/),
      lastRolloutId: rolloutId,
    });
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
    expect(reissue.stderr).toMatch(/^nomad-rotator: 403 Forbidden.*\n$/);
    expect(unsigned.status).toBe(403);
    expect(await world.runtime.table.listNodes('cli')).toEqual(before);
    expect(await world.runtime.table.listAudit('cli', world.clock.now())).toEqual(auditBefore);
  });

  it('reports a refused request with the function error and a usage mistake with one line and exit code 2', async () => {
    const refused = await cli('reissue', '--cluster', 'cli', '--targets', 'i-123', '--reason', 'INC-1');
    const usage = await Promise.all([
      cli('rotate', '--cluster', 'cli', '--targets', 'all'),
      cli('status', '--cluster', 'cli', '--colour'),
      cli('history', '--cluster', 'cli', '--since', 'yesterday'),
      cli('watch', '--cluster', 'cli', '--interval', 'fast'),
      cli('rotate-gossip', '--cluster', 'cli', '--reason', 'OPS-5', '--restart', 'always'),
      cli('frobnicate', '--cluster', 'cli'),
    ]);

    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/targets\.0: must be an EC2 instance id/);
    expect(usage.map((run) => run.code)).toEqual([2, 2, 2, 2, 2, 2]);
    expect(usage.map((run) => run.stdout)).toEqual(['', '', '', '', '', '']);
    for (const run of usage) expect(run.stderr).toMatch(/^nomad-rotator: [^\n]+\n$/);
    expect(usage.map((run) => run.stderr)).toEqual([
      expect.stringContaining('--reason is required'),
      expect.stringContaining(
        '--colour: not an option of status (allowed: --cluster, --table, --json, --help)',
      ),
      expect.stringContaining('--since yesterday: must be a duration back from now'),
      expect.stringContaining('--interval fast: must be a duration'),
      expect.stringContaining('--restart always: must be one of none, staged'),
      expect.stringContaining('frobnicate: not a command (commands: status, plan, watch, history'),
    ]);
  });

  it('gives every command its own --help with examples', async () => {
    const names = [
      'status',
      'plan',
      'watch',
      'history',
      'rotate',
      'reissue',
      'rotate-gossip',
      'enable-gossip',
      'repair-gossip',
      'gossip-status',
      'doctor',
      'vault-bootstrap',
    ];
    const helps = await Promise.all(names.map((name) => cli(name, '--help')));

    for (const [index, help] of helps.entries()) {
      expect(help.code).toBe(0);
      expect(help.stderr).toBe('');
      expect(help.stdout).toContain(`Usage: nomad-rotator ${names[index]} [options]`);
      expect(help.stdout).toMatch(new RegExp(`Examples\\n {2}.*nomad-rotator ${names[index]} `));
      expect(help.stdout).toContain('Exit codes: 0 done, 1 failed or halted, 2 usage error.');
    }
  });
});
