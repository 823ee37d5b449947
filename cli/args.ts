import { parseArgs } from 'node:util';
import { parseDurationSeconds } from '../shared/duration';
import { PATTERNS } from '../shared/patterns';
import { ROLLOUT_ID } from '../shared/state/dynamodb/rollout-checks';

/** A mistake in how the command was called: exit code 2, one line naming the flag and what it takes. */
export class UsageError extends Error {}

/** A command that ran and did not get what it asked for: exit code 1, one line. */
export class CommandFailed extends Error {}

export interface OptionSpec {
  type: 'string' | 'boolean';
  /** What the value looks like in help: `C`, `ID`, `2h|ISO`. */
  value?: string;
  description: string;
}

export type OptionSpecs = Readonly<Record<string, OptionSpec>>;
export type Values = Readonly<Record<string, string | boolean | undefined>>;

/** Flags every command takes. */
export const COMMON_OPTIONS: OptionSpecs = {
  json: { type: 'boolean', description: 'one JSON document on stdout instead of the human view' },
  help: { type: 'boolean', description: 'this help' },
};

/**
 * The flags after the command, checked against the command's own: unknown flags, a flag without
 * its value, a value given to a switch and stray words are usage errors that name what is allowed.
 * Parsed leniently and checked here because node's own messages name neither the command nor the
 * allowed flags.
 */
export function parseCommandArgs(command: string, argv: readonly string[], specs: OptionSpecs): Values {
  const all = { ...specs, ...COMMON_OPTIONS };
  const { tokens } = parseArgs({
    args: [...argv],
    strict: false,
    allowPositionals: true,
    tokens: true,
    options: Object.fromEntries(
      Object.entries(all).map(([name, spec]) => [name, { type: spec.type }] as const),
    ),
  });
  const allowed = () =>
    Object.keys(all)
      .map((name) => `--${name}`)
      .join(', ');
  const values: Record<string, string | boolean> = {};
  for (const token of tokens) {
    if (token.kind === 'positional')
      throw new UsageError(`${command}: unexpected argument ${JSON.stringify(token.value)} (flags only)`);
    if (token.kind !== 'option') continue;
    if (token.rawName === '-h') {
      values.help = true;
      continue;
    }
    const spec = all[token.name];
    if (spec === undefined || !token.rawName.startsWith('--'))
      throw new UsageError(`${token.rawName}: not an option of ${command} (allowed: ${allowed()})`);
    if (spec.type === 'boolean') {
      if (token.value !== undefined) throw new UsageError(`--${token.name}: takes no value`);
      values[token.name] = true;
      continue;
    }
    if (token.value === undefined || (!token.inlineValue && token.value.startsWith('--')))
      throw new UsageError(`--${token.name}: needs a value (${spec.value ?? 'text'})`);
    if (token.name in values) throw new UsageError(`--${token.name}: given more than once`);
    values[token.name] = token.value;
  }
  return values;
}

export function optionalString(values: Values, name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

export function required(value: string | undefined, flag: string, allowed: string): string {
  if (value === undefined || value === '') throw new UsageError(`${flag} is required (${allowed})`);
  return value;
}

const CLUSTER = new RegExp(PATTERNS.clusterName);
const INSTANCE_ID = new RegExp(PATTERNS.instanceId);

export function clusterOf(values: Values): string {
  const cluster = required(optionalString(values, 'cluster'), '--cluster', 'the cluster name as configured');
  if (!CLUSTER.test(cluster))
    throw new UsageError(`--cluster ${cluster}: must be a cluster name (lower-case letters, digits and -)`);
  return cluster;
}

export function instanceIdOf(values: Values, name: string): string | undefined {
  const value = optionalString(values, name);
  if (value !== undefined && !INSTANCE_ID.test(value))
    throw new UsageError(`--${name} ${value}: must be an EC2 instance id such as i-0123456789abcdef0`);
  return value;
}

export function rolloutIdOf(values: Values, name: string): string | undefined {
  const value = optionalString(values, name);
  if (value !== undefined && !ROLLOUT_ID.test(value))
    throw new UsageError(`--${name} ${value}: must be a rollout id as status and history print it`);
  return value;
}

/** A duration (`90s`, `15m`, `2h`, `7d`) as milliseconds. */
export function durationOf(values: Values, name: string, fallbackMs: number): number {
  const value = optionalString(values, name);
  if (value === undefined) return fallbackMs;
  const seconds = parseDurationSeconds(value);
  if (seconds === undefined || seconds === 0)
    throw new UsageError(`--${name} ${value}: must be a duration such as 2s, 15m, 2h or 1h30m`);
  return seconds * 1000;
}

const ISO_TIME = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/;

/** A point in time: a duration back from now (`2h`: two hours ago) or an ISO 8601 time. */
export function timeOf(values: Values, name: string, now: number): number | undefined {
  const value = optionalString(values, name);
  if (value === undefined) return undefined;
  const seconds = parseDurationSeconds(value);
  if (seconds !== undefined && value !== '') return now - seconds * 1000;
  const at = ISO_TIME.test(value) ? Date.parse(value) : Number.NaN;
  if (Number.isNaN(at))
    throw new UsageError(
      `--${name} ${value}: must be a duration back from now (30m, 2h, 7d) or an ISO time (2026-12-06T09:00:00Z)`,
    );
  return at;
}

export function oneOf<const T extends string>(
  values: Values,
  name: string,
  allowed: readonly T[],
): T | undefined {
  const value = optionalString(values, name);
  if (value !== undefined && !(allowed as readonly string[]).includes(value))
    throw new UsageError(`--${name} ${value}: must be one of ${allowed.join(', ')}`);
  return value as T | undefined;
}
