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

/** After one rotation the seed is AWSPREVIOUS: the next rotation's finishSecret has it revoke itself. */
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

describe('finishSecret: the retired token revokes itself', () => {
  it('revokes the retired token with its own identity, the admin login holding no power over it', async () => {
    const current = await worldWithSeedDueForRevocation();

    await current.rotate();

    expect(revocationOutcome(current)).toBe('revoked');
    expect(await tokenIsValid(current.client(), current.seed.token)).toBe(false);
    const revokes = current.emulator.requestLog.filter((entry) => entry.path.startsWith('auth/token/revoke'));
    expect(new Set(revokes.map((entry) => entry.path))).toEqual(new Set(['auth/token/revoke-self']));
  });

  it('treats a token already revoked (403 "invalid token") as revoked, without an alarm', async () => {
    const current = await worldWithSeedDueForRevocation();
    await current.root.write('auth/token/revoke', { token: current.seed.token }, current.emulator.rootToken);

    await current.rotate();

    expect(current.handlerErrors).toEqual([]);
    expect(revocationOutcome(current)).toBe('revoked');
    expect(current.telemetry.failures).toEqual([]);
  });

  it('treats an expired token as revoked, and the next rotation does not try again', async () => {
    const current = await worldWithSeedDueForRevocation();
    current.clock.advance(25 * HOUR);

    await current.rotate();
    await current.rotate();

    expect(current.handlerErrors).toEqual([]);
    expect(revocationOutcome(current)).toBe('revoked');
    expect(current.telemetry.failures).toEqual([]);
  });

  it.each([
    ['403 permission denied without "invalid token"', 403, '1 error occurred:\n\t* permission denied\n\n'],
    ['500', 500, 'internal error'],
  ])(
    'does not take %s for "already revoked": it alarms and the token stays valid',
    async (_what, status, text) => {
      const current = await worldWithSeedDueForRevocation();
      // Two answers: the admin login's own revoke-self at the end of createSecret takes the first.
      current.emulator.answerWithError('auth/token/revoke-self', status, text, 2);

      await current.rotate();

      expect(revocationOutcome(current)).toBe('failed');
      expect(current.telemetry.failures).toEqual(['test']);
      expect(await tokenIsValid(current.client(), current.seed.token)).toBe(true);
    },
  );
});
