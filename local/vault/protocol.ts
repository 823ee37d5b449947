import { randomUUID } from 'node:crypto';

/** A Vault error response: one string in `errors` (or none), with Vault's status for it. */
export class VaultHttpError extends Error {
  constructor(
    readonly status: number,
    readonly text?: string,
  ) {
    super(text ?? `status ${status}`);
  }
}

export const PERMISSION_DENIED = () =>
  new VaultHttpError(403, '1 error occurred:\n\t* permission denied\n\n');
export const INVALID_TOKEN = () =>
  new VaultHttpError(403, '2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n');
export const NOT_FOUND = () => new VaultHttpError(404);
export const badRequest = (text: string) => new VaultHttpError(400, text);

export interface AuthBlock {
  client_token: string;
  accessor: string;
  policies: string[];
  token_policies: string[];
  metadata: Record<string, string> | null;
  lease_duration: number;
  renewable: boolean;
  entity_id: string;
  token_type: 'service';
  orphan: boolean;
  mfa_requirement: null;
  num_uses: number;
}

/** A success body with Vault's keys in Vault's order (sdk/logical/translate_response.go). */
export function envelope(options: {
  data?: unknown;
  auth?: AuthBlock | null;
  warnings?: string[];
  mountType?: string;
}) {
  return {
    request_id: randomUUID(),
    lease_id: '',
    renewable: false,
    lease_duration: 0,
    data: options.data ?? null,
    wrap_info: null,
    warnings: options.warnings && options.warnings.length > 0 ? options.warnings : null,
    auth: options.auth ?? null,
    mount_type: options.mountType ?? '',
  };
}

/** Vault duration fields: integer seconds, numeric strings, Go durations ("72h", "1h30m", "90s"), days. */
export function seconds(value: unknown, fallback = 0): number {
  if (value === undefined || value === null || value === '') return fallback;
  if (typeof value === 'number') return value;
  const text = String(value);
  if (/^\d+$/.test(text)) return Number(text);
  const match = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(text);
  if (match === null)
    throw badRequest(`error converting input ${text} for field "ttl": time: invalid duration "${text}"`);
  const [, d, h, m, s] = match;
  return Number(d ?? 0) * 86_400 + Number(h ?? 0) * 3_600 + Number(m ?? 0) * 60 + Number(s ?? 0);
}

/** Go's time.Duration String(), as Vault prints durations in warnings ("768h0m0s"). */
export function goDuration(totalSeconds: number): string {
  const h = Math.floor(totalSeconds / 3600);
  const m = Math.floor((totalSeconds % 3600) / 60);
  const s = totalSeconds % 60;
  return h > 0 ? `${h}h${m}m${s}s` : m > 0 ? `${m}m${s}s` : `${s}s`;
}

/** Go's time.RFC3339Nano of a UTC time: fractional seconds without trailing zeros, none when zero. */
export function rfc3339Nano(date: Date): string {
  return date
    .toISOString()
    .replace(/\.(\d*?)0*Z$/, (_match, digits: string) => (digits ? `.${digits}Z` : 'Z'));
}

/** A comma string or an array, as Vault's TypeCommaStringSlice accepts. */
export function list(value: unknown): string[] {
  if (value === undefined || value === null || value === '') return [];
  const items = Array.isArray(value) ? value.map(String) : String(value).split(',');
  return items.map((item) => item.trim()).filter((item) => item.length > 0);
}

export function bool(value: unknown, fallback: boolean): boolean {
  if (value === undefined || value === null || value === '') return fallback;
  return value === true || value === 'true' || value === 1 || value === '1';
}

export const DEFAULT_MAX_TTL = 768 * 3600;

/** An answer as the HTTP layer writes it: a JSON body, a raw document (PEM, DER) or a bare status. */
export type Reply = {
  status: number;
  body?: unknown;
  raw?: { text: string | Uint8Array; contentType: string };
};

/** A PKI mount's answer; a missing status is 200. */
export type PkiResult = Partial<Reply>;
