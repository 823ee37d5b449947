import type { ClusterConfig } from '../config';
import type { NodeRecord, ReloadMode } from '../state/records';
import type { NodeRole } from './names';
import { renewalTime } from './renewal';

export type RolloutKind = 'rotate' | 'emergency';

export interface Wave {
  role: NodeRole;
  instanceIds: string[];
}

/** A node's part in the running rollout, as the plan preview explains it. */
export interface InFlight {
  rolloutId: string;
  step: string;
  state: string;
}

export type TargetSelector = 'all' | 'servers' | 'clients' | readonly string[];

export interface PlanRequest {
  kind: RolloutKind;
  targets: TargetSelector;
  /** Rotate every selected node now, due or not (manual rotate and emergency reissue). */
  force: boolean;
  /** Restart the agent instead of reloading it; an emergency always restarts. */
  restart?: boolean;
  /** Revoke the replaced serials in Vault; when not said, an emergency revokes and a rotation does not. */
  revokePrevious?: boolean;
}

/** How a rollout treats its nodes: what the plan shows and what the rollout record then carries. */
export interface RolloutBehaviour {
  mode: ReloadMode;
  revokePrevious: boolean;
}

/**
 * The one place that turns a request into a mode and a revoke decision, so a plan shows what the
 * rollout started from the same request will do. An explicit `revokePrevious: false` wins even in an
 * emergency (`reissue --no-revoke`): the operator may need the old serials valid for a while.
 */
export function rolloutBehaviour(
  request: Pick<PlanRequest, 'kind' | 'restart' | 'revokePrevious'>,
): RolloutBehaviour {
  const emergency = request.kind === 'emergency';
  return {
    mode: request.restart === true || emergency ? 'restart' : 'reload',
    revokePrevious: request.revokePrevious ?? emergency,
  };
}

export type PlanDecision = 'rotate' | 'wait' | 'skip';

export interface PlanEntry {
  instanceId: string;
  role: NodeRole;
  decision: PlanDecision;
  reason: string;
  expiresAt?: number;
  renewAt?: number;
}

export interface Plan extends RolloutBehaviour {
  cluster: string;
  kind: RolloutKind;
  entries: PlanEntry[];
  waves: Wave[];
}

/**
 * Decide which nodes a rollout would touch and in which order, and say why for every node. Servers
 * go one per wave (a server TLS reload drops its RPC and Raft connections); clients go in bounded
 * waves. Offline nodes and nodes that failed recently go last so they do not block the healthy ones.
 */
export function planRotation(
  cluster: ClusterConfig,
  nodes: readonly NodeRecord[],
  request: PlanRequest,
  now: number,
  inFlight: ReadonlyMap<string, InFlight> = new Map(),
): Plan {
  const selected = nodes.filter((node) => isSelected(node, request.targets));
  const entries = selected.map((node) => decide(cluster, node, request, now, inFlight.get(node.instanceId)));
  const byRecord = new Map(selected.map((node) => [node.instanceId, node]));
  const rotating = entries
    .filter((entry) => entry.decision === 'rotate')
    .sort((a, b) => {
      const [first, second] = [byRecord.get(a.instanceId), byRecord.get(b.instanceId)];
      const offline = Number(first?.ping === 'ConnectionLost') - Number(second?.ping === 'ConnectionLost');
      const failures = (first?.failures ?? 0) - (second?.failures ?? 0);
      return offline || failures || a.instanceId.localeCompare(b.instanceId);
    });
  const servers = rotating.filter((entry) => entry.role === 'server').map((entry) => entry.instanceId);
  const clients = rotating.filter((entry) => entry.role === 'client').map((entry) => entry.instanceId);
  const waves: Wave[] = [
    ...servers.map((instanceId) => ({ role: 'server' as const, instanceIds: [instanceId] })),
    ...chunk(clients, cluster.rollout.clientWaveSize).map((instanceIds) => ({
      role: 'client' as const,
      instanceIds,
    })),
  ];
  return {
    cluster: cluster.name,
    kind: request.kind,
    ...rolloutBehaviour(request),
    entries,
    waves,
  };
}

function isSelected(node: NodeRecord, targets: TargetSelector): boolean {
  if (targets === 'all') return true;
  if (targets === 'servers') return node.role === 'server';
  if (targets === 'clients') return node.role === 'client';
  return targets.includes(node.instanceId);
}

function decide(
  cluster: ClusterConfig,
  node: NodeRecord,
  request: PlanRequest,
  now: number,
  inFlight: InFlight | undefined,
): PlanEntry {
  const base = { instanceId: node.instanceId, role: node.role, expiresAt: node.agent?.notAfter };
  if (node.status === 'retired') return { ...base, decision: 'skip', reason: 'instance is terminated' };
  if (node.status === 'refused')
    return { ...base, decision: 'skip', reason: `refused: ${node.lastError ?? 'not allowed a certificate'}` };
  if (inFlight !== undefined) {
    return {
      ...base,
      decision: 'skip',
      reason: `already in flight (${inFlight.step} ${inFlight.state}, rollout ${inFlight.rolloutId})`,
    };
  }
  if (request.force) {
    // An explicit request never drops a node quietly: an offline one is tried last and backs off.
    const offline =
      node.ping === 'ConnectionLost' ? '; SSM agent offline, tried last and retried until it is back' : '';
    return { ...base, decision: 'rotate', reason: `requested (${request.kind})${offline}` };
  }
  if (node.ping === 'ConnectionLost') {
    return { ...base, decision: 'wait', reason: 'SSM agent is not online; retried once it is' };
  }
  if (node.status === 'failed' && node.nextAttemptAt !== undefined && node.nextAttemptAt > now) {
    return {
      ...base,
      decision: 'wait',
      reason: `backing off after ${node.failures} failure(s) (${node.lastError ?? 'unknown'}) until ${iso(node.nextAttemptAt)}`,
    };
  }
  if (node.agent === undefined || node.cli === undefined) {
    return { ...base, decision: 'rotate', reason: 'no certificate issued yet' };
  }
  const renewAt = Math.min(
    renewalTime(node.agent, cluster.certificates, `${node.instanceId}/${node.agent.serial}`),
    renewalTime(node.cli, cluster.certificates, `${node.instanceId}/${node.cli.serial}`),
  );
  const hoursLeft = ((Math.min(node.agent.notAfter, node.cli.notAfter) - now) / 3_600_000).toFixed(1);
  if (node.status === 'failed') {
    return {
      ...base,
      renewAt,
      decision: 'rotate',
      reason: `retrying after failure (${node.lastError ?? 'unknown'})`,
    };
  }
  if (renewAt <= now) {
    return { ...base, renewAt, decision: 'rotate', reason: `renewal due: ${hoursLeft}h of validity left` };
  }
  return { ...base, renewAt, decision: 'wait', reason: `not due until ${iso(renewAt)} (${hoursLeft}h left)` };
}

function chunk<T>(items: readonly T[], size: number): T[][] {
  const chunks: T[][] = [];
  for (let index = 0; index < items.length; index += size) chunks.push(items.slice(index, index + size));
  return chunks;
}

function iso(epochMs: number): string {
  return new Date(epochMs).toISOString();
}
