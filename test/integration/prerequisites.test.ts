import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const TSX = new URL('../../node_modules/tsx/dist/cli.mjs', import.meta.url).pathname;
let binWithoutSerf: string;

beforeAll(async () => {
  // A PATH with every tool the world uses except serf, as on a new machine that lacks the package.
  binWithoutSerf = await mkdtemp(join(tmpdir(), 'no-serf-'));
  for (const tool of ['bash', 'openssl', 'curl', 'jq', 'unshare', 'ip', 'sh', 'env']) {
    const found = spawnSync('bash', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
    await symlink(found, join(binWithoutSerf, tool));
  }
});

afterAll(async () => {
  await rm(binWithoutSerf, { recursive: true, force: true });
});

describe.each(['local/demo.ts', 'local/serve.ts'])('%s on a machine without serf', (entry) => {
  it('exits 2 with one line naming what to install, before starting anything', () => {
    const result = spawnSync(process.execPath, [TSX, entry], {
      cwd: new URL('../..', import.meta.url).pathname,
      env: { PATH: binWithoutSerf },
      encoding: 'utf8',
      timeout: 60_000,
    });

    expect(result.status).toBe(2);
    expect(result.stderr.trim()).toBe('the local world needs serf: apt-get install serf');
    expect(result.stdout).toBe('');
  });
});
