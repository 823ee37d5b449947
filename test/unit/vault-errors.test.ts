import { describe, expect, it } from 'vitest';
import {
  toVaultError,
  VaultBadRequestError,
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
