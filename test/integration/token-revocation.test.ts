import { afterEach, describe, expect, it } from 'vitest';
import {
  startTokenRotationWorld,
  type TokenRotationWorld,
  tokenIsValid,
} from '../helpers/vault-access-world';

let world: TokenRotationWorld | undefined;
afterEach(async () => {
  await world?.stop();
  world = undefined;
});

const HOUR = 3_600_000;

/** After one rotation the seed is AWSPREVIOUS: the next rotation's finishSecret revokes it by accessor. */
async function worldWithSeedDueForRevocation(): Promise<TokenRotationWorld> {
  world = await startTokenRotationWorld();
  await world.rotate();
  return world;
}

function revocationOutcome(current: TokenRotationWorld): 'revoked' | 'failed' | undefined {
  const finish = current.logger.lines.filter((line) => line.level === 'INFO' && line.step === 'finishSecret');
  const last = finish.at(-1)?.message ?? '';
  if (/revoked the token of version/.test(last)) return 'revoked';
  if (/revoking the token of version .* failed/.test(last)) return 'failed';
  return undefined;
}

describe('finishSecret revoking the retired token by accessor', () => {
  it('treats a token already revoked (200, warning "No token found with this accessor") as revoked', async () => {
    const current = await worldWithSeedDueForRevocation();
    await current.root.write('auth/token/revoke', { token: current.seed.token }, current.emulator.rootToken);

    await current.rotate();

    expect(current.handlerErrors).toEqual([]);
    expect(revocationOutcome(current)).toBe('revoked');
    expect(current.telemetry.failures).toEqual([]);
  });

  it('treats an expired token whose accessor Vault still holds (400 "token not found") as revoked', async () => {
    const current = await worldWithSeedDueForRevocation();
    current.clock.advance(25 * HOUR);

    await current.rotate();

    expect(current.handlerErrors).toEqual([]);
    expect(revocationOutcome(current)).toBe('revoked');
    expect(current.telemetry.failures).toEqual([]);
  });

  it.each([
    ['403 permission denied', 403, '1 error occurred:\n\t* permission denied\n\n'],
    ['500', 500, 'internal error'],
    ['400 missing accessor', 400, 'missing accessor'],
  ])(
    'does not take %s for "already revoked": it alarms and the token stays valid',
    async (_what, status, text) => {
      const current = await worldWithSeedDueForRevocation();
      current.emulator.answerWithError('auth/token/revoke-accessor', status, text);

      await current.rotate();

      expect(revocationOutcome(current)).toBe('failed');
      expect(current.telemetry.failures).toEqual(['test']);
      expect(await tokenIsValid(current.client(), current.seed.token)).toBe(true);
    },
  );
});
