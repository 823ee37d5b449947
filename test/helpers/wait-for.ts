export interface WaitForOptions {
  /** How long the condition may take before the test fails. */
  timeoutMs: number;
  /** What is awaited, for the failure message ("client unit failed after the reload"). */
  what: string;
  /** Pause between looks; short, since every look is cheap next to the processes it watches. */
  intervalMs?: number;
}

/**
 * Wait until `condition` returns a truthy value and resolve with it, or fail after `timeoutMs`
 * naming what was awaited. Tests use it instead of a fixed sleep, which is either too short on a
 * loaded machine (a flake) or longer than needed everywhere else. The condition is looked at once
 * more after the deadline, so a slow last look cannot turn a met condition into a failure.
 * An error thrown by the condition fails at once: it is a broken check, not a state to wait out.
 */
export async function waitFor<T>(
  condition: () => T | Promise<T>,
  { timeoutMs, what, intervalMs = 20 }: WaitForOptions,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const expired = Date.now() >= deadline;
    const value = await condition();
    if (value) return value as NonNullable<T>;
    if (expired) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) =>
      setTimeout(resolve, Math.min(intervalMs, Math.max(0, deadline - Date.now()))),
    );
  }
}
