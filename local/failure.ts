import { describeError, RotatorError } from '../shared/errors';

/**
 * How the demo and `npm run world` report a failure: one line for the conditions the product knows
 * (its own errors name the cause and never carry secrets), the stack only for the unexpected.
 */
export function describeFailure(error: unknown): string {
  if (error instanceof RotatorError) return describeError(error);
  return error instanceof Error ? (error.stack ?? error.message) : String(error);
}
