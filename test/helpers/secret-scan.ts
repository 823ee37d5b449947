import { gunzipSync } from 'node:zlib';
/**
 * Looks for secret material in anything a run produced (SSM parameters, events, log lines, table
 * items, errors): PEM private-key markers in clear or base64 at any alignment, Vault service tokens,
 * and any known secret value (a token, a key body, a gossip key), also base64-encoded.
 */
export interface SecretFinding {
  where: string;
  marker: string;
}

const CLEAR_MARKERS: [string, RegExp][] = [
  ['PEM private key', /PRIVATE KEY-----/],
  ['Vault service token', /\bhv[sb]\.[A-Za-z0-9_-]{20,}/],
];

/** "PRIVATE KEY" as it appears inside base64 text at each of the three byte alignments. */
const BASE64_PRIVATE_KEY = [0, 1, 2].map((offset) => {
  const encoded = Buffer.from(`${'x'.repeat(offset)}PRIVATE KEY`).toString('base64');
  const skip = Math.ceil((offset * 4) / 3);
  return encoded.slice(skip + (offset === 0 ? 0 : 1), encoded.length - 4);
});

export function findSecrets(
  sources: Record<string, unknown>,
  knownSecrets: readonly string[] = [],
): SecretFinding[] {
  const findings: SecretFinding[] = [];
  const needles = knownSecrets
    .filter((secret) => secret.length >= 8)
    .flatMap((secret) => [secret, Buffer.from(secret).toString('base64').slice(0, 40)]);
  for (const [where, value] of Object.entries(sources)) {
    const text = withUnpacked(typeof value === 'string' ? value : JSON.stringify(value));
    for (const [marker, pattern] of CLEAR_MARKERS) if (pattern.test(text)) findings.push({ where, marker });
    for (const fragment of BASE64_PRIVATE_KEY) {
      if (text.includes(fragment)) findings.push({ where, marker: 'base64 PEM private key' });
    }
    for (const needle of needles)
      if (text.includes(needle)) findings.push({ where, marker: 'known secret value' });
  }
  return findings;
}

/**
 * The text with every base64 run that decodes to a gzip stream (the install document's packed
 * certificates) unpacked after it, so a key hidden in a compressed parameter is found too.
 */
function withUnpacked(text: string): string {
  const unpacked: string[] = [];
  for (const [run] of text.matchAll(/[A-Za-z0-9+/]{24,}={0,2}/g)) {
    const bytes = Buffer.from(run, 'base64');
    if (bytes[0] !== 0x1f || bytes[1] !== 0x8b) continue;
    try {
      unpacked.push(gunzipSync(bytes).toString('utf8'));
    } catch {
      // Not a whole gzip stream: nothing the product packed.
    }
  }
  return [text, ...unpacked].join('\n');
}
