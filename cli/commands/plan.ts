import type { Plan } from '../../shared/certificates/planner';
import { clusterOf, optionalString, type Values } from '../args';
import { CLUSTER_OPTION, type Command, type CommandContext, URL_OPTION } from '../context';
import { type Cell, renderTable, when } from '../format';
import { parseTargets, requestedBy, TARGETS_HELP } from './requests';

const DECISION_ORDER = { rotate: 0, wait: 1, skip: 2 } as const;

export const planCommand: Command = {
  name: 'plan',
  summary: 'what a rotation would do to each node, and why (changes nothing)',
  description:
    'Asks manual-ops for the plan a rotation of these targets would follow: per node the decision\n' +
    '(rotate, wait, skip), the reason and when, then the waves. --json prints the plan document.',
  options: {
    ...CLUSTER_OPTION,
    targets: { type: 'string', value: 'X', description: `which nodes (default all): ${TARGETS_HELP}` },
    restart: { type: 'boolean', description: 'plan restarts instead of reloads' },
    ...URL_OPTION,
  },
  examples: [
    'nomad-rotator plan --cluster prod',
    'nomad-rotator plan --cluster prod --targets clients --json | jq .plan.waves',
  ],
  async run(values: Values, context: CommandContext): Promise<number> {
    const cluster = clusterOf(values);
    const answer = (await context.manualOps(values, {
      action: 'plan',
      cluster,
      targets: parseTargets(optionalString(values, 'targets') ?? 'all'),
      reason: 'plan requested from the CLI',
      ...(values.restart === true ? { restart: true } : {}),
      requestedBy: requestedBy(context),
    })) as { plan: Plan };
    if (values.json === true) {
      context.out.write(`${JSON.stringify(answer, null, 2)}\n`);
      return 0;
    }
    context.out.write(`${renderPlan(answer.plan, context.now(), context.out.colour)}\n`);
    return 0;
  },
};

/** The plan as a table, rotate first in wave order, and a line that sums it up. */
export function renderPlan(plan: Plan, now: number, colour: boolean): string {
  const waveOf = new Map<string, number>();
  plan.waves.forEach((wave, index) => {
    for (const instanceId of wave.instanceIds) waveOf.set(instanceId, index + 1);
  });
  const entries = [...plan.entries].sort(
    (a, b) =>
      DECISION_ORDER[a.decision] - DECISION_ORDER[b.decision] ||
      (waveOf.get(a.instanceId) ?? 0) - (waveOf.get(b.instanceId) ?? 0) ||
      a.instanceId.localeCompare(b.instanceId),
  );
  const rows = entries.map((entry): Cell[] => [
    entry.instanceId,
    entry.role,
    {
      text: entry.decision,
      colour: entry.decision === 'rotate' ? 'green' : entry.decision === 'skip' ? 'dim' : undefined,
    },
    entry.reason,
    entry.decision === 'rotate'
      ? `wave ${waveOf.get(entry.instanceId) ?? '?'} of ${plan.waves.length}`
      : entry.decision === 'wait'
        ? when(entry.renewAt, now)
        : '-',
  ]);
  const count = (decision: keyof typeof DECISION_ORDER) =>
    plan.entries.filter((entry) => entry.decision === decision).length;
  const rotating = count('rotate');
  const summary =
    `${rotating} to rotate in ${plan.waves.length} wave${plan.waves.length === 1 ? '' : 's'} ` +
    `(${plan.kind}, ${plan.mode}, ${plan.revokePrevious ? 'replaced serials revoked' : 'replaced serials kept'}), ` +
    `${count('wait')} waiting, ${count('skip')} skipped`;
  return `${renderTable(['instance', 'role', 'decision', 'reason', 'when'], rows, { colour, maxCellWidth: 96 })}\n\n${summary}`;
}
