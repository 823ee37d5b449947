import { afterEach, describe, expect, it, vi } from 'vitest';
import { METRICS_NAMESPACE, PowertoolsTelemetry } from '../../shared/observability';

/** Every EMF document Powertools printed during `act`, parsed. */
function emittedMetrics(act: () => void): Record<string, unknown>[] {
  const lines: string[] = [];
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    lines.push(String(chunk));
    return true;
  });
  try {
    act();
  } finally {
    spy.mockRestore();
  }
  return lines
    .flatMap((text) => text.split('\n'))
    .filter((line) => line.includes('"_aws"'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('rotation metrics as CloudWatch EMF (what the alarms watch)', () => {
  it('emits PushFailed in the NomadRotator namespace with the service and cluster dimensions', () => {
    const [document] = emittedMetrics(() => new PowertoolsTelemetry().pushFailed('prod-eu', 'client'));

    expect(document).toMatchObject({ PushFailed: 1, service: 'nomad-rotator', cluster: 'prod-eu' });
    const directive = (document!._aws as { CloudWatchMetrics: Record<string, unknown>[] })
      .CloudWatchMetrics[0];
    expect(directive).toMatchObject({
      Namespace: METRICS_NAMESPACE,
      Dimensions: [['service', 'cluster']],
      Metrics: [{ Name: 'PushFailed', Unit: 'Count' }],
    });
  });

  it('leaves MinHoursToExpiry out for an empty fleet so the alarm sees missing data', () => {
    const documents = emittedMetrics(() => new PowertoolsTelemetry().fleetExpiry('prod-eu', undefined, 0));

    expect(documents.some((document) => 'MinHoursToExpiry' in document)).toBe(false);
    expect(documents.find((document) => 'NodesExpiringSoon' in document)).toMatchObject({
      NodesExpiringSoon: 0,
    });
  });
});
