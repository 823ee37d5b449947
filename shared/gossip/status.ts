import { randomBytes } from 'node:crypto';
import type { CommandGateway } from '../aws/ports';
import type { Clock } from '../clock';
import { ConflictError } from '../errors';
import { resultReader } from '../rollout/plan';
import { formatRoutingKey, newToken } from '../rollout/routing';
import type { GossipKeyCustody } from './custody';
import { type GossipReport, readGossipReport, serverView } from './outputs';
import { GOSSIP_PLAN, type GossipCommands } from './plan';
import { removeVerified } from './verdicts';

/** One server's keyring as it answered the status inspect, by fingerprint; or why it did not. */
export type ServerGossipStatus =
  | ({ instanceId: string; answered: true } & Omit<
      GossipReport,
      'ok' | 'stage' | 'operation' | 'attemptId' | 'mutation'
    >)
  | { instanceId: string; answered: false; reason: string };

export interface GossipStatusReport {
  cluster: string;
  /** The secret's stages by fingerprint (a version the rotator did not write has none). */
  secret: { current?: string; pending?: string; previous?: string };
  servers: ServerGossipStatus[];
}

export interface GossipStatusDependencies {
  custody: GossipKeyCustody;
  commands: GossipCommands;
  results: Pick<CommandGateway, 'invocation' | 'invocations'>;
  clock: Clock;
  sleep: (ms: number) => Promise<void>;
}

const POLL_INTERVAL_MS = 1_000;

/**
 * What every server holds now: an inspect sent to all of them (it changes nothing), its answers
 * read until `deadline`, and the secret's stages. The command's routing key belongs to no rollout,
 * so its events move nothing. A server that has not answered by then is reported as such.
 */
export async function gossipStatus(
  deps: GossipStatusDependencies,
  request: { cluster: string; secretId: string; servers: readonly string[] },
  deadline: number,
): Promise<GossipStatusReport> {
  const stages = await deps.custody.stages(request.secretId, '');
  const token = newToken(randomBytes(3).toString('hex'));
  const commandId = await deps.commands.send(
    'inspect',
    request.servers,
    { attemptId: token },
    formatRoutingKey({ cluster: request.cluster, plan: GOSSIP_PLAN, step: 'status', token }),
  );
  const answers = new Map<string, ServerGossipStatus>();
  while (answers.size < request.servers.length && deps.clock.now() < deadline) {
    const resultOf = resultReader(deps.results);
    for (const instanceId of request.servers.filter((id) => !answers.has(id))) {
      const result = await resultOf(commandId, instanceId);
      if (result.state === 'running' || result.state === 'missing') continue;
      const report = result.state === 'succeeded' ? readGossipReport(result.stdout) : undefined;
      answers.set(
        instanceId,
        report === undefined || report.attemptId !== token
          ? {
              instanceId,
              answered: false,
              reason: result.state === 'failed' ? 'inspect-failed' : 'output-unreadable',
            }
          : {
              instanceId,
              answered: true,
              list: report.list,
              keyringFile: report.keyringFile,
              healthy: report.healthy,
              members: report.members,
              leader: report.leader,
              autopilot: report.autopilot,
              leaderHere: report.leaderHere,
            },
      );
    }
    if (answers.size < request.servers.length) await deps.sleep(POLL_INTERVAL_MS);
  }
  return {
    cluster: request.cluster,
    secret: {
      ...(stages.current?.fingerprint ? { current: stages.current.fingerprint } : {}),
      ...(stages.pending?.fingerprint ? { pending: stages.pending.fingerprint } : {}),
      ...(stages.previous?.fingerprint ? { previous: stages.previous.fingerprint } : {}),
    },
    servers: request.servers.map(
      (instanceId) => answers.get(instanceId) ?? { instanceId, answered: false, reason: 'no-answer-in-time' },
    ),
  };
}

/**
 * The servers that answered but cannot reach the others on `current`: unhealthy, a failed keyring
 * list, a smaller view than the widest, or another primary. A server that did not answer is not
 * one: nothing can be known of it.
 */
export function stragglersIn(status: GossipStatusReport, current: string): string[] {
  const expected = status.servers.map((server) => server.instanceId);
  const reports = status.servers.flatMap((server) =>
    server.answered ? [serverView(server.instanceId, server)] : [],
  );
  return removeVerified(expected, reports, current).stragglers;
}

/**
 * Every server as a staged restart needs them before it starts: answered, healthy, all servers
 * alive in its view, autopilot able to lose one; with whether each leads. ConflictError naming
 * what does not hold otherwise (the gate on each server checks again before its restart).
 */
export function settledServers(status: GossipStatusReport): { instanceId: string; leaderHere: boolean }[] {
  const expected = status.servers.length;
  const problems = status.servers.flatMap((server) => {
    if (!server.answered) return [`${server.instanceId}: ${server.reason}`];
    if (!server.healthy) return [`${server.instanceId}: no leader`];
    if (server.members.alive !== expected)
      return [`${server.instanceId}: ${server.members.alive} of ${expected} servers alive`];
    if (server.autopilot === null)
      return [`${server.instanceId}: autopilot health unreadable (the ACL token needs operator:read)`];
    if (server.autopilot.failureTolerance < 1)
      return [`${server.instanceId}: autopilot failure tolerance ${server.autopilot.failureTolerance}`];
    return [];
  });
  if (problems.length > 0)
    throw new ConflictError(`the cluster is not settled for a staged restart: ${problems.join('; ')}`, {
      context: { cluster: status.cluster },
    });
  return status.servers.map((server) => ({
    instanceId: server.instanceId,
    leaderHere: server.answered && server.leaderHere === true,
  }));
}
