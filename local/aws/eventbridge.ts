import { randomUUID } from 'node:crypto';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { AwsServiceError, JsonProtocolServer } from './json-protocol';
import type { Queue } from './queue';
import type { AwsEvent } from './ssm-commands';

export type EventPattern = { [key: string]: EventPattern | readonly PatternValue[] };
type PatternValue =
  | string
  | number
  | boolean
  | null
  | { prefix: string }
  | { 'anything-but': readonly string[] }
  | { exists: boolean };

type RuleState = 'ENABLED' | 'DISABLED';

export type RuleTarget = { queue: Queue } | { invoke: (event: AwsEvent) => Promise<void> };

const MAX_ENTRY_BYTES = 256 * 1024;

/**
 * EventBridge for the local world: PutEvents on a custom bus (the product's outcome events), AWS
 * service events put by the other emulators, and named rules (DescribeRule, EnableRule, DisableRule) that route matching events to a queue (SQS)
 * or straight to a function (asynchronous invoke, retried twice like Lambda's async retries).
 */
export async function startEventBridgeEmulator() {
  const received: AwsEvent[] = [];
  const rules: { name: string; pattern: EventPattern; target: RuleTarget; state: RuleState }[] = [];

  const route = (event: AwsEvent) => {
    received.push(event);
    for (const rule of rules) {
      if (rule.state !== 'ENABLED' || !matches(rule.pattern, event as unknown as Record<string, unknown>))
        continue;
      if ('queue' in rule.target) rule.target.queue.send(JSON.stringify(event));
      else void invokeWithRetries(rule.target.invoke, event);
    }
  };

  const putEvents = (input: Record<string, unknown>) => {
    const entries = (input.Entries as Record<string, unknown>[] | undefined) ?? [];
    if (entries.length < 1 || entries.length > 10)
      throw new AwsServiceError('ValidationException', 'Entries must contain 1 to 10 items');
    const results = entries.map((entry) => {
      const source = entry.Source as string | undefined;
      const detailType = entry.DetailType as string | undefined;
      const detail = entry.Detail as string | undefined;
      if (!source || !detailType || !detail)
        return { ErrorCode: 'MalformedDetail', ErrorMessage: 'Source, DetailType and Detail are required' };
      if (source.startsWith('aws.'))
        return {
          ErrorCode: 'NotAuthorizedForSourceException',
          ErrorMessage: 'Not authorized for the source',
        };
      if (Buffer.byteLength(source + detailType + detail) > MAX_ENTRY_BYTES)
        return {
          ErrorCode: 'ValidationException',
          ErrorMessage: 'Total size of the entries in the request is over the limit',
        };
      let parsed: Record<string, unknown>;
      try {
        parsed = JSON.parse(detail) as Record<string, unknown>;
      } catch {
        return { ErrorCode: 'MalformedDetail', ErrorMessage: 'Detail is malformed' };
      }
      const id = randomUUID();
      route({
        version: '0',
        id,
        'detail-type': detailType,
        source,
        account: '123456789012',
        time: new Date().toISOString(),
        region: 'us-east-1',
        resources: (entry.Resources as string[]) ?? [],
        detail: parsed,
      });
      return { EventId: id };
    });
    return { FailedEntryCount: results.filter((result) => 'ErrorCode' in result).length, Entries: results };
  };

  const ruleNamed = (input: Record<string, unknown>) => {
    const rule = rules.find((candidate) => candidate.name === input.Name);
    if (rule === undefined)
      throw new AwsServiceError('ResourceNotFoundException', `Rule ${String(input.Name)} does not exist.`);
    return rule;
  };
  const describeRule = (input: Record<string, unknown>) => {
    const rule = ruleNamed(input);
    return {
      Name: rule.name,
      Arn: `arn:aws:events:us-east-1:123456789012:rule/${rule.name}`,
      EventPattern: JSON.stringify(rule.pattern),
      State: rule.state,
      EventBusName: 'default',
    };
  };
  const setRuleState = (state: RuleState) => (input: Record<string, unknown>) => {
    ruleNamed(input).state = state;
    return {};
  };

  const server = await JsonProtocolServer.start('AWSEvents', {
    PutEvents: putEvents,
    DescribeRule: describeRule,
    EnableRule: setRuleState('ENABLED'),
    DisableRule: setRuleState('DISABLED'),
  });
  return {
    endpoint: server.endpoint,
    client: () =>
      new EventBridgeClient({
        endpoint: server.endpoint,
        region: 'us-east-1',
        credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
      }),
    /** Every event the bus saw, in order: service events and the product's own. */
    events: () => [...received],
    putAwsEvent: route,
    ec2StateChange: (instanceId: string, state: string) =>
      route({
        version: '0',
        id: randomUUID(),
        'detail-type': 'EC2 Instance State-change Notification',
        source: 'aws.ec2',
        account: '123456789012',
        time: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
        region: 'us-east-1',
        resources: [`arn:aws:ec2:us-east-1:123456789012:instance/${instanceId}`],
        detail: { 'instance-id': instanceId, state },
      }),
    /** A rule on the default bus, enabled; a disabled one routes nothing, as in EventBridge. */
    addRule: (name: string, pattern: EventPattern, target: RuleTarget) =>
      rules.push({ name, pattern, target, state: 'ENABLED' }),
    stop: () => server.stop(),
  };
}

/** EventBridge pattern matching: arrays list accepted values, objects descend, filters as documented. */
export function matches(pattern: EventPattern, event: Record<string, unknown>): boolean {
  return Object.entries(pattern).every(([key, expected]) => {
    const actual = event[key];
    if (!Array.isArray(expected)) {
      return (
        typeof actual === 'object' &&
        actual !== null &&
        matches(expected as EventPattern, actual as Record<string, unknown>)
      );
    }
    const values = Array.isArray(actual) ? actual : [actual];
    return (expected as readonly PatternValue[]).some((rule) => {
      if (rule !== null && typeof rule === 'object') {
        if ('prefix' in rule)
          return values.some((value) => typeof value === 'string' && value.startsWith(rule.prefix));
        if ('anything-but' in rule)
          return (
            actual !== undefined && values.every((value) => !rule['anything-but'].includes(String(value)))
          );
        return rule.exists === (actual !== undefined);
      }
      return values.includes(rule);
    });
  });
}

async function invokeWithRetries(invoke: (event: AwsEvent) => Promise<void>, event: AwsEvent): Promise<void> {
  for (let attempt = 1; attempt <= 3; attempt += 1) {
    try {
      await invoke(event);
      return;
    } catch {
      // Lambda's asynchronous invoke retries a failed event twice.
    }
  }
}
