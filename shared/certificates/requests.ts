import { z } from 'zod';
import type { Clock } from '../clock';
import { ValidationError } from '../errors';
import type { GossipStatusReport } from '../gossip/status';
import { PATTERNS } from '../patterns';
import { recordAudit } from '../rollout/audit';
import type { AuditLog } from '../state/store';
import { parseOrThrow } from '../validation';
import type { Plan, PlanRequest } from './planner';
import type { CertificateRotation, GossipRestartMode } from './rotation';

const instanceId = z.string().regex(new RegExp(PATTERNS.instanceId), {
  message: 'must be an EC2 instance id such as i-0123456789abcdef0',
});

const MANUAL_ACTIONS = [
  'plan',
  'rotate',
  'reissue',
  'rotate-gossip',
  'enable-gossip',
  'repair-gossip',
  'gossip-status',
] as const;
const actionSchema = z.looseObject({
  action: z.enum(MANUAL_ACTIONS, { message: `must be one of ${MANUAL_ACTIONS.join(', ')}` }),
});
const cluster = z.string().min(1, { message: 'must name a configured cluster' });
const reason = z.string().trim().min(3, { message: 'must say why (at least 3 characters)' }).max(500);
/** Whoever the caller says asked; a label only, never taken as the invoker (see VerifiedInvoker). */
const requestedBy = z.string().max(200).optional();

/** A certificate request of manual-operations (what the operator CLI sends). Unknown fields are refused. */
export const certificateRequestSchema = z.strictObject({
  action: z.enum(['plan', 'rotate', 'reissue']),
  cluster,
  targets: z.union(
    [
      z.enum(['all', 'servers', 'clients']),
      z.array(instanceId).min(1, { message: 'must list at least one instance id' }).max(500),
    ],
    { message: 'must be "all", "servers", "clients" or a non-empty list of instance ids' },
  ),
  reason,
  restart: z.boolean().optional(),
  revokePrevious: z.boolean().optional(),
  requestedBy,
});

/**
 * A gossip key rotation of the cluster's servers, or a repair of the servers its key no longer
 * reaches; `dryRun` names the servers and changes nothing. `restart` (rotate-gossip only: a repair
 * always restarts its stragglers) asks for staged restarts after the rotation or for none.
 */
export const gossipRequestSchema = z
  .strictObject({
    action: z.enum(['rotate-gossip', 'enable-gossip', 'repair-gossip']),
    cluster,
    reason,
    dryRun: z.boolean().optional(),
    restart: z.enum(['none', 'staged'], { message: 'must be "none" or "staged"' }).optional(),
    requestedBy,
  })
  .refine((request) => request.action === 'rotate-gossip' || request.restart === undefined, {
    path: ['restart'],
    message: 'only rotate-gossip takes it: enable and repair always restart, one server at a time',
  });

/** What every server's gossip keyring holds now (an inspect, which changes nothing). */
export const gossipStatusRequestSchema = z.strictObject({
  action: z.literal('gossip-status'),
  cluster,
  requestedBy,
});

export type CertificateRequest = z.output<typeof certificateRequestSchema>;
export type GossipRequest = z.output<typeof gossipRequestSchema>;
export type GossipStatusRequest = z.output<typeof gossipStatusRequestSchema>;
export type ManualRequest = CertificateRequest | GossipRequest | GossipStatusRequest;

export function parseManualRequest(input: unknown, configuredClusters: readonly string[]): ManualRequest {
  const { action } = parseOrThrow(actionSchema, input, 'manual request');
  const request: ManualRequest =
    action === 'rotate-gossip' || action === 'enable-gossip' || action === 'repair-gossip'
      ? parseOrThrow(gossipRequestSchema, input, 'manual request')
      : action === 'gossip-status'
        ? parseOrThrow(gossipStatusRequestSchema, input, 'manual request')
        : parseOrThrow(certificateRequestSchema, input, 'manual request');
  if (!configuredClusters.includes(request.cluster)) {
    throw new ValidationError('invalid manual request', [
      `cluster: ${request.cluster} is not configured (configured: ${configuredClusters.join(', ')})`,
    ]);
  }
  return request;
}

/**
 * The plan request a manual request stands for. `plan` previews a rotation without forcing it; the
 * operator's restart and revoke choices pass through unchanged (absent stays absent), so the rollout's
 * defaults are decided in one place (rolloutBehaviour) for the plan and the rollout alike.
 */
export function planRequestFrom(request: CertificateRequest): PlanRequest {
  return {
    kind: request.action === 'reissue' ? 'emergency' : 'rotate',
    targets: request.targets,
    force: request.action !== 'plan',
    ...(request.restart === undefined ? {} : { restart: request.restart }),
    ...(request.revokePrevious === undefined ? {} : { revokePrevious: request.revokePrevious }),
  };
}

/**
 * Who invoked, as AWS authenticated it: the ARN and account of the IAM identity whose SigV4 signature
 * Lambda's function URL verified (for a role, the assumed-role session ARN). Never read from the body.
 */
export interface VerifiedInvoker {
  arn: string;
  accountId: string;
}

/** What the operator gets back: the plan, or the rollout a rotate or reissue started. */
export type ManualOutcome =
  | { action: 'plan'; plan: Plan }
  | {
      action: 'rotate' | 'reissue';
      rolloutId: string | null;
      mode: 'reload' | 'restart' | null;
      waves: Plan['waves'];
      message: string;
    }
  | {
      action: 'rotate-gossip';
      dryRun: boolean;
      rolloutId: string | null;
      servers: string[];
      restart: GossipRestartMode;
      message: string;
    }
  | {
      action: 'enable-gossip';
      dryRun: boolean;
      rolloutId: string | null;
      servers: string[];
      softPartition: string;
      message: string;
    }
  | {
      action: 'repair-gossip';
      dryRun: boolean;
      rolloutId: string | null;
      stragglers: string[];
      status: GossipStatusReport;
      message: string;
    }
  | ({ action: 'gossip-status' } & GossipStatusReport);

export interface ManualRequestDependencies {
  rotation: Pick<
    CertificateRotation,
    | 'targetIssues'
    | 'plan'
    | 'syncInventory'
    | 'start'
    | 'startGossipRotation'
    | 'gossipServers'
    | 'gossipStatus'
    | 'startGossipRepair'
    | 'startGossipEnable'
    | 'gossipRestartMode'
  >;
  audit: AuditLog;
  clock: Clock;
}

/**
 * Run a validated manual request for its verified invoker. A request that names a target the cluster
 * does not know is refused before anything is written. Otherwise an audit entry `manual-<action>` is
 * written first, so a run cut short still says who asked: `actor` is the verified invoker, and the
 * body's requestedBy is kept apart as `details.claimedRequestedBy`. A rollout started here records the
 * verified invoker as its requester too.
 */
export async function runManualRequest(
  dependencies: ManualRequestDependencies,
  request: ManualRequest,
  invoker: VerifiedInvoker,
  deadline: number,
): Promise<ManualOutcome> {
  const { rotation } = dependencies;
  if (request.action === 'gossip-status')
    return { action: request.action, ...(await rotation.gossipStatus(deadline)) };
  if (!('targets' in request)) return runGossipRequest(dependencies, request, invoker, deadline);
  if (Array.isArray(request.targets)) {
    const issues = await rotation.targetIssues(request.targets);
    if (issues.length > 0) throw new ValidationError('invalid manual request', issues);
  }
  await auditManualRequest(dependencies, request, invoker, {
    targets: Array.isArray(request.targets) ? request.targets.join(',') : request.targets,
  });
  const planRequest = planRequestFrom(request);
  if (request.action === 'plan') return { action: 'plan', plan: await rotation.plan(planRequest) };
  await rotation.syncInventory();
  const rollout = await rotation.start(
    { ...planRequest, reason: request.reason, actor: invoker.arn },
    deadline,
  );
  return {
    action: request.action,
    rolloutId: rollout?.rolloutId ?? null,
    mode: rollout?.mode ?? null,
    waves: rollout?.waves ?? [],
    message:
      rollout === undefined ? 'nothing to rotate: no selected node can be rotated now' : 'rollout started',
  };
}

/**
 * A gossip rotation: the servers are named first (a cluster without a gossip section or servers is
 * refused before anything is written), then the audit entry, then the rollout, refused with
 * ConflictError while another rollout runs.
 */
async function runGossipRequest(
  dependencies: ManualRequestDependencies,
  request: GossipRequest,
  invoker: VerifiedInvoker,
  deadline: number,
): Promise<ManualOutcome> {
  const { rotation } = dependencies;
  const servers = await rotation.gossipServers();
  const dryRun = request.dryRun === true;
  await auditManualRequest(dependencies, request, invoker, {
    servers: servers.length,
    dryRun,
    ...(request.restart === undefined ? {} : { restart: request.restart }),
  });
  if (request.action === 'repair-gossip') {
    const repair = await rotation.startGossipRepair(
      { reason: request.reason, actor: invoker.arn, dryRun },
      deadline,
    );
    const message =
      repair.stragglers.length === 0
        ? 'nothing to repair: every server that answered reaches the others on the current key'
        : `${dryRun ? 'would repair' : 'repairing'} ${repair.stragglers.join(', ')}, one at a time`;
    return { action: request.action, dryRun, ...repair, message };
  }
  if (request.action === 'enable-gossip') {
    const enable = await rotation.startGossipEnable(
      { reason: request.reason, actor: invoker.arn, dryRun },
      deadline,
    );
    const message = `${dryRun ? 'would enable' : 'enabling'} gossip encryption, one server at a time in this order: ${enable.servers.join(', ')}`;
    return { action: request.action, dryRun, ...enable, message };
  }
  const restart = request.restart ?? rotation.gossipRestartMode();
  if (dryRun) {
    return {
      action: request.action,
      dryRun,
      rolloutId: null,
      servers,
      restart,
      message: `would rotate the gossip key of ${servers.length} server(s): inspect, install, use, remove, persist${restart === 'staged' ? ', then restart them one at a time, the leader last' : ''}`,
    };
  }
  const started = await rotation.startGossipRotation(
    { reason: request.reason, actor: invoker.arn, restart },
    deadline,
  );
  return {
    action: request.action,
    dryRun,
    ...started,
    message: `gossip rotation started${restart === 'staged' ? '; staged restarts follow once it completes' : ''}`,
  };
}

/** `manual-<action>` by the verified invoker, written before anything else the request does. */
function auditManualRequest(
  dependencies: ManualRequestDependencies,
  request: CertificateRequest | GossipRequest,
  invoker: VerifiedInvoker,
  details: Record<string, string | number | boolean>,
): Promise<void> {
  return recordAudit(dependencies.audit, dependencies.clock, {
    cluster: request.cluster,
    action: `manual-${request.action}`,
    actor: invoker.arn,
    reason: request.reason,
    details: {
      invokerAccountId: invoker.accountId,
      invokerVerifiedBy: 'lambda-function-url-aws-iam',
      ...details,
      ...(request.requestedBy === undefined ? {} : { claimedRequestedBy: request.requestedBy }),
    },
  });
}
