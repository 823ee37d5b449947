import { GetSecretValueCommand } from '@aws-sdk/client-secrets-manager';
import { afterEach, describe, expect, it } from 'vitest';
import { TokenRotationError } from '../../shared/vault-token/rotation';
import type { TokenSecret } from '../../shared/vault-token/tokens';
import { findSecrets } from '../helpers/secret-scan';
import {
  INTRUDER_KEY_ID,
  signServerCertificate,
  startTokenRotationWorld,
  type TokenRotationWorld,
  tokenIsValid,
} from '../helpers/vault-access-world';

let world: TokenRotationWorld | undefined;
afterEach(async () => {
  await world?.stop();
  world = undefined;
});

interface LookupSelf {
  data: {
    period?: number;
    policies: string[];
    orphan: boolean;
    display_name: string;
    meta: Record<string, string> | null;
  };
}

/** Every token and accessor the world has seen, and everything it produced, scanned for them. */
function assertNothingSecretLeaked(current: TokenRotationWorld, known: TokenSecret[]): void {
  const secrets = known.flatMap(({ token, accessor }) => [token, accessor]);
  const findings = findSecrets(
    {
      logs: current.logger.lines,
      errors: current.handlerErrors.map((error) =>
        error instanceof Error
          ? {
              name: error.name,
              message: error.message,
              stack: error.stack,
              context: (error as TokenRotationError).context,
            }
          : error,
      ),
      metrics: current.telemetry.failures,
    },
    secrets,
  );
  expect(findings).toEqual([]);
}

function versionWith(stages: Record<string, string[]>, stage: string): string | undefined {
  return Object.entries(stages).find(([, labels]) => labels.includes(stage))?.[0];
}

describe('Vault token rotation through RotateSecret', () => {
  it('rotates to a working periodic token, keeps the previous one valid and revokes the one before', async () => {
    world = await startTokenRotationWorld();
    const vault = world.client();

    await world.rotate();
    const first = await world.valueAt('AWSCURRENT');
    await world.rotate();
    const second = await world.valueAt('AWSCURRENT');
    const previous = await world.valueAt('AWSPREVIOUS');

    expect(world.handlerErrors).toEqual([]);
    expect(new Set([world.seed.token, first.token, second.token]).size).toBe(3);
    expect(previous).toEqual(first);
    expect(await tokenIsValid(vault, second.token)).toBe(true);
    expect(await tokenIsValid(vault, first.token)).toBe(true);
    expect(await tokenIsValid(vault, world.seed.token)).toBe(false);
    const signed = await signServerCertificate(world.client(second.token));
    expect(signed.certificatePem).toContain('BEGIN CERTIFICATE');

    const { data } = await vault.read<LookupSelf>('auth/token/lookup-self', second.token);
    expect(data.period).toBe(86_400);
    expect(data.policies).toContain('tls-policy');
    expect(data.orphan).toBe(true);
    expect(data.display_name).toContain('nomad-rotator-test');
    expect(data.meta?.cluster).toBe('test');

    const stages = await world.stages();
    const pending = Object.values(stages).filter((labels) => labels.includes('AWSPENDING'));
    expect(pending.every((labels) => labels.includes('AWSCURRENT'))).toBe(true);
    expect(world.telemetry.failures).toEqual([]);
    assertNothingSecretLeaked(world, [world.seed, first, second]);
  });

  it('changes nothing when any step runs twice', async () => {
    world = await startTokenRotationWorld();
    const current = world;
    const snapshot = async () => {
      const stages = await current.stages();
      const values: Record<string, string | undefined> = {};
      for (const version of Object.keys(stages)) {
        try {
          values[version] = (
            await current.secrets.send(
              new GetSecretValueCommand({ SecretId: current.secretArn, VersionId: version }),
            )
          ).SecretString;
        } catch {
          values[version] = undefined;
        }
      }
      return { stages, values };
    };
    const differences: string[] = [];
    current.secretsManager.registerRotationFunction(
      'arn:aws:lambda:us-east-1:123456789012:function:nomad-rotator-rotate-token',
      async (event: unknown) => {
        await current.handler(event);
        const once = await snapshot();
        const again = await current.handler(event);
        const twice = await snapshot();
        if (JSON.stringify(once) !== JSON.stringify(twice))
          differences.push((event as { Step: string }).Step);
        return again;
      },
    );

    await current.rotate();
    await current.rotate();

    expect(differences).toEqual([]);
    const latest = await current.valueAt('AWSCURRENT');
    const before = await current.valueAt('AWSPREVIOUS');
    expect(await tokenIsValid(current.client(), latest.token)).toBe(true);
    expect(await tokenIsValid(current.client(), before.token)).toBe(true);
    expect(await tokenIsValid(current.client(), current.seed.token)).toBe(false);
  });

  it('returns early for a version that is already AWSCURRENT and refuses one that is not AWSPENDING', async () => {
    world = await startTokenRotationWorld();
    await world.rotate();
    const stages = await world.stages();
    const currentVersion = versionWith(stages, 'AWSCURRENT')!;
    const previousVersion = versionWith(stages, 'AWSPREVIOUS')!;

    for (const Step of ['createSecret', 'setSecret', 'testSecret', 'finishSecret']) {
      await expect(
        world.handler({ Step, SecretId: world.secretArn, ClientRequestToken: currentVersion }),
      ).resolves.toMatchObject({ outcome: 'already-current' });
    }
    const refused = world.handler({
      Step: 'createSecret',
      SecretId: world.secretArn,
      ClientRequestToken: previousVersion,
    });
    await expect(refused).rejects.toBeInstanceOf(TokenRotationError);
    await expect(refused).rejects.toThrow(`createSecret: version ${previousVersion} is not AWSPENDING`);
    expect(await world.stages()).toEqual(stages);
  });
});

describe('a failed Vault token rotation', () => {
  async function expectCleanFailure(current: TokenRotationWorld, step: string, reason: RegExp) {
    const failed = current.handlerErrors.at(-1);
    expect(failed).toBeInstanceOf(TokenRotationError);
    expect((failed as Error).message).toMatch(
      new RegExp(`^${step} of version [0-9a-f-]+ for cluster test failed: `),
    );
    expect((failed as Error).message).toMatch(reason);
    const currentValue = await current.valueAt('AWSCURRENT');
    expect(currentValue).toEqual(current.seed);
    const signed = await signServerCertificate(current.client(currentValue.token));
    expect(signed.certificatePem).toContain('BEGIN CERTIFICATE');
    expect(current.telemetry.failures).toContain('test');
    expect(current.logger.lines.some((line) => line.level === 'ERROR' && line.step === step)).toBe(true);
    const pending = await current.valueAt('AWSPENDING').catch(() => undefined);
    assertNothingSecretLeaked(current, pending ? [current.seed, pending] : [current.seed]);
  }

  it('fails cleanly when Vault is sealed during createSecret', async () => {
    world = await startTokenRotationWorld();
    world.emulator.seal();

    await world.rotate().catch(() => {});
    world.emulator.unseal();

    await expectCleanFailure(world, 'createSecret', /sealed/i);
  });

  it('fails cleanly when Vault refuses the admin login (another IAM principal)', async () => {
    world = await startTokenRotationWorld({ rotatorKeyId: INTRUDER_KEY_ID });

    await world.rotate().catch(() => {});

    await expectCleanFailure(world, 'createSecret', /auth\/aws\/login/);
  });

  it('fails cleanly in createSecret when the cluster asks the token role for another policy', async () => {
    world = await startTokenRotationWorld({
      clusterOverrides: { tokenRotation: { tokenPolicy: 'tls-policy-missing' } },
    });

    await world.rotate().catch(() => {});

    await expectCleanFailure(world, 'createSecret', /must be subset of the role's allowed policies/);
  });
});
