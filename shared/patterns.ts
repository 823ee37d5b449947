/**
 * Every value that reaches a node's shell is checked against one of these first, in our code and
 * again by SSM through the documents' allowedPattern. They are written to mean the same in
 * JavaScript, Java (SSM's API) and Go RE2 (the SSM agent): no lookaround, no backreferences.
 */
export const PATTERNS = {
  instanceId: '^i-([0-9a-f]{8}|[0-9a-f]{17})$',
  role: '^(server|client)$',
  region: '^[a-z0-9][a-z0-9_-]{0,62}$',
  absolutePath: '^/[A-Za-z0-9._/-]{1,255}$',
  fileMode: '^0[0-7]{3}$',
  posixName: '^[a-z_][a-z0-9_-]{0,31}$',
  keyType: '^(ec-p256|rsa-2048)$',
  reloadMode: '^(reload|restart)$',
  attemptId: '^[a-z0-9-]{8,64}$',
  base64Payload: '^[A-Za-z0-9+/=]{1,60000}$',
  seconds: '^[1-9][0-9]{0,6}$',
  httpsUrl: '^https://[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?$',
} as const;

export type PatternName = keyof typeof PATTERNS;

const compiled = Object.fromEntries(
  Object.entries(PATTERNS).map(([name, source]) => [name, new RegExp(source)]),
) as Record<PatternName, RegExp>;

export function matchesPattern(name: PatternName, value: string): boolean {
  return compiled[name].test(value) && !(name === 'absolutePath' && value.split('/').includes('..'));
}

export function patternRegExp(name: PatternName): RegExp {
  return compiled[name];
}
