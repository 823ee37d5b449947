import type { Command } from '../context';
import { doctorCommand } from '../doctor';
import { historyCommand } from './history';
import { planCommand } from './plan';
import { requestCommands } from './requests';
import { statusCommand } from './status';
import { vaultBootstrapCommand } from './vault-bootstrap';
import { watchCommand } from './watch';

/**
 * Every command, in the order the command list shows them. A command is one `Command` (see
 * cli/context.ts): its flags, help and run; adding one here is all the dispatch needs.
 */
export const COMMANDS: readonly Command[] = [
  statusCommand,
  planCommand,
  watchCommand,
  historyCommand,
  ...requestCommands,
  doctorCommand,
  vaultBootstrapCommand,
];
