import { afterEach, describe, expect, it } from 'vitest';
import { bootstrapVault } from '../../ops/vault-bootstrap/apply';
import { ValidationError } from '../../shared/errors';
import { awsIamLogin } from '../../shared/vault/aws-login';
import {
  credentialsFor,
  ROTATOR_KEY_ID,
  ROTATOR_ROLE_ARN,
  SERVER_ID_HEADER,
  startBootstrappedVault,
} from '../helpers/vault-access-world';

type World = Awaited<ReturnType<typeof startBootstrappedVault>>;

let world: World | undefined;
afterEach(async () => {
  await world?.emulator.stop();
  world = undefined;
});

const adminLogin = (current: World) =>
  awsIamLogin(current.client(), {
    mount: 'aws',
    role: 'nomad-rotator-admin',
    credentials: credentialsFor(ROTATOR_KEY_ID),
    serverIdHeader: SERVER_ID_HEADER,
    clock: current.clock,
  });

interface AwsRole {
  data: { resolve_aws_unique_ids: boolean; bound_iam_principal_id: string[] };
}

describe('resolve_aws_unique_ids on the admin role', () => {
  it('is on by default: the role binds the IAM unique id, so a recreated role of the same name is refused', async () => {
    world = await startBootstrappedVault();
    await world.bootstrap();
    const role = await world.root.read<AwsRole>(
      'auth/aws/role/nomad-rotator-admin',
      world.emulator.rootToken,
    );
    await expect(adminLogin(world)).resolves.toMatchObject({ token: expect.stringMatching(/^hvs\./) });

    world.emulator.iam.recreate(ROTATOR_ROLE_ARN);

    expect(role.data.resolve_aws_unique_ids).toBe(true);
    expect(role.data.bound_iam_principal_id).toEqual([expect.stringMatching(/^AROA[A-Z2-7]{17}$/)]);
    await expect(adminLogin(world)).rejects.toThrow(/does not belong to the role "nomad-rotator-admin"/);
  });

  it('lets the recreated role in again once the bound ARNs are written again (Vault resolves the new id)', async () => {
    world = await startBootstrappedVault();
    await world.bootstrap();
    world.emulator.iam.recreate(ROTATOR_ROLE_ARN);

    await world.root.write(
      'auth/aws/role/nomad-rotator-admin',
      { bound_iam_principal_arn: [ROTATOR_ROLE_ARN] },
      world.emulator.rootToken,
    );

    const admin = await adminLogin(world);
    const lookup = await world.root.write<{ data: { policies: string[] } }>(
      'auth/token/lookup',
      { token: admin.token },
      world.emulator.rootToken,
    );
    expect(lookup.data.policies).toEqual(['nomad-rotator-admin']);
  });

  it('says which IAM permission Vault lacks when it cannot resolve the ARN (iam:GetRole)', async () => {
    world = await startBootstrappedVault();
    world.emulator.iam.vaultCanGetRole = false;

    const refused = await world.bootstrap().catch((error) => error);

    expect(refused).toBeInstanceOf(ValidationError);
    expect(refused.message).toContain(
      `Vault could not resolve ${ROTATOR_ROLE_ARN} to IAM unique ids (resolveAwsUniqueIds)`,
    );
    expect(refused.message).toContain("Vault's own AWS credentials need iam:GetRole");
    expect(refused.message).toContain('unable to resolve ARN');
  });

  it('when turned off, binds the ARN: a recreated role of the same name still logs in', async () => {
    world = await startBootstrappedVault({ spec: { resolveAwsUniqueIds: false } });
    await world.bootstrap();

    world.emulator.iam.recreate(ROTATOR_ROLE_ARN);

    await expect(adminLogin(world)).resolves.toMatchObject({ token: expect.stringMatching(/^hvs\./) });
  });

  it('refuses to turn it off on an existing role before writing anything (Vault refuses that change)', async () => {
    world = await startBootstrappedVault();
    await world.bootstrap();
    const logged = world.emulator.requestLog.length;

    const refused = await bootstrapVault(world.root, world.emulator.rootToken, {
      adminRoleArns: [ROTATOR_ROLE_ARN],
      iamServerIdHeader: SERVER_ID_HEADER,
      resolveAwsUniqueIds: false,
    }).catch((error) => error);

    expect(refused).toBeInstanceOf(ValidationError);
    expect(refused.message).toContain('resolveAwsUniqueIds: false is refused, nothing was written');
    expect(world.emulator.requestLog.slice(logged).filter((entry) => entry.method !== 'GET')).toEqual([]);
  });
});
