import { Logger as PowertoolsLogger } from '@aws-lambda-powertools/logger';
import type { Context } from 'aws-lambda';
import type { Logger } from './logger';

/**
 * Ids that tie a log line to what it is about. Only identifiers go here, never a payload, an output
 * or an error, so nothing secret can ride along on every line.
 */
export interface CorrelationKeys {
  cluster?: string;
  rolloutId?: string;
  instanceId?: string;
  commandId?: string;
}

/**
 * Start an invocation's log context: Powertools then writes the request id, the function and whether
 * this is a cold start on every line. Any other logger (the local world's recording one) is left as
 * it is.
 */
export function beginInvocationLog(logger: Logger, context: Partial<Context>): void {
  if (logger instanceof PowertoolsLogger) logger.addContext(context as Context);
}

/**
 * Run `work` with the known keys on every line the logger writes meanwhile, the engine's lines
 * included, and take them off again afterwards. Records are handled one at a time, so the keys of one
 * never reach the lines of another.
 */
export async function withCorrelation<T>(
  logger: Logger,
  keys: CorrelationKeys,
  work: () => Promise<T>,
): Promise<T> {
  if (!(logger instanceof PowertoolsLogger)) return work();
  const known = Object.fromEntries(Object.entries(keys).filter(([, value]) => value !== undefined));
  logger.appendKeys(known);
  try {
    return await work();
  } finally {
    logger.removeKeys(Object.keys(known));
  }
}
