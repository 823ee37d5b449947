import { z } from 'zod';
import { ValidationError } from '../errors';
import { PATTERNS } from '../patterns';
import { parseOrThrow } from '../validation';
import type { PlanRequest } from './planner';

const instanceId = z.string().regex(new RegExp(PATTERNS.instanceId), {
  message: 'must be an EC2 instance id such as i-0123456789abcdef0',
});

/** The manual invoke payload of rotate-certs (and what the operator CLI sends). Unknown fields are refused. */
export const manualRequestSchema = z.strictObject({
  action: z.enum(['plan', 'rotate', 'reissue'], { message: 'must be one of plan, rotate, reissue' }),
  cluster: z.string().min(1, { message: 'must name a configured cluster' }),
  targets: z.union(
    [
      z.enum(['all', 'servers', 'clients']),
      z.array(instanceId).min(1, { message: 'must list at least one instance id' }).max(500),
    ],
    { message: 'must be "all", "servers", "clients" or a non-empty list of instance ids' },
  ),
  reason: z.string().trim().min(3, { message: 'must say why (at least 3 characters)' }).max(500),
  restart: z.boolean().optional(),
  revokePrevious: z.boolean().optional(),
  requestedBy: z.string().max(200).optional(),
});

export type ManualRequest = z.output<typeof manualRequestSchema>;

export function parseManualRequest(input: unknown, configuredClusters: readonly string[]): ManualRequest {
  const request = parseOrThrow(manualRequestSchema, input, 'manual request');
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
export function planRequestFrom(request: ManualRequest): PlanRequest {
  return {
    kind: request.action === 'reissue' ? 'emergency' : 'rotate',
    targets: request.targets,
    force: request.action !== 'plan',
    ...(request.restart === undefined ? {} : { restart: request.restart }),
    ...(request.revokePrevious === undefined ? {} : { revokePrevious: request.revokePrevious }),
  };
}
