import type { AuditEntry } from '../../shared/state/records';
import {
  clusterOf,
  instanceIdOf,
  optionalString,
  rolloutIdOf,
  timeOf,
  UsageError,
  type Values,
} from '../args';
import { CLUSTER_OPTION, type Command, TABLE_OPTION } from '../context';
import { type Cell, isoOrNull, renderTable, when } from '../format';

/** The nodes an entry is about: its own, and those a batched command or a request listed. */
function nodesOf(entry: AuditEntry): string[] {
  const listed = [entry.details?.instances, entry.details?.targets].flatMap((value) =>
    typeof value === 'string' ? value.split(',') : [],
  );
  return [...(entry.instanceId === undefined ? [] : [entry.instanceId]), ...listed];
}

/**
 * What came of it, read from the action's name: `install-failed` failed, `rollout-halted` halted,
 * `manual-rotate` was requested. An action that names no outcome has none.
 */
export function outcomeOf(action: string): string {
  if (action.startsWith('manual-')) return 'requested';
  return action.split('-').findLast((word) => word.endsWith('ed')) ?? '-';
}

/** An assumed-role session without the account prefix, which is the same on every line. */
function shortActor(actor: string): string {
  return /^arn:aws:(?:sts|iam)::\d{12}:(.+)$/.exec(actor)?.[1] ?? actor;
}

function targetOf(entry: AuditEntry): string {
  if (entry.instanceId !== undefined) return entry.instanceId;
  const nodes = nodesOf(entry);
  if (nodes.length === 0) return '-';
  return nodes.length === 1 ? nodes[0]! : `${nodes.length} nodes`;
}

export const historyCommand: Command = {
  name: 'history',
  summary: 'the audit trail: who did what, why, when and what came of it',
  description:
    'Reads the audit items of the state table, oldest first. --node matches entries about the\n' +
    'node itself and batched commands or requests that listed it. --since and --until take a\n' +
    'duration back from now (30m, 2h, 7d) or an ISO time.',
  options: {
    ...CLUSTER_OPTION,
    node: { type: 'string', value: 'ID', description: 'entries about this instance' },
    rollout: { type: 'string', value: 'ID', description: 'entries of this rollout' },
    action: { type: 'string', value: 'A', description: 'entries of this action (e.g. install-failed)' },
    since: { type: 'string', value: '2h|ISO', description: 'entries from then on' },
    until: { type: 'string', value: '2h|ISO', description: 'entries up to then' },
    ...TABLE_OPTION,
  },
  examples: [
    'nomad-rotator history --cluster prod --since 2h',
    'nomad-rotator history --cluster prod --node i-0123456789abcdef0 --action install-failed',
    'nomad-rotator history --cluster prod --rollout 20261206011943-3fa2c1 --json',
  ],
  async run(values: Values, context) {
    const cluster = clusterOf(values);
    const node = instanceIdOf(values, 'node');
    const rollout = rolloutIdOf(values, 'rollout');
    const action = optionalString(values, 'action');
    if (action !== undefined && !/^[a-z0-9-]{1,128}$/.test(action))
      throw new UsageError(
        `--action ${action}: must be an action name such as install-failed or manual-rotate`,
      );
    const now = context.now();
    const since = timeOf(values, 'since', now);
    const until = timeOf(values, 'until', now);
    if (since !== undefined && until !== undefined && since > until)
      throw new UsageError('--since: must be before --until');
    const entries = (
      await context
        .stateTable(values)
        .listAuditWindow(
          cluster,
          { ...(since === undefined ? {} : { from: since }), ...(until === undefined ? {} : { to: until }) },
          now,
        )
    ).filter(
      (entry) =>
        (node === undefined || nodesOf(entry).includes(node)) &&
        (rollout === undefined || entry.rolloutId === rollout) &&
        (action === undefined || entry.action === action),
    );
    if (values.json === true) {
      context.out.write(`${JSON.stringify({ cluster, entries: entries.map(entryJson) }, null, 2)}\n`);
      return 0;
    }
    if (entries.length === 0) {
      context.out.write('no audit entries match\n');
      return 0;
    }
    const rows = entries.map((entry): Cell[] => {
      const outcome = outcomeOf(entry.action);
      return [
        when(entry.at, now),
        shortActor(entry.actor),
        entry.action,
        targetOf(entry),
        entry.rolloutId ?? '-',
        entry.reason ?? '-',
        {
          text: outcome,
          colour: ['failed', 'halted', 'superseded', 'abandoned'].includes(outcome)
            ? 'red'
            : ['succeeded', 'completed'].includes(outcome)
              ? 'green'
              : undefined,
        },
      ];
    });
    context.out.write(
      `${renderTable(['when', 'who', 'action', 'target', 'rollout', 'reason', 'outcome'], rows, {
        colour: context.out.colour,
        maxCellWidth: 60,
      })}\n\n${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}\n`,
    );
    return 0;
  },
};

function entryJson(entry: AuditEntry) {
  return {
    at: isoOrNull(entry.at),
    id: entry.id,
    actor: entry.actor,
    action: entry.action,
    outcome: outcomeOf(entry.action),
    reason: entry.reason ?? null,
    instanceId: entry.instanceId ?? null,
    rolloutId: entry.rolloutId ?? null,
    role: entry.role ?? null,
    group: entry.group ?? null,
    details: entry.details ?? {},
  };
}
