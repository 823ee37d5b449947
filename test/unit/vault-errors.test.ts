import { describe, expect, it } from 'vitest';
import {
  isVaultAnswer,
  toVaultError,
  VaultBadRequestError,
  VaultIndexNotPresentError,
  VaultInvalidTokenError,
  VaultNotAllowedByRoleError,
  VaultPermissionDeniedError,
  VaultSealedError,
  VaultUnavailableError,
} from '../../shared/vault/errors';

const http = (statusCode: number, text?: string) => ({
  response: { statusCode, body: { errors: text === undefined ? [] : [text] } },
  config: { headers: { 'X-Vault-Token': 'hvs.SECRETSECRETSECRETSECRET' } },
});

describe('Vault error mapping', () => {
  it.each([
    [http(503, 'Vault is sealed'), VaultSealedError, true],
    [http(500), VaultUnavailableError, true],
    [http(429), VaultUnavailableError, true],
    [{ code: 'ECONNREFUSED' }, VaultUnavailableError, true],
    [
      http(403, '2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n'),
      VaultInvalidTokenError,
      false,
    ],
    [http(403, '1 error occurred:\n\t* permission denied\n\n'), VaultPermissionDeniedError, false],
    [http(400, 'common name evil.example.org not allowed by this role'), VaultNotAllowedByRoleError, false],
    [http(400, 'role requires keys of type ec'), VaultNotAllowedByRoleError, false],
    [
      http(400, "role requires a minimum of a 384-bit key, but CSR's key is 256 bits"),
      VaultNotAllowedByRoleError,
      false,
    ],
    [http(412, 'required index state not present'), VaultIndexNotPresentError, true],
    [http(400, 'unknown role: nomad-server'), VaultBadRequestError, false],
  ])('maps %o to a typed error with the right retry verdict', (raw, type, retryable) => {
    const error = toVaultError(raw, 'write', 'pki_int/sign/nomad-cluster');

    expect(error).toBeInstanceOf(type);
    expect(error.retryable).toBe(retryable);
  });

  it('keeps the token out of the message, the context and the cause', () => {
    const error = toVaultError(http(403, 'permission denied'), 'read', 'auth/token/lookup-self');

    expect(
      JSON.stringify({ message: error.message, context: error.context, cause: error.cause }),
    ).not.toContain('hvs.');
  });
});

describe('isVaultAnswer', () => {
  it("matches Vault's own status and text, never the path in our message", () => {
    const unknownAccessor = toVaultError(http(400, 'token not found'), 'write', 'auth/token/revoke-accessor');
    const missing = toVaultError(http(400, 'missing accessor'), 'write', 'auth/token/revoke-accessor');
    const route = toVaultError(
      http(404, 'no handler for route "pki_int/revoke". route entry not found.'),
      'write',
      'pki_int/revoke',
    );

    expect(isVaultAnswer(unknownAccessor, 400, 'token not found')).toBe(true);
    expect(isVaultAnswer(missing, 400, 'token not found')).toBe(false);
    expect(isVaultAnswer(missing, 400, /accessor/)).toBe(true);
    expect(isVaultAnswer(route, 400, /not found/)).toBe(false);
    expect(isVaultAnswer(new Error('token not found'), 400, 'token not found')).toBe(false);
  });
});
