import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { CreateSecretCommand } from '@aws-sdk/client-secrets-manager';
import { DescribeInstanceInformationCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';
import { rotateCertsHandler } from '../../functions/rotate-certs';
import { createStateTable, startDynamo } from '../../local/aws/dynamodb';
import { startSecretsManagerEmulator } from '../../local/aws/secrets-manager';
import { RecordingLogger } from '../../local/world/recording';
import { x509 } from '../../shared/certificates/x509';
import { parseClusterConfig } from '../../shared/config';
import type { IssuerTelemetry } from '../../shared/observability';
import { Runtime } from '../../shared/runtime';
import { testInventory } from '../helpers/inventory';
import { UNCHECKED_TRUST_ANCHORS } from '../helpers/trust-anchors';
import {
  mintSeedToken,
  SERVER_ID_HEADER,
  signServerCertificate,
  startBootstrappedVault,
} from '../helpers/vault-access-world';

const DAY = 86_400_000;
const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

class RecordingIssuerTelemetry implements IssuerTelemetry {
  readonly points: { cluster: string; days: number }[] = [];

  caDaysToExpiry(cluster: string, days: number): void {
    this.points.push({ cluster, days: Math.round(days * 100) / 100 });
  }
}

/** A bootstrapped Vault, the token secret, an empty state table and an SSM that knows no node. */
async function tickWorld() {
  const vault = await startBootstrappedVault();
  stops.push(() => vault.emulator.stop());
  await vault.bootstrap();
  const secretsManager = await startSecretsManagerEmulator({ clock: vault.clock });
  stops.push(() => secretsManager.stop());
  const secrets = secretsManager.client();
  await secrets.send(
    new CreateSecretCommand({
      Name: 'nomad/test/vault-token',
      SecretString: JSON.stringify(await mintSeedToken(vault.root, vault.emulator.rootToken)),
    }),
  );
  const dynamo = await startDynamo();
  let dynamoRunning = true;
  const stopStateTable = async () => {
    dynamoRunning = false;
    await dynamo.stop();
  };
  stops.push(async () => {
    if (dynamoRunning) await dynamo.stop();
  });
  await createStateTable(dynamo.client(), 'state');
  const ssm = mockClient(SSMClient);
  stops.push(async () => ssm.restore());
  ssm.on(DescribeInstanceInformationCommand).resolves({ InstanceInformationList: [] });
  const ec2 = mockClient(EC2Client);
  stops.push(async () => ec2.restore());
  ec2.on(DescribeInstancesCommand).resolves({ Reservations: [] });
  const issuerTelemetry = new RecordingIssuerTelemetry();
  const logger = new RecordingLogger();
  const unused = { region: 'us-east-1', endpoint: 'http://127.0.0.1:9' };
  const runtime = new Runtime(
    {
      tableName: 'state',
      eventBusName: 'unused',
      documents: { prepare: 'unused-prepare', install: 'unused-install', gossip: 'unused-gossip' },
      clusters: [
        parseClusterConfig({
          name: 'test',
          inventory: testInventory('test'),
          certificates: UNCHECKED_TRUST_ANCHORS,
          vault: {
            address: vault.emulator.address,
            tokenSecretId: 'nomad/test/vault-token',
            tokenRotation: { iamServerIdHeader: SERVER_ID_HEADER },
          },
        }),
      ],
    },
    {
      secretsManager: secrets,
      dynamodb: dynamo.client(),
      ec2: new EC2Client(unused),
      ssm: new SSMClient(unused),
      eventBridge: new EventBridgeClient(unused),
    },
    { clock: vault.clock, logger, issuerTelemetry, vaultAttempts: 1 },
  );
  const tick = () =>
    rotateCertsHandler(runtime)(
      { tick: true },
      { getRemainingTimeInMillis: () => 60_000, awsRequestId: `tick-${vault.clock.now()}` },
    );
  const intermediate = await vault.root.read<{ data: { certificate: string } }>('pki_int/cert/ca');
  const caNotAfter = new x509.X509Certificate(intermediate.data.certificate).notAfter.getTime();
  return { vault, issuerTelemetry, tick, caNotAfter, logger, stopStateTable };
}

describe('CaDaysToExpiry: the issuing CA’s remaining life on every certificate tick', () => {
  it('reports the days until the intermediate that signs expires, tick after tick', async () => {
    const { vault, issuerTelemetry, tick, caNotAfter } = await tickWorld();
    const expectedNow = Math.round(((caNotAfter - vault.clock.now()) / DAY) * 100) / 100;

    await tick();
    vault.clock.advance(1800 * DAY);
    await tick();

    expect(expectedNow).toBeCloseTo(1825, 0);
    expect(issuerTelemetry.points).toEqual([
      { cluster: 'test', days: expectedNow },
      { cluster: 'test', days: Math.round((expectedNow - 1800) * 100) / 100 },
    ]);
  });

  it('is reported even when the tick itself fails, since the CA is read first', async () => {
    const { vault, issuerTelemetry, tick, stopStateTable } = await tickWorld();
    await stopStateTable();

    const failed = await tick().catch((error) => error);

    expect(failed).toBeInstanceOf(Error);
    expect(issuerTelemetry.points).toEqual([{ cluster: 'test', days: expect.any(Number) }]);
    expect(vault.emulator.requestLog.some((entry) => entry.path === 'pki_int/cert/ca')).toBe(true);
  });

  it('goes missing, with a warning and the tick still done, when the CA cannot be read', async () => {
    const { vault, issuerTelemetry, tick, logger } = await tickWorld();
    vault.emulator.answerWithError('pki_int/cert/ca', 500, 'internal error');

    const result = await tick();

    expect(result).toMatchObject({ action: 'tick', reports: [{ cluster: 'test', leaseHeld: true }] });
    expect(issuerTelemetry.points).toEqual([]);
    expect(logger.lines.some((line) => line.message === 'could not read the issuing CA certificate')).toBe(
      true,
    );
  });
});

describe('signing near the end of the issuing CA (leaf_not_after_behavior=err)', () => {
  it("refuses a leaf that would outlive the CA with Vault's message, and signs a shorter one", async () => {
    const { vault, caNotAfter } = await tickWorld();
    vault.clock.set(caNotAfter - 30 * 60_000);
    const root = vault.client(vault.emulator.rootToken);

    const refused = await signServerCertificate(root).catch((error) => error);

    // Both times are whole seconds here, which Go's RFC3339Nano prints without a fraction.
    const notAfter = new Date(vault.clock.now() + 3_600_000).toISOString().replace('.000Z', 'Z');
    const caEnd = new Date(caNotAfter).toISOString().replace('.000Z', 'Z');
    expect(refused.message).toContain(
      `400: cannot satisfy request, as TTL would result in notAfter of ${notAfter} that is beyond the expiration of the CA certificate at ${caEnd}`,
    );
    vault.clock.set(caNotAfter - 3 * 3_600_000);
    await expect(signServerCertificate(root)).resolves.toMatchObject({ serial: expect.any(String) });
  });
});
