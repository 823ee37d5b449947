import {
  type EventBridgeClient,
  PutEventsCommand,
  type PutEventsRequestEntry,
} from '@aws-sdk/client-eventbridge';
import type { EventPublisher, RotationEventType } from '../certificates/ports';

export const EVENT_SOURCE = 'nomad-rotator';

/** Outcome events on the custom bus. PutEvents can fail per entry; only failed entries are retried. */
export class EventBridgePublisher implements EventPublisher {
  constructor(
    private readonly events: EventBridgeClient,
    private readonly busName: string,
    private readonly attempts = 3,
  ) {}

  async publish(type: RotationEventType, detail: Record<string, unknown>): Promise<void> {
    let entries: PutEventsRequestEntry[] = [
      { Source: EVENT_SOURCE, DetailType: type, Detail: JSON.stringify(detail), EventBusName: this.busName },
    ];
    for (let attempt = 1; entries.length > 0; attempt += 1) {
      const result = await this.events.send(new PutEventsCommand({ Entries: entries }));
      if (!result.FailedEntryCount) return;
      entries = entries.filter((_, index) => result.Entries?.[index]?.ErrorCode !== undefined);
      if (attempt >= this.attempts) {
        throw new Error(
          `PutEvents failed for ${type}: ${result.Entries?.find((e) => e.ErrorCode)?.ErrorCode}`,
        );
      }
    }
  }
}
