/**
 * Every value that reaches a node's shell is checked against one of these first, in our code and
 * again by SSM through the documents' allowedPattern. They are written to mean the same in
 * JavaScript, Java (SSM's API) and Go RE2 (the SSM agent compiles every allowedPattern with Go's
 * regexp before a command runs, and one pattern it cannot compile fails the whole document): no
 * lookaround, no backreferences, and no repeat count above 1000 (RE2's limit). Longer bounds live
 * in MAX_LENGTH and in the document size budget, not in the pattern.
 */
/**
 * The directories under which the documents may write certificates and keys: where platform teams
 * keep Nomad's TLS material (the seed guide's /opt/nomad, the packages' /etc/nomad.d, the data dir
 * /var/lib/nomad, and the distributions' TLS trees kept for Nomad). Anything else, /etc/passwd,
 * /root/.ssh or /usr/bin, is refused by SSM itself before the document runs.
 */
export const NODE_FILE_ROOTS = [
  '/opt/nomad/',
  '/etc/nomad.d/',
  '/etc/nomad/',
  '/var/lib/nomad/',
  '/etc/ssl/nomad/',
  '/etc/pki/nomad/',
] as const;

/**
 * One path segment that is neither "." nor "..": a first character that is not a dot, or one or two
 * dots followed by one that is not, or three dots and more. RE2 has no lookahead, so the exclusion
 * is spelt out as alternatives.
 */
const PATH_SEGMENT = '(\\.{0,2}[A-Za-z0-9_-][A-Za-z0-9._-]*|\\.\\.\\.[A-Za-z0-9._-]*)';

export const PATTERNS = {
  instanceId: '^i-([0-9a-f]{8}|[0-9a-f]{17})$',
  role: '^(server|client)$',
  region: '^[a-z0-9][a-z0-9_-]{0,62}$',
  absolutePath: `^/(${NODE_FILE_ROOTS.map((root) => root.slice(1, -1).replaceAll('.', '\\.')).join('|')})(/${PATH_SEGMENT})+$`,
  fileMode: '^0[0-7]{3}$',
  keyFileMode: '^0[0-7][0-7]0$',
  clusterName: '^[a-z0-9][a-z0-9-]{0,47}$',
  sha256Fingerprint: '^[0-9a-f]{64}$',
  posixName: '^[a-z_][a-z0-9_-]{0,31}$',
  keyType: '^(ec-p256|rsa-2048)$',
  reloadMode: '^(reload|restart)$',
  attemptId: '^[a-z0-9-]{8,64}$',
  base64Payload: '^[A-Za-z0-9+/=]+$',
  seconds: '^[1-9][0-9]{0,6}$',
  boolean: '^(true|false)$',
  httpsUrl: '^https://[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?$',
  gossipOperation: '^(inspect|install|use|remove|discard|repair|restart|enable|persist)$',
  serverCount: '^[1-9][0-9]?$',
  /** A gossip key's fingerprint (first 16 hex of sha256 of its bytes), or none. */
  gossipFingerprint: '^([0-9a-f]{16}|none)$',
  /** A version of the gossip secret the rotator wrote (see gossip/custody.ts), or none. */
  gossipVersionId: '^(gossip-[0-9a-f]{16}-[0-9a-f]{24}|none)$',
  /** A Secrets Manager secret by name or ARN (`none`: no secret). */
  secretId: '^[A-Za-z0-9/_+=.@:-]{1,512}$',
} as const;

export type PatternName = keyof typeof PATTERNS;

/** Bounds a pattern cannot carry under RE2; checked by matchesPattern. */
const MAX_LENGTH: Partial<Record<PatternName, number>> = {
  base64Payload: 60_000,
  absolutePath: 256,
};

const compiled = Object.fromEntries(
  Object.entries(PATTERNS).map(([name, source]) => [name, new RegExp(source)]),
) as Record<PatternName, RegExp>;

export function matchesPattern(name: PatternName, value: string): boolean {
  if (value.length > (MAX_LENGTH[name] ?? Number.POSITIVE_INFINITY)) return false;
  return compiled[name].test(value);
}

/** What a value matching the pattern may be, for error messages that name what is allowed. */
export function describePattern(name: PatternName): string {
  const limit = MAX_LENGTH[name];
  return limit === undefined
    ? `must match ${PATTERNS[name]}`
    : `must match ${PATTERNS[name]} and be at most ${limit} characters`;
}

export function patternRegExp(name: PatternName): RegExp {
  return compiled[name];
}
