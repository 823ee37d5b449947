import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DescribeSecretCommand, GetSecretValueCommand } from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeSandbox } from '../../local/node/sandbox';
import type { World } from '../../local/world';
import { answerJson, callAgent } from '../helpers/agent-calls';
import { runToEnd as runWorldToEnd, startGossipWorld } from '../helpers/gossip-world';
import { findSecrets } from '../helpers/secret-scan';

// Enabling gossip encryption end to end: three servers whose real serf agents gossip in clear, each
// brought up encrypted in turn by the gossip document (cleanup off, `encrypt` written, restart,
// Raft's word it is back), the leader last; the cluster ends encrypted with every member alive.

let world: World;

const KEYRING_FILE = 'opt/nomad/data/server/serf.keyring';
const ENCRYPT_CONFIG = 'opt/nomad/config/gossip-encrypt.hcl';
const servers = () => world.fleet.nodes().filter((node) => node.role === 'server');

const runToEnd = (rolloutId: string) => runWorldToEnd(world, rolloutId);

const autopilotCleanup = async (server: NodeSandbox) => {
  const answer = await callAgent(server, 'GET', '/v1/operator/autopilot/configuration?stale=true');
  if (answer.status !== 200) throw new Error(`autopilot configuration: ${answer.status}`);
  return (answerJson(answer) as { CleanupDeadServers: boolean }).CleanupDeadServers;
};

beforeAll(async () => {
  world = await startGossipWorld('clear', { gossipEncryption: false });
}, 240_000);

afterAll(async () => {
  await world?.stop();
});

describe('enabling gossip encryption (real serf, three servers in clear)', () => {
  it('refuses a rotation of a cluster in clear and names the order on a dry run, changing nothing', async () => {
    // Arrange
    const rotation = (await world.invoke({
      action: 'rotate-gossip',
      cluster: world.cluster.name,
      reason: 'rotate a cluster in clear',
    })) as { rolloutId: string };

    // Act
    const halted = await runToEnd(rotation.rolloutId);
    const dryRun = (await world.invoke({
      action: 'enable-gossip',
      cluster: world.cluster.name,
      reason: 'look first',
      dryRun: true,
    })) as { rolloutId: string | null; servers: string[]; softPartition: string };

    // Assert
    expect(halted).toMatchObject({ status: 'halted' });
    const attempts = await world.runtime.table.listAttempts(world.cluster.name, rotation.rolloutId);
    expect(attempts.map((attempt) => attempt.lastError)).toEqual(
      Array(3).fill(expect.stringMatching(/every server gossips in clear: enable encryption first/)),
    );
    expect(dryRun.rolloutId).toBeNull();
    expect([...dryRun.servers].sort()).toEqual(
      servers()
        .map((server) => server.instanceId)
        .sort(),
    );
    expect(dryRun.softPartition).toMatch(/cannot gossip/);
    for (const server of servers()) {
      await expect(stat(join(server.root, KEYRING_FILE))).rejects.toThrow();
      await expect(stat(join(server.root, ENCRYPT_CONFIG))).rejects.toThrow();
    }
  }, 600_000);

  it('ends encrypted on one key with every member alive, the leader last and autopilot as it was', async () => {
    // Arrange: autopilot's cleanup sampled throughout, from whichever server answers
    const cleanupBefore = await autopilotCleanup(servers()[0]!);
    const cleanupSeen = new Set<boolean>();
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        for (const server of servers()) {
          const seen = await autopilotCleanup(server).catch(() => undefined);
          if (seen !== undefined) cleanupSeen.add(seen);
        }
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
    })();

    // Act
    const enable = (await world.invoke({
      action: 'enable-gossip',
      cluster: world.cluster.name,
      reason: 'turn gossip encryption on',
    })) as { rolloutId: string; servers: string[] };
    const ended = await runToEnd(enable.rolloutId);
    sampling = false;
    await sampler;
    const attempts = await world.runtime.table.listAttempts(world.cluster.name, enable.rolloutId);

    // Assert: the key current, on every server alone, written for fresh data dirs, all alive
    expect({ status: ended.status, errors: attempts.map((attempt) => attempt.lastError ?? 'none') }).toEqual({
      status: 'completed',
      errors: ['none', 'none', 'none'],
    });
    expect(ended.plan).toBe('gossipenable');
    const key = (
      await world.clients.secretsManager.send(new GetSecretValueCommand({ SecretId: world.gossipSecretArn }))
    ).SecretString!;
    for (const server of servers()) {
      expect(JSON.parse(await readFile(join(server.root, KEYRING_FILE), 'utf8'))).toEqual([key]);
      expect((await stat(join(server.root, ENCRYPT_CONFIG))).mode & 0o777).toBe(0o600);
      const members = answerJson(await callAgent(server, 'GET', '/v1/agent/members')) as {
        Members: { Status: string }[];
      };
      expect(members.Members.map((member) => member.Status)).toEqual(['alive', 'alive', 'alive']);
      expect((await callAgent(server, 'GET', '/v1/agent/health?type=server')).status).toBe(200);
    }
    const list = answerJson(await callAgent(servers()[0]!, 'GET', '/v1/agent/keyring/list')) as {
      Keys: Record<string, number>;
    };
    expect(list.Keys).toEqual({ [key]: 3 });
    // Off while the servers were split, back as it was at the end.
    expect(cleanupBefore).toBe(true);
    expect([...cleanupSeen].sort()).toEqual([false, true]);
    expect(await autopilotCleanup(servers()[0]!)).toBe(true);
    const encrypted = world.events
      .events()
      .filter((event) => event['detail-type'] === 'GossipServerEncrypted')
      .map((event) => (event.detail as { instanceId: string }).instanceId);
    expect(encrypted).toEqual(enable.servers);
    const stages = (
      await world.clients.secretsManager.send(new DescribeSecretCommand({ SecretId: world.gossipSecretArn }))
    ).VersionIdsToStages!;
    expect(Object.values(stages).flat()).toContain('AWSCURRENT');
    expect(Object.values(stages).flat()).not.toContain('AWSPENDING');
    const produced = {
      ssmParameters: world.ssm.history(),
      outputs: world.ssm.outputs(),
      events: world.events.events(),
      logs: world.logger.lines,
      rollouts: await world.runtime.table.listRollouts(world.cluster.name),
      attempts: await world.runtime.table.listAttempts(world.cluster.name, enable.rolloutId),
      audit: await world.runtime.table.listAudit(world.cluster.name, world.clock.now()),
    };
    expect(findSecrets(produced, [key])).toEqual([]);
  }, 900_000);
});
