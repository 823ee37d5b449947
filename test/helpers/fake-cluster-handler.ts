import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EC2Client } from '@aws-sdk/client-ec2';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SSMClient } from '@aws-sdk/client-ssm';
import { rotateCertsHandler } from '../../functions/rotate-certs';
import type { CertificateRotation } from '../../shared/certificates/rotation';
import { parseRoutingKey } from '../../shared/rollout/routing';
import { Runtime } from '../../shared/runtime';
import type { FakeClusterHarness } from './fake-cluster';

const FAR = Number.MAX_SAFE_INTEGER;
/** Endpoints nothing listens on: the handler's manual path must reach AWS only through the harness. */
const UNREACHABLE = { region: 'us-east-1', endpoint: 'http://127.0.0.1:9' };

/** The service runtime with the harness's rotation in place of the AWS- and Vault-backed one. */
class HarnessRuntime extends Runtime {
  constructor(private readonly harness: FakeClusterHarness) {
    super(
      {
        tableName: 'unused',
        eventBusName: 'unused',
        documents: { prepare: 'unused-prepare', install: 'unused-install' },
        clusters: [harness.cluster],
      },
      {
        dynamodb: new DynamoDBClient(UNREACHABLE),
        ec2: new EC2Client(UNREACHABLE),
        ssm: new SSMClient(UNREACHABLE),
        eventBridge: new EventBridgeClient(UNREACHABLE),
        secretsManager: new SecretsManagerClient(UNREACHABLE),
      },
      { clock: harness.clock, logger: harness.logger, telemetry: harness.telemetry },
    );
  }

  override rotation(): CertificateRotation {
    return this.harness.rotation();
  }
}

/** Invoke rotate-certs as the manual invoke (and so the operator CLI) does, against the harness. */
export function invokeRotateCerts(
  harness: FakeClusterHarness,
  payload: unknown,
  remainingTimeMs = 60_000,
): Promise<unknown> {
  return rotateCertsHandler(new HarnessRuntime(harness))(payload, {
    getRemainingTimeInMillis: () => remainingTimeMs,
    awsRequestId: `manual-${harness.clock.now()}`,
  });
}

const finishedCommands = new WeakMap<FakeClusterHarness, Set<string>>();

/**
 * Nodes finish every command sent so far and each invocation event is delivered, until none is left.
 * A command runs once per harness: a prepare run again would give its node keys no CSR was signed for.
 */
export async function settleFakeCluster(harness: FakeClusterHarness): Promise<void> {
  const finished = finishedCommands.get(harness) ?? new Set<string>();
  finishedCommands.set(harness, finished);
  for (let round = 0; round < 100; round += 1) {
    const open = harness.fleet.commands.filter((command) => !finished.has(command.commandId));
    if (open.length === 0) return;
    for (const command of open) {
      finished.add(command.commandId);
      for (const { commandId, instanceId } of await harness.fleet.complete(command)) {
        const outcome = await harness.fleet.invocation(commandId, instanceId);
        await harness.rotation().onInvocation(instanceId, parseRoutingKey(outcome.comment)!, outcome, FAR);
      }
    }
  }
  throw new Error('the fake cluster did not settle within 100 rounds');
}
