import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EC2Client } from '@aws-sdk/client-ec2';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SSMClient } from '@aws-sdk/client-ssm';
import { type FunctionUrlResponse, manualOpsHandler } from '../../functions/manual-ops';
import type { CertificateRotation } from '../../shared/certificates/rotation';
import { Runtime } from '../../shared/runtime';
import type { StateStore } from '../../shared/state/store';
import { deliverCommand, type FakeClusterHarness } from './fake-cluster';

/** Endpoints nothing listens on: the handler's manual path must reach AWS only through the harness. */
const UNREACHABLE = { region: 'us-east-1', endpoint: 'http://127.0.0.1:9' };

/** The service runtime with the harness's rotation and store in place of the AWS- and Vault-backed ones. */
class HarnessRuntime extends Runtime {
  override readonly table: StateStore;

  constructor(private readonly harness: FakeClusterHarness) {
    super(
      {
        tableName: 'unused',
        eventBusName: 'unused',
        documents: { prepare: 'unused-prepare', install: 'unused-install', gossip: 'unused-gossip' },
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
    this.table = harness.table;
  }

  override rotation(): CertificateRotation {
    return this.harness.rotation();
  }
}

/** The session an operator role's signed request comes from, as Lambda's IAM auth reports it. */
export const OPERATOR_SESSION_ARN = 'arn:aws:sts::123456789012:assumed-role/nomad-operator/alice';

/** A function URL event (payload 2.0) as Lambda builds it for a request `userArn` signed. */
export function functionUrlEvent(body: unknown, userArn = OPERATOR_SESSION_ARN): unknown {
  return {
    version: '2.0',
    rawPath: '/',
    headers: { 'content-type': 'application/json' },
    requestContext: {
      accountId: '123456789012',
      authorizer: { iam: { userArn, accountId: userArn.split(':')[4], accessKey: 'ASIATEST' } },
      http: { method: 'POST', path: '/' },
    },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    isBase64Encoded: false,
  };
}

/** Call manual-ops with an event as it arrives (a function URL event, or anything a direct Invoke sends). */
export function callManualOps(
  harness: FakeClusterHarness,
  event: unknown,
  remainingTimeMs = 60_000,
): Promise<FunctionUrlResponse> {
  return manualOpsHandler(new HarnessRuntime(harness))(event, {
    getRemainingTimeInMillis: () => remainingTimeMs,
    awsRequestId: `manual-${harness.clock.now()}`,
  });
}

/** A manual request by the operator CLI (signed by OPERATOR_SESSION_ARN); a refusal throws its message. */
export async function invokeManualOps(
  harness: FakeClusterHarness,
  payload: unknown,
  remainingTimeMs = 60_000,
): Promise<unknown> {
  const response = await callManualOps(harness, functionUrlEvent(payload), remainingTimeMs);
  const body = JSON.parse(response.body) as { errorMessage?: string };
  if (response.statusCode !== 200) throw new Error(`${response.statusCode}: ${body.errorMessage}`);
  return body;
}

const finishedCommands = new WeakMap<FakeClusterHarness, Set<string>>();

/**
 * Nodes finish every command sent so far and each command's event is delivered, until none is left.
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
      await harness.fleet.complete(command);
      await deliverCommand(harness, command.commandId);
    }
  }
  throw new Error('the fake cluster did not settle within 100 rounds');
}
