import type { AttemptRecord } from '../shared/rollout/model';
import type { NodeRecord } from '../shared/state/records';
import { stripControlCharacters } from '../shared/terminal-text';

const COLUMNS = ['instance', 'role', 'serial', 'expires in', 'status', 'last action'] as const;

/**
 * The fleet as an operator reads it: one line per node, soonest expiry first. A node the active
 * rollout is working on shows its step there instead of its resting status.
 */
export function renderFleetTable(
  nodes: readonly NodeRecord[],
  now: number,
  inFlight: ReadonlyMap<string, Pick<AttemptRecord, 'step' | 'state'>> = new Map(),
): string {
  const rows = [...nodes]
    .sort((a, b) => (a.agent?.notAfter ?? 0) - (b.agent?.notAfter ?? 0))
    .map((node) => [
      node.instanceId,
      node.role,
      node.agent ? shortSerial(node.agent.serial) : '-',
      node.agent ? expiresIn(node.agent.notAfter - now) : 'no certificate',
      statusOf(node, inFlight.get(node.instanceId)),
      node.lastAction ?? '-',
    ])
    // Every cell comes from the state table, which a node's output reached: nothing in it may drive the terminal.
    .map((row) => row.map((cell) => stripControlCharacters(cell).replace(/[\t\n]/g, ' ')));
  const widths = COLUMNS.map((title, index) =>
    Math.max(title.length, ...rows.map((row) => row[index]!.length)),
  );
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, index) => cell.padEnd(widths[index]!))
      .join('  ')
      .trimEnd();
  return [line(COLUMNS), line(widths.map((width) => '-'.repeat(width))), ...rows.map(line)].join('\n');
}

function statusOf(node: NodeRecord, attempt: Pick<AttemptRecord, 'step' | 'state'> | undefined): string {
  if (attempt !== undefined) return `${attempt.step} ${attempt.state}`;
  return node.status === 'failed' ? `failed (${node.lastError ?? '?'})` : node.status;
}

function shortSerial(serial: string): string {
  const plain = serial.replaceAll(':', '');
  return plain.length > 16 ? `${plain.slice(0, 8)}…${plain.slice(-6)}` : plain;
}

function expiresIn(ms: number): string {
  if (ms <= 0) return 'EXPIRED';
  const minutes = Math.floor(ms / 60_000);
  const hours = Math.floor(minutes / 60);
  return hours > 0 ? `${hours}h${String(minutes % 60).padStart(2, '0')}m` : `${minutes}m`;
}
