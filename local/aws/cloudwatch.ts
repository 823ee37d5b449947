import { AwsServiceError, JsonProtocolServer } from './json-protocol';

export type AlarmState = 'OK' | 'ALARM' | 'INSUFFICIENT_DATA';
const STATES: readonly AlarmState[] = ['OK', 'ALARM', 'INSUFFICIENT_DATA'];
const MAX_RECORDS = 100;

interface Alarm {
  name: string;
  description: string;
  state: AlarmState;
  reason: string;
  updatedAt: number;
}

export type CloudWatchEmulator = Awaited<ReturnType<typeof startCloudWatchEmulator>>;

/**
 * CloudWatch alarms for the local world over AWS JSON 1.0 (target GraniteServiceVersion20100801):
 * PutMetricAlarm creates one in INSUFFICIENT_DATA as CloudWatch does, SetAlarmState moves it, and
 * DescribeAlarms filters by names, prefix and state and pages as documented. No metric is evaluated:
 * an alarm changes state only when told to, which is all a test of what reads alarms needs.
 */
export async function startCloudWatchEmulator() {
  const alarms = new Map<string, Alarm>();

  const putMetricAlarm = (input: Record<string, unknown>) => {
    const name = String(input.AlarmName ?? '');
    if (name.length < 1 || name.length > 255)
      throw new AwsServiceError('ValidationError', 'AlarmName must be 1 to 255 characters');
    const existing = alarms.get(name);
    alarms.set(name, {
      name,
      description: String(input.AlarmDescription ?? ''),
      state: existing?.state ?? 'INSUFFICIENT_DATA',
      reason: existing?.reason ?? 'Unchecked: Initial alarm creation',
      updatedAt: existing?.updatedAt ?? Date.now(),
    });
    return {};
  };

  const setAlarmState = (input: Record<string, unknown>) => {
    const alarm = alarms.get(String(input.AlarmName ?? ''));
    if (alarm === undefined)
      throw new AwsServiceError('ResourceNotFound', `Alarm ${String(input.AlarmName)} not found`);
    const state = input.StateValue as AlarmState;
    if (!STATES.includes(state)) throw new AwsServiceError('InvalidParameterValue', 'StateValue is invalid');
    if (typeof input.StateReason !== 'string' || input.StateReason.length === 0)
      throw new AwsServiceError('ValidationError', 'StateReason is required');
    Object.assign(alarm, { state, reason: input.StateReason, updatedAt: Date.now() });
    return {};
  };

  const describeAlarms = (input: Record<string, unknown>) => {
    const names = input.AlarmNames as string[] | undefined;
    const prefix = input.AlarmNamePrefix as string | undefined;
    if (names !== undefined && prefix !== undefined)
      throw new AwsServiceError(
        'InvalidParameterCombination',
        'AlarmNames and AlarmNamePrefix are exclusive',
      );
    const state = input.StateValue as AlarmState | undefined;
    if (state !== undefined && !STATES.includes(state))
      throw new AwsServiceError('InvalidParameterValue', 'StateValue is invalid');
    const types = (input.AlarmTypes as string[] | undefined) ?? ['MetricAlarm'];
    const maxRecords = Number(input.MaxRecords ?? 50);
    if (!Number.isInteger(maxRecords) || maxRecords < 1 || maxRecords > MAX_RECORDS)
      throw new AwsServiceError('InvalidParameterValue', 'MaxRecords must be 1 to 100');
    const matching = types.includes('MetricAlarm')
      ? [...alarms.values()]
          .filter(
            (alarm) =>
              (names === undefined || names.includes(alarm.name)) && alarm.name.startsWith(prefix ?? ''),
          )
          .filter((alarm) => state === undefined || alarm.state === state)
          .sort((a, b) => a.name.localeCompare(b.name))
      : [];
    const start = Number(input.NextToken ?? 0);
    const page = matching.slice(start, start + maxRecords);
    return {
      MetricAlarms: page.map((alarm) => ({
        AlarmName: alarm.name,
        AlarmArn: `arn:aws:cloudwatch:us-east-1:123456789012:alarm:${alarm.name}`,
        AlarmDescription: alarm.description,
        StateValue: alarm.state,
        StateReason: alarm.reason,
        // JSON 1.0 carries timestamps as epoch seconds.
        StateUpdatedTimestamp: alarm.updatedAt / 1000,
      })),
      CompositeAlarms: [],
      ...(start + maxRecords < matching.length ? { NextToken: String(start + maxRecords) } : {}),
    };
  };

  const server = await JsonProtocolServer.start(
    'GraniteServiceVersion20100801',
    { PutMetricAlarm: putMetricAlarm, SetAlarmState: setAlarmState, DescribeAlarms: describeAlarms },
    '1.0',
  );
  return {
    endpoint: server.endpoint,
    calls: server.calls,
    putAlarm: (name: string, description: string) =>
      putMetricAlarm({ AlarmName: name, AlarmDescription: description }),
    setState: (name: string, state: AlarmState, reason: string) =>
      setAlarmState({ AlarmName: name, StateValue: state, StateReason: reason }),
    stop: () => server.stop(),
  };
}
