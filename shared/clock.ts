/** Source of the current time, so that expiry, backoff and lease logic can be driven by tests. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
