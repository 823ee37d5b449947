import { z } from 'zod';
import { patternRegExp } from '../patterns';
import type { CertificateFacts } from '../state/records';
import { stripControlCharacters } from '../terminal-text';

const MS_PER_SECOND = 1000;

/** What a node may say in a free-text field: after control characters go, only these remain. */
const SAFE_CHARACTERS = 'A-Za-z0-9._:-';
const SAFE_TEXT = new RegExp(`^[${SAFE_CHARACTERS}]*$`);
const UNSAFE_CHARACTER = new RegExp(`[^${SAFE_CHARACTERS}]`, 'g');
const MAX_TEXT_LENGTH = 64;

/** A node-reported text field: control characters stripped, then only the safe set, else nothing. */
const nodeText = z
  .string()
  .transform((text) => stripControlCharacters(text).replace(/[\t\n]/g, ''))
  .pipe(z.string().max(MAX_TEXT_LENGTH).regex(SAFE_TEXT));

/** SSM's own status detail, as the fallback reason: the same safe set, spaces dropped. */
function safeStatusDetail(detail: string): string {
  const text = stripControlCharacters(detail).replace(UNSAFE_CHARACTER, '');
  return text.slice(0, MAX_TEXT_LENGTH) || 'failed';
}

/** The node scripts print validity as `date +%s` of openssl's dates: whole epoch seconds. */
const epochSeconds = z.number().int();
/** A certificate serial as openssl prints it (hex, with or without colons); the state table keeps the same. */
export const certificateSerial = z.string().regex(/^[0-9a-fA-F:]{1,64}$/);
const serial = certificateSerial;
const attemptId = z.string().regex(patternRegExp('attemptId'));

/**
 * A certificate as a node script reports it. Its times are converted here, once, to the epoch
 * milliseconds of every record and clock in the code, so no seconds value travels past the parse.
 */
const nodeReportedCertificate = z
  .object({ serial, notBefore: epochSeconds, notAfter: epochSeconds })
  .transform(
    (reported): CertificateFacts => ({
      serial: reported.serial,
      notBefore: reported.notBefore * MS_PER_SECOND,
      notAfter: reported.notAfter * MS_PER_SECOND,
    }),
  );

/** The certificate a node holds before a rotation (prepare reports no start of validity). */
const nodeReportedCurrentCertificate = z.object({ serial, notAfter: epochSeconds }).transform(
  (reported): Omit<CertificateFacts, 'notBefore'> => ({
    serial: reported.serial,
    notAfter: reported.notAfter * MS_PER_SECOND,
  }),
);

export const prepareOutputSchema = z.object({
  ok: z.literal(true),
  stage: z.literal('prepare'),
  attemptId,
  agentCsr: z.string().regex(/^[A-Za-z0-9+/=]+$/),
  cliCsr: z.string().regex(/^[A-Za-z0-9+/=]+$/),
  current: z.object({
    agent: nodeReportedCurrentCertificate.nullable(),
    cli: nodeReportedCurrentCertificate.nullable(),
  }),
});

export const installOutputSchema = z.object({
  ok: z.literal(true),
  stage: z.literal('install'),
  attemptId,
  changed: z.boolean(),
  action: z.enum(['reload', 'restart', 'none']),
  servedSerial: serial,
  agent: nodeReportedCertificate,
  cli: nodeReportedCertificate,
});

export const failureOutputSchema = z.object({
  ok: z.literal(false),
  stage: z.enum(['prepare', 'install', 'gossip']),
  reason: nodeText.pipe(z.string().regex(/^[a-z0-9-]{1,64}$/)),
  // A detail outside the safe set is dropped; the reason alone still says what failed.
  detail: nodeText.optional().catch(undefined),
  touched: z.boolean().optional(),
  restored: z.boolean().optional(),
});

/** The one JSON line a document prints; undefined when stdout holds none that parses. */
export function lastJsonLine(stdout: string): unknown {
  const lines = stdout.trim().split('\n').reverse();
  for (const line of lines) {
    if (!line.startsWith('{')) continue;
    try {
      return JSON.parse(line);
    } catch {
      // SSM cuts stdout at 24,000 characters; a truncated line is not ours to trust.
    }
  }
  return undefined;
}

/** A short, secret-free reason for a failed command: the script's own reason, else SSM's status. */
export function failureReason(stdout: string, statusDetail: string): string {
  const parsed = failureOutputSchema.safeParse(lastJsonLine(stdout));
  if (parsed.success)
    return parsed.data.detail ? `${parsed.data.reason}:${parsed.data.detail}` : parsed.data.reason;
  return safeStatusDetail(statusDetail);
}

/** Vault writes serials as lower-case colon hex; openssl as upper-case plain hex. Compare on this. */
export function normalizeSerial(serial: string): string {
  return serial
    .replaceAll(':', '')
    .toLowerCase()
    .replace(/^0+(?=.)/, '');
}
