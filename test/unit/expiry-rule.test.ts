import { Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { Key } from 'aws-cdk-lib/aws-kms';
import { describe, expect, it } from 'vitest';
import { Monitoring } from '../../infra/constructs/monitoring';
import { METRIC } from '../../shared/observability';
import { type FakeClusterHarness, fakeCluster } from '../helpers/fake-cluster';
import { settleFakeCluster } from '../helpers/fake-cluster-handler';

const HOUR = 3_600_000;

let harness: FakeClusterHarness;

/** The MinHoursToExpiry alarm's threshold as the stack deploys it for the harness's cluster. */
function deployedThreshold(): number {
  const stack = new Stack();
  new Monitoring(stack, 'Monitoring', {
    key: new Key(stack, 'Key'),
    clusters: [harness.cluster],
    functions: {},
    deadLetterQueues: {},
  });
  const alarms = Template.fromStack(stack).findResources('AWS::CloudWatch::Alarm', {
    Properties: { MetricName: METRIC.minHoursToExpiry },
  });
  const [alarm] = Object.values(alarms) as { Properties: { Threshold: number } }[];
  return alarm!.Properties.Threshold;
}

/** What the rotator reports for the fleet right now: the two expiry metrics. */
async function fleetExpiry(): Promise<{ minHoursToExpiry: number; nodesExpiringSoon: number }> {
  await harness.rotation().publishFleetExpiry();
  const last = (name: string) =>
    harness.telemetry.points.filter((point) => point.name === name).at(-1)!.value;
  return {
    minHoursToExpiry: last(METRIC.minHoursToExpiry),
    nodesExpiringSoon: last(METRIC.nodesExpiringSoon),
  };
}

describe('one "expiring soon" rule for the NodesExpiringSoon metric and the MinHoursToExpiry alarm', () => {
  it.each([{ certificates: {} }, { certificates: { ttl: '48h', renewWhenRemaining: 0.5, jitter: 0.2 } }])(
    'counts nodes as expiring soon exactly when the alarm breaches ($certificates)',
    async ({ certificates }) => {
      harness = await fakeCluster(
        [
          { instanceId: 'i-00000000000000001', role: 'server' },
          { instanceId: 'i-0000000000000000a', role: 'client' },
        ],
        { certificates },
      );
      await harness.rotation().tick({ deadline: Number.MAX_SAFE_INTEGER, owner: 'test', actor: 'schedule' });
      await settleFakeCluster(harness);
      const threshold = deployedThreshold();
      const notAfter = Math.min(
        ...(await harness.table.listNodes('prod')).map((node) => node.agent!.notAfter),
      );

      harness.clock.set(notAfter - (threshold + 0.05) * HOUR);
      const justAbove = await fleetExpiry();
      harness.clock.set(notAfter - (threshold - 0.05) * HOUR);
      const justBelow = await fleetExpiry();

      expect(justAbove.minHoursToExpiry).toBeGreaterThanOrEqual(threshold);
      expect(justAbove.nodesExpiringSoon).toBe(0);
      expect(justBelow.minHoursToExpiry).toBeLessThan(threshold);
      expect(justBelow.nodesExpiringSoon).toBe(2);
    },
  );
});
