import { stripControlCharacters } from '../shared/terminal-text';
import { parseCommandArgs, UsageError } from './args';
import { COMMANDS } from './commands';
import { type Command, type CommandContext, type Environment, processContext } from './context';

const EXIT_CODES = 'Exit codes: 0 done, 1 failed or halted, 2 usage error.';

function usage(): string {
  const width = Math.max(...COMMANDS.map((command) => command.name.length));
  return `nomad-rotator <command> --cluster C [options]

Commands
${COMMANDS.map((command) => `  ${command.name.padEnd(width)}  ${command.summary}`).join('\n')}

Every command prints a table for people and, with --json, one JSON document for scripts;
nomad-rotator <command> --help shows its flags and examples.
Defaults: --table $NOMAD_ROTATOR_TABLE, --url $NOMAD_ROTATOR_URL (the stack output ManualOpsUrl).
plan, rotate, reissue and the gossip commands are SigV4-signed requests to the manual-ops function
URL: the rotator records the IAM identity AWS verified ($USER goes along only as a claimed label),
and only the operator roles named at deploy (operatorRoleArns) are let in. AWS credentials, region
and endpoints come from the usual AWS SDK environment (AWS_PROFILE, AWS_REGION,
AWS_ENDPOINT_URL_DYNAMODB). Colour only on a terminal, never with NO_COLOR.
${EXIT_CODES}`;
}

function commandHelp(command: Command): string {
  const flags = Object.entries({
    ...command.options,
    json: { type: 'boolean', description: 'one JSON document on stdout (field names in the README)' },
    help: { type: 'boolean', description: 'this help' },
  } as const).map(([name, spec]) => [
    `--${name}${'value' in spec && spec.value ? ` ${spec.value}` : ''}`,
    spec.description,
  ]);
  const width = Math.max(...flags.map(([flag]) => flag!.length));
  return `Usage: nomad-rotator ${command.name} [options]

${command.description}

Options
${flags.map(([flag, description]) => `  ${flag!.padEnd(width)}  ${description}`).join('\n')}

Examples
${command.examples.map((example) => `  ${example}`).join('\n')}

${EXIT_CODES}`;
}

export async function main(
  argv: string[],
  environment: Environment,
  context: CommandContext = processContext(environment),
): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    context.out.write(`${usage()}\n`);
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS.find((candidate) => candidate.name === name);
  if (command === undefined)
    throw new UsageError(
      `${name}: not a command (commands: ${COMMANDS.map((candidate) => candidate.name).join(', ')})`,
    );
  const values = parseCommandArgs(command.name, rest, command.options);
  if (values.help === true) {
    context.out.write(`${commandHelp(command)}\n`);
    return 0;
  }
  return command.run(values, context);
}

export async function run(): Promise<void> {
  try {
    process.exitCode = await main(process.argv.slice(2), process.env);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    // One line: a multi-line message (an SDK's, say) keeps only its first.
    process.stderr.write(`nomad-rotator: ${stripControlCharacters(message).split('\n')[0]}\n`);
    process.exitCode = error instanceof UsageError ? 2 : 1;
  }
}
