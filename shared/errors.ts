/**
 * The error hierarchy. Retry logic keys on the class, never on message text: a `TransientError`
 * may succeed later, everything else needs a change of input, configuration or permissions.
 * Messages and context never carry secret values (tokens, keys, PEM private material).
 */

export type ErrorContext = Readonly<Record<string, string | number | boolean | null | undefined>>;

export class RotatorError extends Error {
  readonly context: ErrorContext;

  constructor(message: string, options: { cause?: unknown; context?: ErrorContext } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.context = options.context ?? {};
  }

  /** True when the same call may succeed later without any change (throttling, 5xx, sealed Vault). */
  get retryable(): boolean {
    return false;
  }
}

/** Input that breaks a contract: names the field and what is allowed. Nothing was changed. */
export class ValidationError extends RotatorError {
  readonly issues: readonly string[];

  constructor(message: string, issues: readonly string[] = [], options: { context?: ErrorContext } = {}) {
    super(issues.length > 0 ? `${message}: ${issues.join('; ')}` : message, options);
    this.issues = issues;
  }
}

/** Configuration read at start-up is missing or invalid. */
export class ConfigError extends ValidationError {}

/** A dependency is temporarily unavailable; retry with backoff. */
export class TransientError extends RotatorError {
  override get retryable(): boolean {
    return true;
  }
}

/** A conditional write lost a race: another invocation moved the state first. Safe to drop. */
export class ConflictError extends RotatorError {}

/** Something the caller asked for does not exist (an instance, a secret version, a rollout). */
export class NotFoundError extends RotatorError {}

/** An error as a log line may show it: class and message only (our errors never carry secrets). */
export function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** For a conditional write whose lost race is fine to drop: swallows ConflictError, rethrows the rest. */
export function ignoreConflict(error: unknown): undefined {
  if (error instanceof ConflictError) return undefined;
  throw error;
}

/** An error's class name, for short reasons such as `signing-failed:TransientError`. */
export function errorName(error: unknown): string {
  return error instanceof Error ? error.name : 'Error';
}
