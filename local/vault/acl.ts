import { badRequest, PERMISSION_DENIED } from './protocol';
import type { Token } from './tokens';

export type Capability = 'create' | 'read' | 'update' | 'delete' | 'list' | 'sudo' | 'deny' | 'patch';

interface Rule {
  path: string;
  capabilities: Set<Capability>;
}

/** The built-in `default` policy's parts the product relies on (lookup/renew/revoke self, capabilities). */
export const DEFAULT_POLICY = `
path "auth/token/lookup-self" { capabilities = ["read"] }
path "auth/token/renew-self" { capabilities = ["update"] }
path "auth/token/revoke-self" { capabilities = ["update"] }
path "sys/capabilities-self" { capabilities = ["update"] }
`;

/** Parse the HCL subset policies use: `path "<glob>" { capabilities = [ ... ] }` blocks and comments. */
export function parsePolicy(hcl: string): Rule[] {
  const text = hcl.replace(/#[^\n]*/g, '').replace(/\/\/[^\n]*/g, '');
  const rules: Rule[] = [];
  for (const block of text.matchAll(/path\s+"([^"]+)"\s*\{([^}]*)\}/g)) {
    const capabilities = /capabilities\s*=\s*\[([^\]]*)\]/.exec(block[2]!);
    if (capabilities === null)
      throw badRequest(`failed to parse policy: path "${block[1]}" has no capabilities`);
    rules.push({
      path: block[1]!,
      capabilities: new Set([...capabilities[1]!.matchAll(/"([a-z]+)"/g)].map((m) => m[1] as Capability)),
    });
  }
  if (rules.length === 0 && text.trim().length > 0)
    throw badRequest('failed to parse policy: no path blocks');
  return rules;
}

function matchesRule(rule: string, path: string): boolean {
  const glob = rule.endsWith('*');
  const ruleSegments = (glob ? rule.slice(0, -1) : rule).split('/');
  const pathSegments = path.split('/');
  if (!glob && ruleSegments.length !== pathSegments.length) return false;
  return ruleSegments.every((segment, index) => {
    const actual = pathSegments[index];
    if (actual === undefined) return false;
    if (segment === '+') return true;
    return index === ruleSegments.length - 1 && glob ? actual.startsWith(segment) : actual === segment;
  });
}

/**
 * The capabilities a set of policies grants on a path. Within a policy the most specific matching
 * rule applies (exact beats glob; then fewer `+` segments, then the longer prefix), as Vault's
 * radix-tree lookup does; across policies the grants are unioned and `deny` wins over everything.
 */
export function capabilitiesFor(policies: Rule[][], path: string): Set<Capability> {
  const granted = new Set<Capability>();
  for (const rules of policies) {
    const best = rules
      .filter((rule) => matchesRule(rule.path, path))
      .sort((a, b) => specificity(b.path) - specificity(a.path))[0];
    for (const capability of best?.capabilities ?? []) granted.add(capability);
  }
  return granted.has('deny') ? new Set(['deny']) : granted;
}

function specificity(rule: string): number {
  const exact = rule.endsWith('*') ? 0 : 1_000_000;
  const wildcards = rule.split('/').filter((segment) => segment === '+').length;
  return exact - wildcards * 10_000 + rule.length;
}

/** `policies` holds the policy texts by name; a token with the root policy is granted everything. */
export function tokenCapabilities(
  policies: ReadonlyMap<string, string>,
  token: Token,
  path: string,
): Set<Capability> | 'root' {
  return token.policies.includes('root')
    ? 'root'
    : capabilitiesFor(
        token.policies.map((name) => parsePolicy(policies.get(name) ?? '')),
        path,
      );
}

export function requireCapability(
  policies: ReadonlyMap<string, string>,
  token: Token,
  path: string,
  needed: Capability[],
): void {
  const granted = tokenCapabilities(policies, token, path);
  if (granted === 'root') return;
  if (granted.has('deny') || !needed.some((capability) => granted.has(capability))) throw PERMISSION_DENIED();
}

export function hasSudo(policies: ReadonlyMap<string, string>, token: Token, path: string): boolean {
  const granted = tokenCapabilities(policies, token, path);
  return granted === 'root' || granted.has('sudo');
}
