import type { NodeRole } from '../../shared/certificates/names';
import type { RotationTelemetry } from '../../shared/certificates/ports';
import type { Logger } from '../../shared/logger';
import type { IssuerTelemetry } from '../../shared/observability';

export interface LogLine {
  level: 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';
  message: string;
  timestamp: string;
  [key: string]: unknown;
}

/**
 * The world's logger: structured lines like Powertools writes them, kept in memory so tests can scan
 * every line for secrets, and optionally echoed (the demo shows warnings and errors).
 */
export class RecordingLogger implements Logger {
  readonly lines: LogLine[] = [];

  constructor(private readonly echo: (line: LogLine) => void = () => {}) {}

  debug(message: string, ...extra: Record<string, unknown>[]): void {
    this.#record('DEBUG', message, extra);
  }

  info(message: string, ...extra: Record<string, unknown>[]): void {
    this.#record('INFO', message, extra);
  }

  warn(message: string, ...extra: Record<string, unknown>[]): void {
    this.#record('WARN', message, extra);
  }

  error(message: string, ...extra: Record<string, unknown>[]): void {
    this.#record('ERROR', message, extra);
  }

  #record(level: LogLine['level'], message: string, extra: Record<string, unknown>[]): void {
    const line: LogLine = {
      level,
      message,
      timestamp: new Date().toISOString(),
      ...Object.assign({}, ...extra),
    };
    // Serialise now, as a log sink would: later mutation of the objects must not change the record.
    this.lines.push(JSON.parse(JSON.stringify(line)) as LogLine);
    this.echo(line);
  }
}

export interface MetricPoint {
  name: string;
  cluster: string;
  value: number;
  role?: NodeRole;
}

/** Telemetry kept as data points, for assertions and the demo's summary. */
export class RecordingTelemetry implements RotationTelemetry, IssuerTelemetry {
  readonly points: MetricPoint[] = [];

  pushSucceeded(cluster: string, role: NodeRole): void {
    this.points.push({ name: 'PushSucceeded', cluster, value: 1, role });
  }

  pushFailed(cluster: string, role: NodeRole): void {
    this.points.push({ name: 'PushFailed', cluster, value: 1, role });
  }

  rolloutStuck(cluster: string): void {
    this.points.push({ name: 'RolloutStuck', cluster, value: 1 });
  }

  gossipRotationFailed(cluster: string): void {
    this.points.push({ name: 'GossipRotationFailed', cluster, value: 1 });
  }

  nodeRefused(cluster: string, role: NodeRole): void {
    this.points.push({ name: 'NodeRefused', cluster, value: 1, role });
  }

  fleetExpiry(cluster: string, minHoursToExpiry: number | undefined, nodesExpiringSoon: number): void {
    if (minHoursToExpiry !== undefined)
      this.points.push({ name: 'MinHoursToExpiry', cluster, value: minHoursToExpiry });
    this.points.push({ name: 'NodesExpiringSoon', cluster, value: nodesExpiringSoon });
  }

  caDaysToExpiry(cluster: string, days: number): void {
    this.points.push({ name: 'CaDaysToExpiry', cluster, value: days });
  }

  total(name: string): number {
    return this.points.filter((point) => point.name === name).reduce((sum, point) => sum + point.value, 0);
  }
}
