// What the benchmarks share: the SDK calls the product sends, medians, and one way of printing.
import type { MiddlewareStack } from '@smithy/types';
import type { World } from '../local/world';

export const say = (text: string) => process.stdout.write(`${text}\n`);
export const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};

/** Counts every SDK command the product sends (once per command, not per retry), by service. */
export function countCalls(world: World): Map<string, number> {
  const counts = new Map<string, number>();
  for (const [service, client] of Object.entries(world.clients)) {
    (client.middlewareStack as MiddlewareStack<object, object>).add(
      (next, context) => (args) => {
        const key = `${service}.${context.commandName ?? 'unknown'}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
        return next(args);
      },
      { step: 'initialize', name: 'benchCallCounter' },
    );
  }
  return counts;
}

export function difference(after: Map<string, number>, before: Map<string, number>): Record<string, number> {
  const result: Record<string, number> = {};
  for (const [key, value] of after) {
    const delta = value - (before.get(key) ?? 0);
    if (delta > 0) result[key] = delta;
  }
  return result;
}

/**
 * A manual request or tick whose reads SSM throttles past the SDK's own retries fails back to its
 * caller: the operator sends the request again, the scheduler ticks again. Returns how many times
 * it had to be sent again.
 */
export async function sendAgainWhenThrottled(
  send: () => Promise<unknown>,
  { retries, pauseMs = 1_000 }: { retries: number; pauseMs?: number },
): Promise<number> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      await send();
      return attempt - 1;
    } catch (error) {
      const throttled = error instanceof Error && error.name === 'ThrottlingException';
      if (!throttled || attempt > retries) throw error;
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
  }
}
