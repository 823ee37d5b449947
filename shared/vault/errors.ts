import { type ErrorContext, RotatorError, TransientError } from '../errors';

/**
 * Vault failures by what the caller should do about them. Vault's own error text is kept (it names
 * paths and roles, never token values); the raw HTTP error is never attached, so nothing that saw
 * the request headers (and with them the X-Vault-Token) can end up in a log.
 */
export class VaultError extends RotatorError {}

/** 503 sealed / standby, 429, 5xx, network failure: the same call may succeed later. */
export class VaultUnavailableError extends TransientError {}

export class VaultSealedError extends VaultUnavailableError {}

/**
 * 412 "required index state not present": a performance standby has not yet caught up with a write
 * made through another node. Vault's own Go client retries it (api/client.go DefaultRetryPolicy).
 */
export class VaultIndexNotPresentError extends VaultUnavailableError {}

/** 403: the token lacks a policy for the path. */
export class VaultPermissionDeniedError extends VaultError {}

/** 403 with "invalid token": expired, revoked or unknown token. */
export class VaultInvalidTokenError extends VaultPermissionDeniedError {}

/**
 * 400 "... not allowed by this role" (a name) or "role requires ..." (the key's type or size, signCert
 * in cert_util.go): the PKI role refuses what was asked; retrying the same request cannot help.
 */
export class VaultNotAllowedByRoleError extends VaultError {}

/**
 * Vault's TLS certificate did not verify against the configured CA bundle (or the system roots): a
 * configuration problem that retrying cannot fix.
 */
export class VaultTlsError extends VaultError {}

/** Node's TLS verification failures (OpenSSL's names) that mean "this certificate is not trusted". */
const TLS_VERIFICATION_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/**
 * Vault (or something in front of it) answered with a redirect. It is never followed: the request
 * carries the token, and the new location may be another host or plain http.
 */
export class VaultRedirectRefusedError extends VaultError {}

/** Any other 4xx: the request itself is wrong. */
export class VaultBadRequestError extends VaultError {}

/**
 * 404, or Vault's "no handler for route" (no mount, role or item at the path): what was asked for does
 * not exist. Still a bad request, so whoever treats every 4xx alike keeps doing so.
 */
export class VaultNotFoundError extends VaultBadRequestError {}

/**
 * Whether Vault answered exactly this: the status and Vault's own error text (whitespace collapsed),
 * never our message around it, which names the path and so matches far more than was meant.
 */
export function isVaultAnswer(error: unknown, status: number, text: string | RegExp): boolean {
  if (!(error instanceof VaultError) || error.context.status !== status) return false;
  const answered = error.context.vaultError;
  if (typeof answered !== 'string') return false;
  return typeof text === 'string' ? answered === text : text.test(answered);
}

interface HttpLikeError {
  response?: { statusCode?: number; body?: { errors?: unknown } };
  code?: string;
}

/** Map a failed Vault call (an answer other than 200/204, or a network error) to a typed, secret-free error. */
export function toVaultError(error: unknown, operation: string, path: string): RotatorError {
  if (error instanceof RotatorError) return error;
  const http = (error ?? {}) as HttpLikeError;
  const status = http.response?.statusCode;
  const errors = http.response?.body?.errors;
  const text =
    Array.isArray(errors) && typeof errors[0] === 'string' ? errors[0].replace(/\s+/g, ' ').trim() : '';
  // Vault's own error text rides along so callers can key on Vault's exact answers, not on our message.
  const context: ErrorContext = {
    operation,
    path,
    status: status ?? null,
    code: http.code ?? null,
    vaultError: text,
  };
  if (status === undefined && TLS_VERIFICATION_CODES.has(http.code ?? '')) {
    return new VaultTlsError(
      `Vault ${operation} ${path} failed: the server certificate did not verify (${http.code}); check vault.address and vault.caBundlePem`,
      { context },
    );
  }
  if (status === undefined) {
    return new VaultUnavailableError(`Vault ${operation} ${path} failed: ${http.code ?? 'network error'}`, {
      context,
    });
  }
  const message = `Vault ${operation} ${path} returned ${status}${text ? `: ${text}` : ''}`;
  if (status >= 300 && status < 400) {
    return new VaultRedirectRefusedError(
      `Vault ${operation} ${path} answered a redirect (${status}); redirects are not followed, so the token never leaves vault.address`,
      { context },
    );
  }
  if (status === 503 && /sealed/i.test(text)) return new VaultSealedError(message, { context });
  if (status === 412) return new VaultIndexNotPresentError(message, { context });
  if (status === 429 || status >= 500) return new VaultUnavailableError(message, { context });
  if (status === 403 && /invalid token/i.test(text)) return new VaultInvalidTokenError(message, { context });
  if (status === 403) return new VaultPermissionDeniedError(message, { context });
  if (status === 400 && /not allowed by this role|not allowed in this role|^role requires /i.test(text)) {
    return new VaultNotAllowedByRoleError(message, { context });
  }
  if (status === 404 || /no handler for route/.test(text))
    return new VaultNotFoundError(message, { context });
  return new VaultBadRequestError(message, { context });
}
