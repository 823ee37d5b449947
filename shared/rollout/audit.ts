import { randomBytes } from 'node:crypto';
import type { Clock } from '../clock';
import type { AuditEntry } from '../state/records';
import type { AuditLog } from '../state/store';
import type { RolloutRecord } from './model';

let auditSequence = 0;

/**
 * Audit ids sort in the order this process wrote them even within one millisecond, so the trail
 * shows "server A done" before "server B dispatched"; the random part keeps ids unique across Lambdas.
 */
function auditId(): string {
  auditSequence = (auditSequence + 1) % 1_000_000;
  return `${String(auditSequence).padStart(6, '0')}-${randomBytes(3).toString('hex')}`;
}

/** Write one audit entry, stamped now. */
export function recordAudit(
  log: AuditLog,
  clock: Clock,
  entry: Omit<AuditEntry, 'at' | 'id'>,
): Promise<void> {
  return log.audit({ ...entry, at: clock.now(), id: auditId() });
}

/** An audit entry about a rollout, and optionally one of its targets. */
export function auditRollout(
  log: AuditLog,
  clock: Clock,
  action: string,
  actor: string,
  rollout: Pick<RolloutRecord, 'cluster' | 'rolloutId'>,
  entry: Pick<AuditEntry, 'instanceId' | 'group' | 'reason' | 'details'> = {},
): Promise<void> {
  return recordAudit(log, clock, {
    cluster: rollout.cluster,
    action,
    actor,
    rolloutId: rollout.rolloutId,
    ...entry,
  });
}
