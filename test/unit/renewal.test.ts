import { describe, expect, it } from 'vitest';
import { renewalTime, unitJitter } from '../../shared/certificates/renewal';

const HOUR = 3_600_000;
const day = { notBefore: 0, notAfter: 24 * HOUR };

describe('renewal time', () => {
  it('renews when a third of the lifetime remains, before jitter', () => {
    expect(renewalTime(day, { renewWhenRemaining: 1 / 3, jitter: 0 }, 'i-1')).toBe(16 * HOUR);
  });

  it('spreads a fleet issued together within ±jitter of the lead time', () => {
    const times = Array.from({ length: 200 }, (_, index) =>
      renewalTime(day, { renewWhenRemaining: 1 / 3, jitter: 0.1 }, `i-${index}/serial`),
    );

    expect(Math.min(...times)).toBeGreaterThanOrEqual(16 * HOUR - 0.8 * HOUR);
    expect(Math.max(...times)).toBeLessThanOrEqual(16 * HOUR + 0.8 * HOUR);
    expect(new Set(times.map((time) => Math.round(time / 60_000))).size).toBeGreaterThan(50);
  });

  it('is stable for the same certificate across runs', () => {
    expect(unitJitter('i-0abc/1f:22')).toBe(unitJitter('i-0abc/1f:22'));
    expect(unitJitter('i-0abc/1f:22')).not.toBe(unitJitter('i-0abc/1f:23'));
  });
});
