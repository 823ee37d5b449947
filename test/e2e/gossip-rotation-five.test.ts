import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GetSecretValueCommand } from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type World } from '../../local/world';
import { issueFleet } from '../helpers/gossip-world';
import { findSecrets } from '../helpers/secret-scan';

// Five servers with real serf agents, and everything a rotation leaves on the machine scanned for
// the keys: every process's command line while it runs (the sandboxes' processes are this machine's),
// the scripts the SSM agent wrote, the nodes' logs, every command's output, events, logs and items.
// The servers run ACLs, so the agent:write token the servers read is scanned for too.

let world: World;

const KEYRING_FILE = 'opt/nomad/data/server/serf.keyring';
const servers = () => world.fleet.nodes().filter((node) => node.role === 'server');

/** Every distinct command line of every process, sampled until stopped. */
function sampleCommandLines(): { stop: () => Promise<Set<string>> } {
  const seen = new Set<string>();
  let running = true;
  const loop = (async () => {
    while (running) {
      for (const pid of await readdir('/proc').catch(() => [])) {
        if (!/^\d+$/.test(pid)) continue;
        const line = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
        if (line !== '') seen.add(line.replaceAll('\0', ' '));
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return seen;
    },
  };
}

/** Every file under `dir` whose name matches, as text. */
async function filesUnder(dir: string, name: RegExp): Promise<Record<string, string>> {
  const found: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => [])) {
    if (!entry.isFile() || !name.test(entry.name)) continue;
    const path = join(entry.parentPath, entry.name);
    found[path] = await readFile(path, 'utf8').catch(() => '');
  }
  return found;
}

beforeAll(async () => {
  // With Nomad ACLs: every keyring call carries the agent:write token the servers read themselves.
  world = await startWorld({ servers: 5, clients: 1, cluster: { name: 'five' }, nomadAcls: true });
  await issueFleet(world);
}, 300_000);

afterAll(async () => {
  await world?.stop();
});

describe('gossip key rotation on five servers', () => {
  it('ends with all five on the new key alone under ACLs, and no key or token on any command line, script, log or output', async () => {
    // Arrange
    const initial = world.fleet.initialGossipKey!;
    const commandLines = sampleCommandLines();

    // Act
    const { rolloutId } = (await world.invoke({
      action: 'rotate-gossip',
      cluster: 'five',
      reason: 'five-server rotation',
    })) as { rolloutId: string };
    let rollout = await world.runtime.table.getRollout('five', rolloutId);
    for (let round = 0; round < 20 && rollout?.status === 'running'; round += 1) {
      await world.settle();
      rollout = await world.runtime.table.getRollout('five', rolloutId);
      if (rollout?.status !== 'running') break;
      world.clock.advance(30_000);
      await world.tick();
    }
    const seen = await commandLines.stop();

    // Assert
    expect(rollout).toMatchObject({ status: 'completed' });
    const next = (
      await world.clients.secretsManager.send(new GetSecretValueCommand({ SecretId: world.gossipSecretArn }))
    ).SecretString!;
    for (const server of servers()) {
      const keyring = JSON.parse(await readFile(join(server.root, KEYRING_FILE), 'utf8')) as string[];
      expect(keyring).toEqual([next]);
    }
    const produced = {
      commandLines: [...seen],
      ssmScripts: await filesUnder(join(world.baseDir), /^_script\.sh$/),
      nodeLogs: await filesUnder(join(world.baseDir), /\.log$/),
      ssmOutputs: world.ssm.outputs(),
      ssmParameters: world.ssm.history(),
      events: world.events.events(),
      logs: world.logger.lines,
      attempts: await world.runtime.table.listAttempts('five', rolloutId),
      audit: await world.runtime.table.listAudit('five', world.clock.now()),
    };
    expect(seen.size).toBeGreaterThan(100);
    expect(Object.keys(produced.ssmScripts).length).toBeGreaterThan(0);
    expect(findSecrets(produced, [initial, next, world.nomadToken!])).toEqual([]);
  }, 600_000);
});
