import { z } from 'zod';
import { lastJsonLine } from '../certificates/outputs';
import { patternRegExp } from '../patterns';
import type { ServerGossipReport } from './verdicts';

const fingerprint = z.string().regex(/^[0-9a-f]{16}$/);
const count = z.number().int().min(0).max(10_000);

export const GOSSIP_OPERATIONS = [
  'inspect',
  'install',
  'use',
  'remove',
  'discard',
  'repair',
  'restart',
  'enable',
  'persist',
] as const;
export type GossipOperation = (typeof GOSSIP_OPERATIONS)[number];

/**
 * What a step answered when it failed: Nomad's "x/y nodes reported ...", the HTTP status, a
 * repaired, restarted or enabled server that did not pass the gate for long enough in time, or an
 * enable that could not put autopilot's dead-server cleanup back.
 */
const apiError = z
  .string()
  .regex(
    /^([0-9]{1,4}\/[0-9]{1,4} nodes reported (success|failure)|http-[0-9]{3}|not-stable|autopilot-not-restored)$/,
  );

/**
 * The gossip document's one JSON line: what the step changed and the server's keyring by
 * fingerprint. A field that does not hold to its pattern fails the whole report, so nothing a node
 * writes reaches a decision, an item or a log unchecked.
 */
export const gossipReportSchema = z.object({
  ok: z.literal(true),
  stage: z.literal('gossip'),
  operation: z.enum(GOSSIP_OPERATIONS),
  attemptId: z.string().regex(patternRegExp('attemptId')),
  // `changed`: the step wrote or broadcast something (install and use always broadcast).
  mutation: z.union([
    z.null(),
    // `wasLeader`: a restart's server led the cluster when the gate before it held.
    z.object({ ok: z.literal(true), changed: z.boolean(), wasLeader: z.boolean().optional() }),
    z.object({ ok: z.literal(false), error: apiError }),
  ]),
  list: z.union([
    z.object({ ok: z.literal(true), counts: z.record(fingerprint, count), numNodes: count }),
    z.object({ ok: z.literal(false), error: apiError }),
  ]),
  keyringFile: z.array(fingerprint).max(64).nullable(),
  healthy: z.boolean(),
  members: z.object({ alive: count, total: count }),
  leader: z.string().regex(/^[0-9A-Fa-f.:[\]]{0,64}$/),
  /** The leader's autopilot view; null where it could not be read (no leader, no operator:read). */
  autopilot: z
    .object({ healthy: z.boolean(), failureTolerance: count, cleanupDeadServers: z.boolean().nullable() })
    .nullable(),
  /** Whether autopilot lists this server as the leader; null with no autopilot view. */
  leaderHere: z.boolean().nullable(),
});

export type GossipReport = z.output<typeof gossipReportSchema>;

export function readGossipReport(stdout: string): GossipReport | undefined {
  const parsed = gossipReportSchema.safeParse(lastJsonLine(stdout));
  return parsed.success ? parsed.data : undefined;
}

type Change = Extract<NonNullable<GossipReport['mutation']>, { ok: true }>;

/**
 * The report of a step that must change its server (repair, restart, enable), when it is this
 * attempt's and the change went through; else the reason: `gossip-output-unreadable`, or
 * `<operation>-failed:<what the script said>`.
 */
export function readChange(
  stdout: string,
  attemptId: string,
  operation: GossipOperation,
): { ok: true; report: GossipReport; change: Change } | { ok: false; reason: string } {
  const report = readGossipReport(stdout);
  if (report === undefined || report.attemptId !== attemptId || report.operation !== operation)
    return { ok: false, reason: 'gossip-output-unreadable' };
  if (report.mutation === null || !report.mutation.ok)
    return {
      ok: false,
      reason: `${operation}-failed:${report.mutation?.ok === false ? report.mutation.error : 'no-result'}`,
    };
  return { ok: true, report, change: report.mutation };
}

/** A report (or the part of one gossip-status keeps) as the verdicts read it. */
export function serverView(
  instanceId: string,
  report: Pick<GossipReport, 'list' | 'keyringFile' | 'healthy' | 'members'>,
): ServerGossipReport {
  return {
    instanceId,
    list: report.list,
    ...(report.keyringFile === null ? {} : { keyringFile: report.keyringFile }),
    healthy: report.healthy,
    aliveServers: report.members.alive,
    members: report.members.total,
  };
}
