import { createHash } from 'node:crypto';

export interface Validity {
  notBefore: number;
  notAfter: number;
}

export interface RenewalPolicy {
  /** Renew once less than this fraction of the lifetime remains. */
  renewWhenRemaining: number;
  /** ± fraction of the renewal lead time, spread deterministically per certificate. */
  jitter: number;
}

/**
 * When a certificate should be renewed. The jitter is derived from a stable seed (instance id and
 * serial) rather than Math.random, so every tick computes the same time for the same certificate and
 * a fleet issued together still renews spread out (consul-template's pkiCert jitter is effectively
 * zero; this is the lesson).
 */
export function renewalTime(validity: Validity, policy: RenewalPolicy, seed: string): number {
  const lifetime = validity.notAfter - validity.notBefore;
  const lead = lifetime * policy.renewWhenRemaining * (1 + policy.jitter * unitJitter(seed));
  return validity.notAfter - lead;
}

/** A stable value in [-1, 1] for a seed. */
export function unitJitter(seed: string): number {
  const digest = createHash('sha256').update(seed).digest();
  return (digest.readUInt32BE(0) / 0xffffffff) * 2 - 1;
}

/** What decides when a certificate counts as expiring soon: the renewal policy and the issued lifetime. */
export interface ExpiryPolicy extends RenewalPolicy {
  /** Lifetime of every certificate the cluster issues, in seconds. */
  ttl: number;
}

const MS_PER_HOUR = 3_600_000;

/**
 * Hours of validity below which a certificate is expiring soon: half the earliest renewal point
 * (lifetime × renewWhenRemaining × (1 − jitter)). By then renewal has been due for a while on every
 * certificate, and half of that margin is left to act. Rounded to hundredths of an hour because the
 * MinHoursToExpiry alarm carries this very number as its threshold; the NodesExpiringSoon metric
 * compares against the same rounded value, so a node counts as expiring soon exactly when it alone
 * would hold the alarm's metric below the threshold.
 */
export function expiringSoonHours(policy: ExpiryPolicy): number {
  const hours = ((policy.ttl / 3600) * policy.renewWhenRemaining * (1 - policy.jitter)) / 2;
  return Math.round(hours * 100) / 100;
}

/** Hours from `now` until `notAfter` (both epoch milliseconds); negative once expired. */
export function hoursUntil(notAfter: number, now: number): number {
  return (notAfter - now) / MS_PER_HOUR;
}

/**
 * Days of the issuing CA's life below which to alarm (and the doctor warns): three certificate lifetimes, and at least 30
 * days, so a new intermediate can be signed and rolled out long before signing stops (one TTL before
 * the CA's end) and before the last certificates issued under the old one expire.
 */
export function caDaysToExpiryThreshold(cluster: { certificates: { ttl: number } }): number {
  const days = Math.max(30, (3 * cluster.certificates.ttl) / 86_400);
  return Math.round(days * 100) / 100;
}
