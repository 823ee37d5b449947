import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DescribeSecretCommand, GetSecretValueCommand } from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeSandbox } from '../../local/node/sandbox';
import { startWorld, type World } from '../../local/world';
import type { RolloutRecord } from '../../shared/rollout/model';
import { answerJson, callAgent } from '../helpers/agent-calls';
import { findSecrets } from '../helpers/secret-scan';

// A gossip key rotation end to end on the local world: three servers with real serf agents under
// Nomad's WAN timings, the key staged in Secrets Manager and read by each server with its instance
// role through the real gossip document, every stage judged on every server's report.

let world: World;

const KEYRING_FILE = 'opt/nomad/data/server/serf.keyring';
const ENCRYPT_CONFIG = 'opt/nomad/config/gossip-encrypt.hcl';
const servers = () => world.fleet.nodes().filter((node) => node.role === 'server');
const fingerprint = (key: string) =>
  createHash('sha256').update(Buffer.from(key, 'base64')).digest('hex').slice(0, 16);

async function keyringOf(node: NodeSandbox): Promise<string[]> {
  for (let tries = 0; ; tries += 1) {
    // serf rewrites the file in place: a read can race it and see it empty.
    const text = await readFile(join(node.root, KEYRING_FILE), 'utf8');
    if (text.trim() !== '' || tries > 20) return JSON.parse(text) as string[];
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const secretStages = async () =>
  (await world.clients.secretsManager.send(new DescribeSecretCommand({ SecretId: world.gossipSecretArn })))
    .VersionIdsToStages ?? {};

const currentKey = async () =>
  (await world.clients.secretsManager.send(new GetSecretValueCommand({ SecretId: world.gossipSecretArn })))
    .SecretString!;

/** Tick (and let time pass for backoffs) until the rollout ends; returns it as it ended. */
async function runToEnd(rolloutId: string): Promise<RolloutRecord> {
  for (let round = 0; round < 40; round += 1) {
    await world.settle();
    const rollout = await world.runtime.table.getRollout(world.cluster.name, rolloutId);
    if (rollout !== undefined && rollout.status !== 'running') return rollout;
    world.clock.advance(30_000);
    await world.tick();
  }
  throw new Error(`rollout ${rolloutId} did not end`);
}

async function aliveEverywhere(): Promise<void> {
  for (const server of servers()) {
    const health = await callAgent(server, 'GET', '/v1/agent/health?type=server');
    expect(health.status).toBe(200);
    const members = answerJson(await callAgent(server, 'GET', '/v1/agent/members')).Members as {
      Status: string;
    }[];
    expect(members.map((member) => member.Status)).toEqual(['alive', 'alive', 'alive']);
  }
}

beforeAll(async () => {
  world = await startWorld({ servers: 3, clients: 1, cluster: { name: 'gossip' } });
  // The servers' HTTPS API needs their certificates first: the first tick issues them.
  await world.tick();
  await world.settle();
}, 240_000);

afterAll(async () => {
  await world?.stop();
});

describe('gossip key rotation (real serf, three servers)', () => {
  it('ends with every server on the new key alone, persisted, the secret staged and no key anywhere else', async () => {
    // Arrange
    const initial = world.fleet.initialGossipKey;
    for (const server of servers()) expect(await keyringOf(server)).toEqual([initial]);

    // Act
    const started = (await world.invoke({
      action: 'rotate-gossip',
      cluster: world.cluster.name,
      reason: 'monthly gossip key rotation',
    })) as { rolloutId: string; servers: string[] };
    const ended = await runToEnd(started.rolloutId);

    // Assert
    expect(ended).toMatchObject({ status: 'completed', plan: 'gossip' });
    const next = await currentKey();
    expect(next).not.toBe(initial);
    for (const server of servers()) {
      expect(await keyringOf(server)).toEqual([next]);
      const config = join(server.root, ENCRYPT_CONFIG);
      expect((await stat(config)).mode & 0o777).toBe(0o600);
      expect(await readFile(config, 'utf8')).toContain(`encrypt = "${next}"`);
    }
    await aliveEverywhere();
    const trail = (await world.runtime.table.listAudit(world.cluster.name, world.clock.now())).filter(
      (entry) => entry.rolloutId === started.rolloutId,
    );
    const dispatched = trail
      .filter((entry) => entry.action.endsWith('-dispatched'))
      .map((entry) => entry.action);
    expect(dispatched).toEqual(
      ['inspect', 'install', 'use', 'remove', 'persist'].flatMap((step) =>
        Array(3).fill(`${step}-dispatched`),
      ),
    );
    const stages = Object.values(await secretStages());
    expect(stages.filter((labels) => labels.includes('AWSCURRENT'))).toHaveLength(1);
    expect(stages.filter((labels) => labels.includes('AWSPREVIOUS'))).toHaveLength(1);
    const rotated = world.events
      .events()
      .filter((event) => event['detail-type'] === 'GossipKeyRotated')
      .map((event) => event.detail);
    expect(rotated).toEqual([
      expect.objectContaining({ rolloutId: started.rolloutId, fingerprint: fingerprint(next) }),
    ]);
    const produced = {
      ssmParameters: world.ssm.history(),
      events: world.events.events(),
      logs: world.logger.lines,
      rollouts: await world.runtime.table.listRollouts(world.cluster.name),
      attempts: await world.runtime.table.listAttempts(world.cluster.name, started.rolloutId),
      audit: await world.runtime.table.listAudit(world.cluster.name, world.clock.now()),
    };
    expect(findSecrets(produced, [initial, next])).toEqual([]);
  }, 600_000);
});
