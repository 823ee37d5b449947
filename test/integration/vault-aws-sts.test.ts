import { afterEach, describe, expect, it } from 'vitest';
import { TokenRotationError } from '../../shared/vault-token/rotation';
import { startTokenRotationWorld, type TokenRotationWorld } from '../helpers/vault-access-world';

let world: TokenRotationWorld | undefined;
afterEach(async () => {
  await world?.stop();
  world = undefined;
});

const CHINA_STS = 'https://sts.cn-north-1.amazonaws.com.cn';

describe('the admin login against the STS of another partition', () => {
  it('rotates the token when the function signs for the STS that Vault replays the login to', async () => {
    world = await startTokenRotationWorld({
      spec: { stsEndpoint: CHINA_STS },
      clusterOverrides: { tokenRotation: { stsEndpoint: CHINA_STS } },
    });

    await world.rotate();

    expect(world.handlerErrors).toEqual([]);
    const clientConfig = await world.root.read<{ data: Record<string, unknown> }>(
      'auth/aws/config/client',
      world.emulator.rootToken,
    );
    expect(clientConfig.data).toMatchObject({ sts_endpoint: CHINA_STS, sts_region: 'cn-north-1' });
  });

  it('fails the login when the function signs for the global endpoint but Vault asks China’s STS', async () => {
    world = await startTokenRotationWorld({ spec: { stsEndpoint: CHINA_STS } });

    await world.rotate().catch(() => {});

    expect(world.handlerErrors.at(-1)).toBeInstanceOf(TokenRotationError);
    expect((world.handlerErrors.at(-1) as Error).message).toContain('SignatureDoesNotMatch');
  });
});
