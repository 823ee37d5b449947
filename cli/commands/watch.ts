import type { RolloutRecord } from '../../shared/rollout/model';
import type { StateTable } from '../../shared/state/table';
import { CommandFailed, clusterOf, durationOf, optionalString, rolloutIdOf, type Values } from '../args';
import { CLUSTER_OPTION, type Command, type CommandContext, TABLE_OPTION } from '../context';
import { cleanCell, localIso, shortDuration } from '../format';
import {
  outcomeOf,
  progressFrame,
  progressJson,
  progressLine,
  type RolloutProgress,
  rolloutProgress,
} from '../rollout-progress';

export const WATCH_OPTIONS = {
  interval: { type: 'string', value: '2s', description: 'how often the state table is read (default 2s)' },
  timeout: {
    type: 'string',
    value: '30m',
    description: 'give up with exit code 1 after this long (default: until the rollout ends)',
  },
} as const;

/** The watch flags checked up front, so a bad one is exit code 2 before anything is read or started. */
export function checkWatchFlags(values: Values): void {
  durationOf(values, 'interval', 2_000);
  durationOf(values, 'timeout', 0);
}

/** Move the cursor up over the last frame and clear from there down. */
const redrawOver = (lines: number) => (lines === 0 ? '' : `\u001b[${lines}A\u001b[J`);

/**
 * Poll the rollout until it ends: on a terminal a frame redrawn in place, elsewhere a line per
 * change (a log or a CI job keeps every line). Exit code 0 when it completed, 1 when it halted, was
 * superseded or the timeout passed; `quiet` (for --json) draws nothing.
 */
export async function followRollout(
  values: Values,
  context: CommandContext,
  cluster: string,
  rolloutId: string,
  quiet: boolean,
): Promise<{ code: number; progress: ReturnType<typeof progressJson> }> {
  const table = context.stateTable(values);
  const intervalMs = durationOf(values, 'interval', 2_000);
  const timeoutMs =
    optionalString(values, 'timeout') === undefined ? undefined : durationOf(values, 'timeout', 0);
  const { out } = context;
  const started = context.now();
  let drawn = 0;
  let lastChange: string | undefined;
  for (;;) {
    const progress = await readProgress(table, cluster, rolloutId, context.now());
    const now = context.now();
    if (!quiet && out.tty) {
      const frame = progressFrame(progress, now, out.colour);
      out.write(`${redrawOver(drawn)}${frame.join('\n')}\n`);
      drawn = frame.length;
    } else if (!quiet) {
      if (lastChange === undefined) out.write(`${progressFrame(progress, now, false)[0]}\n`);
      const change = changeOf(progress);
      if (change !== lastChange) out.write(`${localIso(now)}  ${change}\n`);
      lastChange = change;
    }
    if (progress.status !== 'running') {
      const outcome = outcomeOf(progress, out.colour);
      if (!quiet) out.write(`${outcome.line}\n`);
      return { code: outcome.code, progress: progressJson(progress) };
    }
    if (timeoutMs !== undefined && now - started >= timeoutMs) {
      if (!quiet)
        out.write(`gave up after ${shortDuration(now - started)}: rollout ${rolloutId} is still running\n`);
      return { code: 1, progress: progressJson(progress) };
    }
    await context.sleep(intervalMs);
  }
}

async function readProgress(
  table: StateTable,
  cluster: string,
  rolloutId: string,
  now: number,
): Promise<RolloutProgress> {
  const rollout = await table.getRollout(cluster, rolloutId);
  if (rollout === undefined) throw new CommandFailed(`rollout ${rolloutId}: not found in cluster ${cluster}`);
  return rolloutProgress(rollout, await table.listAttempts(cluster, rolloutId), now);
}

/** What a line per change tells; the ETA is left out, or every poll would be a change. */
function changeOf(progress: RolloutProgress): string {
  const nodes = progress.inFlight.map((node) => `${node.instanceId} ${node.step}`).join(', ');
  return cleanCell(
    `${progressLine({ ...progress, eta: undefined }, 0, false)}${nodes === '' ? '' : `  (${nodes})`}`,
  );
}

/** The active rollout, else the one started last: watch then tells how that one ended. */
async function rolloutToWatch(table: StateTable, cluster: string): Promise<RolloutRecord> {
  const active = await table.getActiveRollout(cluster);
  if (active !== undefined) return active;
  const latest = (await table.listRollouts(cluster)).sort((a, b) => b.createdAt - a.createdAt)[0];
  if (latest === undefined) throw new CommandFailed(`no rollout on record for cluster ${cluster}`);
  return latest;
}

export const watchCommand: Command = {
  name: 'watch',
  summary: 'follow a rollout live until it ends (0 completed, 1 halted)',
  description:
    'Follows a rollout from the state table: a progress bar, the counts and the nodes in flight,\n' +
    'redrawn in place on a terminal, a line per change otherwise. Without --rollout, the running\n' +
    'rollout, else the last one. Exits 0 once it completed, 1 if it halted (printing why).',
  options: {
    ...CLUSTER_OPTION,
    rollout: { type: 'string', value: 'ID', description: 'the rollout (default: the running one)' },
    ...WATCH_OPTIONS,
    ...TABLE_OPTION,
  },
  examples: [
    'nomad-rotator watch --cluster prod',
    'nomad-rotator watch --cluster prod --rollout 20261206011943-3fa2c1 --timeout 30m',
  ],
  async run(values, context) {
    const cluster = clusterOf(values);
    const requested = rolloutIdOf(values, 'rollout');
    checkWatchFlags(values);
    const rolloutId = requested ?? (await rolloutToWatch(context.stateTable(values), cluster)).rolloutId;
    const { code, progress } = await followRollout(values, context, cluster, rolloutId, values.json === true);
    if (values.json === true) context.out.write(`${JSON.stringify(progress, null, 2)}\n`);
    return code;
  },
};
