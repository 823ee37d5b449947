import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../local/clock';
import { renewIfDue } from '../../shared/vault-token/tokens';
import {
  mintSeedToken,
  signServerCertificate,
  startTokenRotationWorld,
  type TokenRotationWorld,
  tokenIsValid,
} from '../helpers/vault-access-world';

const HOUR = 3_600_000;

let world: TokenRotationWorld | undefined;
afterEach(async () => {
  await world?.stop();
  world = undefined;
});

describe('the issuing path and the rotated token', () => {
  it('keeps signing across rotations: cached old token → 403 → re-read AWSCURRENT → success', async () => {
    world = await startTokenRotationWorld();
    const { client, tokens } = world.runtime.vault('test');
    await signServerCertificate(client);
    expect(await tokens.token()).toBe(world.seed.token);

    // Two rotations revoke the seed while the issuing client still holds it in its cache.
    await world.rotate();
    await world.rotate();
    expect(await tokenIsValid(world.client(), world.seed.token)).toBe(false);
    expect(await tokens.token()).toBe(world.seed.token);

    const signed = await signServerCertificate(client);

    expect(signed.certificatePem).toContain('BEGIN CERTIFICATE');
    expect(await tokens.token()).toBe((await world.valueAt('AWSCURRENT')).token);
  });

  it('keeps the periodic token alive across period boundaries with renew-self', async () => {
    const clock = new ManualClock(Date.parse('2025-03-01T00:00:00Z'));
    world = await startTokenRotationWorld({ clock });
    const { client, tokens } = world.runtime.vault('test');
    const neglected = await mintSeedToken(world.root, world.emulator.rootToken);

    expect(await renewIfDue(client, await tokens.token())).toMatchObject({ renewed: false });
    clock.advance(13 * HOUR);
    expect(await renewIfDue(client, await tokens.token())).toEqual({ renewed: true, ttl: 86_400 });
    clock.advance(13 * HOUR);
    expect(await renewIfDue(client, await tokens.token())).toEqual({ renewed: true, ttl: 86_400 });

    expect(await tokens.token()).toBe(world.seed.token);
    await expect(signServerCertificate(client)).resolves.toMatchObject({ serial: expect.any(String) });
    expect(await tokenIsValid(world.client(), neglected.token)).toBe(false);
  });
});
