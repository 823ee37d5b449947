import { randomBytes } from 'node:crypto';

/**
 * Which cluster, plan, step and try a command belongs to. It travels as the SSM command's Comment
 * (at most 100 characters: 14 + a 48-character cluster + plan + step + a 15-character token fit).
 * Events carry no comment, so the event path reads it back with the command's invocations.
 */
export interface RoutingKey {
  cluster: string;
  plan: string;
  step: string;
  /** `<last 6 of the rollout id>-<8 hex>`: names the try and, by its prefix, its rollout. */
  token: string;
}

const ROUTING =
  /^nomad-rotator:([a-z0-9][a-z0-9-]{0,47}):([a-z][a-z0-9]*):([a-z][a-z0-9-]*):([0-9a-f]{6}-[0-9a-f]{8})$/;

export function formatRoutingKey(key: RoutingKey): string {
  return `nomad-rotator:${key.cluster}:${key.plan}:${key.step}:${key.token}`;
}

/** The routing key of a comment, or undefined for a command that is not ours. */
export function parseRoutingKey(comment: string | undefined): RoutingKey | undefined {
  const match = ROUTING.exec(comment ?? '');
  if (match === null) return undefined;
  return { cluster: match[1]!, plan: match[2]!, step: match[3]!, token: match[4]! };
}

export function newToken(rolloutId: string): string {
  return `${rolloutId.slice(-6)}-${randomBytes(4).toString('hex')}`;
}

/** Whether a token was issued for this rollout. */
export function tokenBelongsTo(token: string, rolloutId: string): boolean {
  return token.startsWith(`${rolloutId.slice(-6)}-`);
}

/** Sortable by start time, unique across Lambdas: `yyyymmddhhmmss-<6 hex>`. */
export function newRolloutId(now: number): string {
  const stamp = new Date(now)
    .toISOString()
    .replace(/[-:.TZ]/g, '')
    .slice(0, 14);
  return `${stamp}-${randomBytes(3).toString('hex')}`;
}
