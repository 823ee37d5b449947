import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { NodeRole } from './certificates/names';
import type { RotationTelemetry } from './certificates/ports';
import type { TokenRotationTelemetry } from './vault-token/context';

export const SERVICE_NAME = 'nomad-rotator';
export const METRICS_NAMESPACE = 'NomadRotator';

/** Metric names, shared by the code that emits them and the alarms in infra/. */
export const METRIC = {
  pushSucceeded: 'PushSucceeded',
  pushFailed: 'PushFailed',
  minHoursToExpiry: 'MinHoursToExpiry',
  nodesExpiringSoon: 'NodesExpiringSoon',
  rolloutStuck: 'RolloutStuck',
  gossipRotationFailed: 'GossipRotationFailed',
  nodeRefused: 'NodeRefused',
  tokenRotationFailed: 'TokenRotationFailed',
  caDaysToExpiry: 'CaDaysToExpiry',
} as const;

/** The issuing CA's remaining life, reported on every certificate tick (alarmed in infra/). */
export interface IssuerTelemetry {
  caDaysToExpiry(cluster: string, days: number): void;
}

export function createLogger(component: string): Logger {
  return new Logger({ serviceName: SERVICE_NAME, persistentKeys: { component } });
}

/** Rotation telemetry as CloudWatch EMF, one metric line per event with the cluster as dimension. */
export class PowertoolsTelemetry implements RotationTelemetry, IssuerTelemetry {
  constructor(
    private readonly metrics: Metrics = new Metrics({
      namespace: METRICS_NAMESPACE,
      serviceName: SERVICE_NAME,
    }),
  ) {}

  pushSucceeded(cluster: string, _role: NodeRole): void {
    this.#emit(cluster, METRIC.pushSucceeded, MetricUnit.Count, 1);
  }

  pushFailed(cluster: string, _role: NodeRole): void {
    this.#emit(cluster, METRIC.pushFailed, MetricUnit.Count, 1);
  }

  rolloutStuck(cluster: string): void {
    this.#emit(cluster, METRIC.rolloutStuck, MetricUnit.Count, 1);
  }

  gossipRotationFailed(cluster: string): void {
    this.#emit(cluster, METRIC.gossipRotationFailed, MetricUnit.Count, 1);
  }

  nodeRefused(cluster: string, _role: NodeRole): void {
    this.#emit(cluster, METRIC.nodeRefused, MetricUnit.Count, 1);
  }

  fleetExpiry(cluster: string, minHoursToExpiry: number | undefined, nodesExpiringSoon: number): void {
    // No value when the fleet is empty: the alarm treats missing data as breaching.
    if (minHoursToExpiry !== undefined)
      this.#emit(cluster, METRIC.minHoursToExpiry, MetricUnit.Count, minHoursToExpiry);
    this.#emit(cluster, METRIC.nodesExpiringSoon, MetricUnit.Count, nodesExpiringSoon);
  }

  caDaysToExpiry(cluster: string, days: number): void {
    this.#emit(cluster, METRIC.caDaysToExpiry, MetricUnit.Count, Math.round(days * 100) / 100);
  }

  #emit(
    cluster: string,
    name: string,
    unit: (typeof MetricUnit)[keyof typeof MetricUnit],
    value: number,
  ): void {
    const single = this.metrics.singleMetric();
    single.addDimension('cluster', cluster);
    single.addMetric(name, unit, value);
  }
}

/** The TokenRotationFailed metric as CloudWatch EMF with the cluster as dimension (alarmed in infra/). */
export class PowertoolsTokenRotationTelemetry implements TokenRotationTelemetry {
  constructor(
    private readonly metrics: Metrics = new Metrics({
      namespace: METRICS_NAMESPACE,
      serviceName: SERVICE_NAME,
    }),
  ) {}

  tokenRotationFailed(cluster: string): void {
    const single = this.metrics.singleMetric();
    single.addDimension('cluster', cluster);
    single.addMetric(METRIC.tokenRotationFailed, MetricUnit.Count, 1);
  }
}
