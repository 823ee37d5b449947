import { GOSSIP_ENABLE_PLAN } from '../../shared/gossip/enable';
import { GOSSIP_PLAN } from '../../shared/gossip/plan';
import { type AttemptRecord, isFinished, type RolloutRecord } from '../../shared/rollout/model';
import type { NodeRecord } from '../../shared/state/records';
import { clusterOf, type Values } from '../args';
import { CLUSTER_OPTION, type Command, type CommandContext, TABLE_OPTION } from '../context';
import { renderFleetTable } from '../fleet-table';
import { isoOrNull, relativeTime, renderTable, when } from '../format';
import { progressJson, type RolloutProgress, rolloutProgress } from '../rollout-progress';

/** The plans whose completion puts a new gossip key in use (a repair or a restart keeps the key). */
const KEY_CHANGING_PLANS: readonly string[] = [GOSSIP_PLAN, GOSSIP_ENABLE_PLAN];

interface GossipGeneration {
  /** Completed rotations and enables on record: each one put a new key in use. */
  generation: number;
  lastRotatedAt?: number;
  lastRolloutId?: string;
}

function gossipGeneration(rollouts: readonly RolloutRecord[]): GossipGeneration {
  const rotations = rollouts
    .filter((rollout) => KEY_CHANGING_PLANS.includes(rollout.plan) && rollout.status === 'completed')
    .sort((a, b) => a.updatedAt - b.updatedAt);
  const last = rotations.at(-1);
  return {
    generation: rotations.length,
    ...(last === undefined ? {} : { lastRotatedAt: last.updatedAt, lastRolloutId: last.rolloutId }),
  };
}

export const statusCommand: Command = {
  name: 'status',
  summary: 'the fleet, the running rollouts and the gossip key generation',
  description:
    'Reads the state table: every node with its serial and expiry (soonest first), each running\n' +
    'rollout with its progress and ETA, and how many gossip keys the rotator has put in use.',
  options: { ...CLUSTER_OPTION, ...TABLE_OPTION },
  examples: [
    'nomad-rotator status --cluster prod',
    "nomad-rotator status --cluster prod --json | jq '.rollouts[] | {rolloutId, done, targets}'",
  ],
  async run(values: Values, context: CommandContext): Promise<number> {
    const cluster = clusterOf(values);
    const table = context.stateTable(values);
    const [nodes, rollouts] = await Promise.all([table.listNodes(cluster), table.listRollouts(cluster)]);
    const running = rollouts.filter((rollout) => rollout.status === 'running');
    const now = context.now();
    const progress: RolloutProgress[] = [];
    const inFlight = new Map<string, Pick<AttemptRecord, 'step' | 'state'>>();
    for (const rollout of running) {
      const attempts = await table.listAttempts(cluster, rollout.rolloutId);
      progress.push(rolloutProgress(rollout, attempts, now));
      for (const attempt of attempts) if (!isFinished(attempt)) inFlight.set(attempt.target, attempt);
    }
    const gossip = gossipGeneration(rollouts);
    if (values.json === true) {
      context.out.write(
        `${JSON.stringify(
          {
            cluster,
            nodes: nodes.map((node) => nodeJson(node, inFlight.get(node.instanceId))),
            rollouts: progress.map(progressJson),
            gossip: {
              generation: gossip.generation,
              lastRotatedAt: isoOrNull(gossip.lastRotatedAt),
              lastRolloutId: gossip.lastRolloutId ?? null,
            },
          },
          null,
          2,
        )}\n`,
      );
      return 0;
    }
    const colour = context.out.colour;
    const sections = [
      `cluster ${cluster}: ${nodes.length} node${nodes.length === 1 ? '' : 's'}`,
      renderFleetTable(nodes, now, inFlight, colour),
      '',
      progress.length === 0 ? 'no rollout running' : renderRollouts(progress, now, colour),
      '',
      gossip.generation === 0
        ? 'gossip key: generation 0 (no rotation by the rotator on record)'
        : `gossip key: generation ${gossip.generation}, last put in use ${when(gossip.lastRotatedAt, now)} by rollout ${gossip.lastRolloutId}`,
    ];
    context.out.write(`${sections.join('\n')}\n`);
    return 0;
  },
};

function renderRollouts(progress: readonly RolloutProgress[], now: number, colour: boolean): string {
  return renderTable(
    ['plan', 'rollout', 'reason', 'wave', 'in flight', 'done', 'failed', 'started', 'ETA'],
    progress.map((rollout) => [
      `${rollout.plan} ${rollout.kind}`,
      rollout.rolloutId,
      rollout.reason,
      `${rollout.wave} of ${rollout.waves}`,
      String(rollout.inFlight.length),
      `${rollout.done}/${rollout.targets}`,
      { text: String(rollout.failed), colour: rollout.failed > 0 ? 'red' : undefined },
      when(rollout.startedAt, now),
      rollout.eta === undefined ? '-' : relativeTime(rollout.eta, now),
    ]),
    { colour, maxCellWidth: 48 },
  );
}

function nodeJson(node: NodeRecord, attempt: Pick<AttemptRecord, 'step' | 'state'> | undefined) {
  return {
    instanceId: node.instanceId,
    role: node.role,
    status: node.status,
    serial: node.agent?.serial ?? null,
    notAfter: isoOrNull(node.agent?.notAfter),
    ping: node.ping ?? null,
    lastAction: node.lastAction ?? null,
    lastActionAt: isoOrNull(node.lastActionAt),
    lastError: node.lastError ?? null,
    rolloutStep: attempt === undefined ? null : `${attempt.step} ${attempt.state}`,
  };
}
