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
