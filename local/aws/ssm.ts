import { SSMClient } from '@aws-sdk/client-ssm';
import { type Clock, systemClock } from '../../shared/clock';
import type { CommandDocument } from '../../shared/documents';
import type { Fleet } from '../fleet';
import { JsonProtocolServer } from './json-protocol';
import { describeCommand, ssmOperations } from './ssm-api';
import { ssmCatalog } from './ssm-catalog';
import { type AwsEvent, CommandStore, REGION, type SsmKnobs } from './ssm-commands';

export type SsmEmulator = Awaited<ReturnType<typeof startSsmEmulator>>;

/**
 * SSM Run Command, inventory, documents and Parameter Store for the local world, spoken over the AWS JSON 1.1 protocol so the
 * product's real SSMClient calls it. Commands run on the fleet's managed nodes (real bash, real
 * openssl); statuses, limits, truncation and events follow what SSM documents (SSM API reference, and the agent's source for what it does on the node).
 */
export async function startSsmEmulator(options: {
  fleet: Fleet;
  clock?: Clock;
  events?: (event: AwsEvent) => void;
  knobs?: Partial<SsmKnobs>;
}) {
  const clock = options.clock ?? systemClock;
  const knobs: SsmKnobs = {
    startLatencyMs: 0,
    invocationVisibleAfterMs: 0,
    undeliverableAfterMs: 200,
    dropNextEvents: 0,
    ...options.knobs,
  };
  const store = new CommandStore({ clock, knobs, events: options.events });
  const catalog = ssmCatalog(store.documents);
  const server = await JsonProtocolServer.start('AmazonSSM', {
    ...ssmOperations({ store, fleet: options.fleet, clock }),
    ...catalog.operations,
  });

  return {
    endpoint: server.endpoint,
    knobs,
    calls: server.calls,
    limiter: server.limiter,
    /** Every command sent, with its parameters, as ListCommands would show them (for secret scans). */
    history: () => [...store.commands.values()].map(describeCommand),
    /** What every invocation printed, as GetCommandInvocation returns it (for secret scans). */
    outputs: () => [...store.invocations.values()].map(({ stdout, stderr }) => ({ stdout, stderr })),
    client: (config: { maxAttempts?: number } = {}) =>
      new SSMClient({
        endpoint: server.endpoint,
        region: REGION,
        credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
        maxAttempts: config.maxAttempts ?? 3,
      }),
    /** Create the document, or make this content its new default version. */
    registerDocument: (name: string, document: CommandDocument) => catalog.register(name, document),
    /** Resolves once no invocation is running; true when something was still running at the call. */
    idle: (): Promise<boolean> => store.idle(),
    stop: async () => {
      await store.idle();
      await server.stop();
    },
  };
}
