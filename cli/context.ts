import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { StateTable } from '../shared/state/table';
import { type OptionSpecs, optionalString, required, type Values } from './args';
import { colourAllowed, type Output } from './format';
import { manualRequest } from './manual-ops';

export type Environment = Readonly<Record<string, string | undefined>>;

/** What a command reaches the world through; the tests and the real process build it the same way. */
export interface CommandContext {
  readonly environment: Environment;
  readonly out: Output;
  now(): number;
  sleep(ms: number): Promise<void>;
  /** The state table named by --table or NOMAD_ROTATOR_TABLE. */
  stateTable(values: Values): StateTable;
  /** A signed request to the manual-ops function URL (--url or NOMAD_ROTATOR_URL); its JSON answer. */
  manualOps(values: Values, payload: Readonly<Record<string, unknown>>): Promise<unknown>;
}

export interface Command {
  readonly name: string;
  /** One line for the command list. */
  readonly summary: string;
  /** What `--help` says the command does, in a few lines. */
  readonly description: string;
  readonly options: OptionSpecs;
  readonly examples: readonly string[];
  run(values: Values, context: CommandContext): Promise<number>;
}

export const CLUSTER_OPTION: OptionSpecs = {
  cluster: { type: 'string', value: 'C', description: 'the cluster, as named in the deployed config' },
};
export const TABLE_OPTION: OptionSpecs = {
  table: { type: 'string', value: 'T', description: 'the state table (default $NOMAD_ROTATOR_TABLE)' },
};
export const URL_OPTION: OptionSpecs = {
  url: {
    type: 'string',
    value: 'U',
    description: 'the manual-ops function URL, stack output ManualOpsUrl (default $NOMAD_ROTATOR_URL)',
  },
};

export function processContext(environment: Environment): CommandContext {
  const tty = process.stdout.isTTY === true;
  return {
    environment,
    out: {
      write: (text) => process.stdout.write(text),
      tty,
      colour: colourAllowed(tty, environment),
    },
    now: () => Date.now(),
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    stateTable: (values) =>
      new StateTable(
        new DynamoDBClient({}),
        required(
          optionalString(values, 'table') ?? environment.NOMAD_ROTATOR_TABLE,
          '--table',
          'the state table name, or set NOMAD_ROTATOR_TABLE',
        ),
      ),
    manualOps: (values, payload) =>
      manualRequest(
        required(
          optionalString(values, 'url') ?? environment.NOMAD_ROTATOR_URL,
          '--url',
          'the manual-ops function URL, or set NOMAD_ROTATOR_URL',
        ),
        payload,
        environment,
      ),
  };
}
