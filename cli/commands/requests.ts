import type { GossipStatusReport } from '../../shared/gossip/status';
import { clusterOf, oneOf, optionalString, required, type Values } from '../args';
import { CLUSTER_OPTION, type Command, type CommandContext, TABLE_OPTION, URL_OPTION } from '../context';
import { cleanCell, renderTable } from '../format';
import { checkWatchFlags, followRollout, WATCH_OPTIONS } from './watch';

export const TARGETS_HELP = 'all | servers | clients | i-0123...,i-0456...';

export function parseTargets(text: string): string | string[] {
  return ['all', 'servers', 'clients'].includes(text) ? text : text.split(',').map((id) => id.trim());
}

/** A label only: the rotator records the IAM identity AWS verified as who asked. */
export function requestedBy(context: CommandContext): string {
  return `cli:${context.environment.USER ?? 'unknown'}`;
}

const REASON = {
  reason: { type: 'string', value: 'R', description: 'why, for the audit trail (a ticket or incident id)' },
} as const;
const WAIT = {
  wait: { type: 'boolean', description: 'follow the rollout started, as watch does, and exit as it ends' },
  ...WATCH_OPTIONS,
  ...TABLE_OPTION,
} as const;

function reasonOf(values: Values): string {
  return required(optionalString(values, 'reason'), '--reason', 'why, for the audit trail');
}

interface RolloutAnswer {
  rolloutId: string | null;
  message: string;
}

/**
 * The answer to a request that may start a rollout: printed as the function sent it with --json,
 * else its message; with --wait, followed to its end (and with --json, the end goes in the document).
 */
async function answerRollout(
  values: Values,
  context: CommandContext,
  cluster: string,
  answer: RolloutAnswer,
  details: readonly string[],
): Promise<number> {
  const follow = values.wait === true && answer.rolloutId !== null;
  if (values.json === true) {
    const outcome = follow
      ? await followRollout(values, context, cluster, answer.rolloutId!, true)
      : undefined;
    context.out.write(
      `${JSON.stringify(outcome === undefined ? answer : { ...answer, outcome: outcome.progress }, null, 2)}\n`,
    );
    return outcome?.code ?? 0;
  }
  const lines = [
    answer.rolloutId === null
      ? cleanCell(answer.message)
      : `rollout ${answer.rolloutId}: ${cleanCell(answer.message)}`,
    ...details,
  ];
  if (answer.rolloutId !== null && !follow)
    lines.push(`follow it: nomad-rotator watch --cluster ${cluster} --rollout ${answer.rolloutId}`);
  context.out.write(`${lines.join('\n')}\n`);
  return follow ? (await followRollout(values, context, cluster, answer.rolloutId!, false)).code : 0;
}

function certificateCommand(name: 'rotate' | 'reissue'): Command {
  return {
    name,
    summary:
      name === 'rotate'
        ? 'rotate the targets now, due or not'
        : 'emergency: reissue the targets, restart them, revoke the replaced serials',
    description:
      name === 'rotate'
        ? 'Starts a rollout that rotates the targets now: servers one at a time, clients in waves.'
        : 'Starts an emergency rollout: every target gets a new certificate, restarts, and the\n' +
          'serials it replaces are revoked in Vault (--no-revoke keeps them valid).',
    options: {
      ...CLUSTER_OPTION,
      targets: { type: 'string', value: 'X', description: TARGETS_HELP },
      ...REASON,
      ...(name === 'rotate'
        ? { restart: { type: 'boolean', description: 'restart the agents instead of reloading them' } }
        : { 'no-revoke': { type: 'boolean', description: 'keep the replaced serials valid' } }),
      ...URL_OPTION,
      ...WAIT,
    },
    examples: [
      `nomad-rotator ${name} --cluster prod --targets clients --reason OPS-123 --wait`,
      `nomad-rotator ${name} --cluster prod --targets i-0123456789abcdef0 --reason INC-9 --json`,
    ],
    async run(values, context) {
      const cluster = clusterOf(values);
      checkWatchFlags(values);
      const answer = (await context.manualOps(values, {
        action: name,
        cluster,
        targets: parseTargets(required(optionalString(values, 'targets'), '--targets', TARGETS_HELP)),
        reason: reasonOf(values),
        ...(values.restart === true ? { restart: true } : {}),
        // Only an explicit choice is sent: the rotator's default (a reissue revokes) applies otherwise.
        ...(values['no-revoke'] === true ? { revokePrevious: false } : {}),
        requestedBy: requestedBy(context),
      })) as RolloutAnswer & { mode: string | null; waves: { instanceIds: string[] }[] };
      const nodes = answer.waves.reduce((sum, wave) => sum + wave.instanceIds.length, 0);
      return answerRollout(
        values,
        context,
        cluster,
        answer,
        answer.rolloutId === null
          ? []
          : [
              `${nodes} node${nodes === 1 ? '' : 's'} in ${answer.waves.length} wave${answer.waves.length === 1 ? '' : 's'}, ${answer.mode}`,
            ],
      );
    },
  };
}

const GOSSIP_SUMMARIES = {
  'rotate-gossip': 'a new gossip key on every server: install, use, remove, persist',
  'enable-gossip':
    'a cluster gossiping in clear: a new key, each server restarted encrypted, the leader last',
  'repair-gossip': 'servers the current key no longer reaches: stop, keyring rewritten, start, one at a time',
} as const;

function gossipCommand(name: keyof typeof GOSSIP_SUMMARIES): Command {
  return {
    name,
    summary: GOSSIP_SUMMARIES[name],
    description: `${GOSSIP_SUMMARIES[name]}.\n--dry-run names the servers (and their order) and changes nothing.${
      name === 'rotate-gossip'
        ? "\n--restart staged then restarts the servers one at a time behind the health gate (default:\nthe cluster's gossip.restartAfterRotation)."
        : ''
    }`,
    options: {
      ...CLUSTER_OPTION,
      ...REASON,
      'dry-run': { type: 'boolean', description: 'name the servers and change nothing' },
      ...(name === 'rotate-gossip'
        ? { restart: { type: 'string', value: 'none|staged', description: 'restart the servers after' } }
        : {}),
      ...URL_OPTION,
      ...WAIT,
    },
    examples: [
      `nomad-rotator ${name} --cluster prod --reason OPS-77 --dry-run`,
      `nomad-rotator ${name} --cluster prod --reason OPS-77 --wait`,
    ],
    async run(values, context) {
      const cluster = clusterOf(values);
      checkWatchFlags(values);
      const restart = name === 'rotate-gossip' ? oneOf(values, 'restart', ['none', 'staged']) : undefined;
      const answer = (await context.manualOps(values, {
        action: name,
        cluster,
        reason: reasonOf(values),
        ...(values['dry-run'] === true ? { dryRun: true } : {}),
        ...(restart === undefined ? {} : { restart }),
        requestedBy: requestedBy(context),
      })) as RolloutAnswer & { dryRun: boolean; servers?: string[]; stragglers?: string[]; restart?: string };
      const servers = answer.servers ?? answer.stragglers ?? [];
      return answerRollout(values, context, cluster, answer, [
        `${answer.dryRun ? 'dry run, nothing changed; ' : ''}servers: ${servers.length === 0 ? '-' : servers.join(', ')}${answer.restart === undefined ? '' : `; restart ${answer.restart}`}`,
      ]);
    },
  };
}

export const gossipStatusCommand: Command = {
  name: 'gossip-status',
  summary: "each server's gossip keys, primary, members and health, by fingerprint",
  description:
    'Asks every server for its keyring (an inspect: it changes nothing) and shows the keys by\n' +
    'fingerprint, never a key, with the fingerprints of the secret’s stages.',
  options: { ...CLUSTER_OPTION, ...URL_OPTION },
  examples: [
    'nomad-rotator gossip-status --cluster prod',
    'nomad-rotator gossip-status --cluster prod --json',
  ],
  async run(values, context) {
    const cluster = clusterOf(values);
    const report = (await context.manualOps(values, {
      action: 'gossip-status',
      cluster,
      requestedBy: requestedBy(context),
    })) as GossipStatusReport;
    if (values.json === true) {
      context.out.write(`${JSON.stringify(report, null, 2)}\n`);
      return 0;
    }
    const colour = context.out.colour;
    const rows = report.servers.map((server) =>
      server.answered
        ? [
            server.instanceId,
            server.keyringFile?.[0] ?? '-',
            server.list.ok
              ? Object.entries(server.list.counts)
                  .map(([fingerprint, count]) => `${fingerprint}×${count}`)
                  .join(' ')
              : `list failed: ${server.list.error}`,
            `${server.members.alive}/${server.members.total} alive`,
            {
              text: server.healthy ? 'healthy' : 'unhealthy',
              colour: server.healthy ? undefined : ('red' as const),
            },
            server.leaderHere ? 'leader' : '',
          ]
        : [
            server.instanceId,
            '-',
            { text: `no answer: ${server.reason}`, colour: 'red' as const },
            '-',
            '-',
            '',
          ],
    );
    const secret = `secret: current ${report.secret.current ?? '-'}, pending ${report.secret.pending ?? '-'}, previous ${report.secret.previous ?? '-'}`;
    context.out.write(
      `${renderTable(['server', 'primary', 'keys (fingerprint×servers)', 'members', 'health', ''], rows, { colour })}\n\n${secret}\n`,
    );
    return 0;
  },
};

export const requestCommands: readonly Command[] = [
  certificateCommand('rotate'),
  certificateCommand('reissue'),
  gossipCommand('rotate-gossip'),
  gossipCommand('enable-gossip'),
  gossipCommand('repair-gossip'),
  gossipStatusCommand,
];
