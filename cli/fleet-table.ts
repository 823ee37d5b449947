import type { AttemptRecord } from '../shared/rollout/model';
import type { NodeRecord } from '../shared/state/records';
import { type Cell, relativeTime, renderTable } from './format';

const COLUMNS = ['instance', 'role', 'serial', 'expires', 'status', 'last action'] as const;

/**
 * The fleet as an operator reads it: one line per node, soonest expiry first. A node the active
 * rollout is working on shows its step there instead of its resting status.
 */
export function renderFleetTable(
  nodes: readonly NodeRecord[],
  now: number,
  inFlight: ReadonlyMap<string, Pick<AttemptRecord, 'step' | 'state'>> = new Map(),
  colour = false,
): string {
  const rows = [...nodes]
    .sort((a, b) => (a.agent?.notAfter ?? 0) - (b.agent?.notAfter ?? 0))
    .map((node): Cell[] => [
      node.instanceId,
      node.role,
      node.agent ? shortSerial(node.agent.serial) : '-',
      node.agent ? expires(node.agent.notAfter, now) : { text: 'no certificate', colour: 'yellow' },
      statusOf(node, inFlight.get(node.instanceId)),
      node.lastAction === undefined
        ? '-'
        : `${node.lastAction}${node.lastActionAt === undefined ? '' : ` (${relativeTime(node.lastActionAt, now)})`}`,
    ]);
  return renderTable(COLUMNS, rows, { colour });
}

function statusOf(node: NodeRecord, attempt: Pick<AttemptRecord, 'step' | 'state'> | undefined): Cell {
  if (attempt !== undefined) return { text: `${attempt.step} ${attempt.state}`, colour: 'yellow' };
  if (node.status === 'failed') return { text: `failed (${node.lastError ?? '?'})`, colour: 'red' };
  return { text: node.status, colour: node.status === 'idle' ? undefined : 'dim' };
}

export function shortSerial(serial: string): string {
  const plain = serial.replaceAll(':', '');
  return plain.length > 16 ? `${plain.slice(0, 8)}…${plain.slice(-6)}` : plain;
}

function expires(notAfter: number, now: number): Cell {
  if (notAfter <= now) return { text: `EXPIRED ${relativeTime(notAfter, now)}`, colour: 'red' };
  return { text: relativeTime(notAfter, now), colour: notAfter - now < 3_600_000 ? 'yellow' : undefined };
}
