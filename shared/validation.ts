import { z } from 'zod';
import { type ErrorContext, ValidationError } from './errors';
import { PATTERNS, type PatternName, patternRegExp } from './patterns';

/** A string held to one of the shell-safe patterns; the error names what is allowed. */
export const patternString = (name: PatternName, description: string) =>
  z.string().regex(patternRegExp(name), { message: `must be ${description} (pattern ${PATTERNS[name]})` });

/** One line per problem, naming the field by its dotted path; zod never echoes the received value. */
export function describeIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.map((issue) => {
    const field = issue.path.length > 0 ? issue.path.map(String).join('.') : '(root)';
    if (issue.code === 'unrecognized_keys') {
      const names = issue.keys.map((key) => (issue.path.length > 0 ? `${field}.${key}` : key));
      return `${names.join(', ')}: unknown field (not allowed)`;
    }
    return `${field}: ${issue.message}`;
  });
}

/** Parse input against a schema, or throw a ValidationError that names every bad field. */
export function parseOrThrow<Schema extends z.ZodType>(
  schema: Schema,
  input: unknown,
  what: string,
  context?: ErrorContext,
): z.output<Schema> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  return throwInvalid(what, describeIssues(result.error.issues), context);
}

function throwInvalid(what: string, issues: string[], context?: ErrorContext): never {
  throw new ValidationError(`invalid ${what}`, issues, context === undefined ? {} : { context });
}

/** https anywhere; plain http only to a loopback host, where nothing leaves the machine. */
export function secureOrLoopback(url: URL): boolean {
  return url.protocol === 'https:' || ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
}
