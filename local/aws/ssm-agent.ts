// What the SSM agent does to a document and its outputs on the node, from the agent's source.
import { RE2JS } from 're2js';
import type { CommandDocument } from '../../shared/documents';

export const STDOUT_LIMIT = 24_000;
export const STDERR_LIMIT = 8_000;
/** ListCommandInvocations with Details: each plugin's Output is cut to this many characters. */
const DETAILS_OUTPUT_LIMIT = 2_500;
/** The agent's markers in a plugin's outputs (agent/framework/processor/executer/iohandler). */
const ERROR_TITLE = '\n----------ERROR-------\n';
const OUTPUT_TRUNCATED = '\n---Output truncated---';
const ERROR_TRUNCATED = '\n---Error truncated----';
const CONTENT_TRUNCATED = '--output truncated--';
/** The agent clamps a step's timeoutSeconds to this range and uses 3600 outside it. */
const STEP_TIMEOUT_MIN = 5;
const STEP_TIMEOUT_MAX = 172_800;
const STEP_TIMEOUT_DEFAULT = 3_600;

/**
 * The agent compiles every parameter's allowedPattern with Go's regexp (RE2) and checks each value
 * against it before the document runs (allowedregexparamvalidator.go). One pattern RE2 cannot compile,
 * such as a repeat count above 1000, fails the whole document.
 */
export function agentAcceptsParameters(
  document: CommandDocument,
  parameters: Record<string, string[]>,
): boolean {
  for (const [name, spec] of Object.entries(document.parameters)) {
    let pattern: RE2JS;
    try {
      pattern = RE2JS.compile(spec.allowedPattern);
    } catch {
      return false;
    }
    for (const value of parameters[name] ?? []) if (!pattern.matcher(value).find()) return false;
  }
  return true;
}

/** The agent's step timeout: timeoutSeconds clamped to 5–172800 s, 3600 when outside or not a number. */
export function agentStepTimeout(text: string): number {
  const seconds = Number(text);
  return Number.isInteger(seconds) && seconds >= STEP_TIMEOUT_MIN && seconds <= STEP_TIMEOUT_MAX
    ? seconds
    : STEP_TIMEOUT_DEFAULT;
}

/** The agent keeps the head of a long output, ending it with a marker, within the limit. */
export function keepPrefix(output: string, limit: number): string {
  return output.length < limit
    ? output
    : `${output.slice(0, limit - CONTENT_TRUNCATED.length)}${CONTENT_TRUNCATED}`;
}

/**
 * A plugin's Output in ListCommandInvocations, as the agent composes it within 2,500 characters:
 * stdout, then (if any) the error title and stderr; when they do not fit, the longer part or both
 * are cut and marked.
 */
export function pluginOutput(invocation: { stdout: string; stderr: string; endedAt?: number }): string {
  if (invocation.endedAt === undefined) return '';
  const { stdout, stderr } = invocation;
  const title = stderr === '' ? '' : ERROR_TITLE;
  const space = DETAILS_OUTPUT_LIMIT - title.length;
  if (stdout.length + stderr.length < space) return `${stdout}${title}${stderr}`;
  if (stdout.length > space / 2 && stderr.length > space / 2) {
    const half = Math.floor((space - ERROR_TRUNCATED.length - OUTPUT_TRUNCATED.length) / 2);
    return `${stdout.slice(0, half)}${OUTPUT_TRUNCATED}${title}${stderr.slice(0, half)}${ERROR_TRUNCATED}`;
  }
  if (stdout.length <= space / 2) {
    return `${stdout}${title}${stderr.slice(0, space - ERROR_TRUNCATED.length - stdout.length)}${ERROR_TRUNCATED}`;
  }
  return `${stdout.slice(0, space - OUTPUT_TRUNCATED.length - stderr.length)}${OUTPUT_TRUNCATED}${title}${stderr}`;
}
