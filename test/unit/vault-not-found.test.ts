import { describe, expect, it } from 'vitest';
import { toVaultError, VaultBadRequestError, VaultNotFoundError } from '../../shared/vault/errors';

const http = (statusCode: number, text?: string) => ({
  response: { statusCode, body: { errors: text === undefined ? [] : [text] } },
});
const noRoute = 'no handler for route "pki/ca/pem". route entry not found.';

describe('a Vault path with nothing at it', () => {
  it.each([
    ['a 404 without text (an item not written yet)', http(404)],
    ['a 404 with no handler for route (no such mount)', http(404, noRoute)],
    ['no handler for route under another status (older Vault)', http(400, noRoute)],
  ])('is a VaultNotFoundError, a bad request no retry fixes: %s', (_case, raw) => {
    const error = toVaultError(raw, 'read', 'pki/ca/pem');

    expect(error).toBeInstanceOf(VaultNotFoundError);
    expect(error).toBeInstanceOf(VaultBadRequestError);
    expect(error.retryable).toBe(false);
  });
});
