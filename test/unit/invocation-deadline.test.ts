import { describe, expect, it } from 'vitest';
import { deadlineFrom, type InvocationContext } from '../../functions/context';
import { ManualClock } from '../../local/clock';

describe('invocation deadline', () => {
  const clock = new ManualClock(1_800_000_000_000);
  const context = (remainingMs: number): InvocationContext => ({
    awsRequestId: 'request-1',
    getRemainingTimeInMillis: () => remainingMs,
  });

  it('is the remaining time less the safety margin', () => {
    expect(deadlineFrom(context(120_000), clock)).toBe(clock.now() + 100_000);
    expect(deadlineFrom(context(45_000), clock)).toBe(clock.now() + 25_000);
  });

  it('never lies beyond the end of an invocation that has less than the margin left', () => {
    for (const remainingMs of [0, 500, 15_000])
      expect(deadlineFrom(context(remainingMs), clock)).toBeLessThanOrEqual(clock.now() + remainingMs);
  });
});
