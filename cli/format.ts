import { stripControlCharacters } from '../shared/terminal-text';

/** Where a command writes: the text, and whether it may draw (a terminal) and paint (colour). */
export interface Output {
  write(text: string): void;
  /** A terminal: a live view may redraw itself in place. */
  readonly tty: boolean;
  /** Colour escapes allowed: a terminal, and NO_COLOR not set. */
  readonly colour: boolean;
}

/** Colour only on a terminal, and never with NO_COLOR set to anything (https://no-color.org). */
export function colourAllowed(tty: boolean, environment: Record<string, string | undefined>): boolean {
  return tty && (environment.NO_COLOR ?? '') === '';
}

const COLOURS = { red: 31, green: 32, yellow: 33, dim: 2, bold: 1 } as const;
export type Colour = keyof typeof COLOURS;

export function paint(text: string, colour: Colour | undefined, enabled: boolean): string {
  return enabled && colour !== undefined && text !== '' ? `\u001b[${COLOURS[colour]}m${text}\u001b[0m` : text;
}

/** Text from the state table or a node, made safe for one cell of one line. */
export function cleanCell(text: string): string {
  return stripControlCharacters(text).replace(/[\t\n]+/g, ' ');
}

/** `42s`, `3m`, `7h12m`, `2d3h`: the two largest units, as Nomad prints durations. */
export function shortDuration(ms: number): string {
  const seconds = Math.floor(Math.abs(ms) / 1000);
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h${String(minutes % 60).padStart(2, '0')}m`;
  return `${Math.floor(hours / 24)}d${hours % 24}h`;
}

/** `in 7h12m`, `3m ago`, or `now` within a second. */
export function relativeTime(at: number, now: number): string {
  const delta = at - now;
  if (Math.abs(delta) < 1000) return 'now';
  return delta > 0 ? `in ${shortDuration(delta)}` : `${shortDuration(delta)} ago`;
}

/** ISO 8601 in the local time zone, to the second: `2026-12-06T02:19:43+01:00`. */
export function localIso(at: number): string {
  const date = new Date(at);
  const two = (value: number) => String(value).padStart(2, '0');
  const offset = -date.getTimezoneOffset();
  const sign = offset >= 0 ? '+' : '-';
  const zone = `${sign}${two(Math.floor(Math.abs(offset) / 60))}:${two(Math.abs(offset) % 60)}`;
  return (
    `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())}` +
    `T${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}${zone}`
  );
}

/** A time as an operator reads it: local ISO and how far from now. */
export function when(at: number | undefined, now: number): string {
  return at === undefined ? '-' : `${localIso(at)} (${relativeTime(at, now)})`;
}

/** A time for `--json`: UTC ISO 8601, or null. */
export function isoOrNull(at: number | undefined): string | null {
  return at === undefined ? null : new Date(at).toISOString();
}

export type Cell = string | { text: string; colour?: Colour | undefined };

export interface TableOptions {
  /** Cells longer than this are cut with `…`, so one long reason does not push every row off screen. */
  maxCellWidth?: number;
  colour?: boolean;
}

/**
 * Columns padded to their widest cell, two spaces apart. Every cell goes through cleanCell, since
 * what reaches a table came from the state table, which a node's output reached; colour is applied
 * after padding so it never counts towards a width.
 */
export function renderTable(
  columns: readonly string[],
  rows: readonly (readonly Cell[])[],
  { maxCellWidth = 72, colour = false }: TableOptions = {},
): string {
  const cells = rows.map((row) =>
    row.map((cell) => {
      const { text, colour: cellColour } = typeof cell === 'string' ? { text: cell } : cell;
      const clean = cleanCell(text);
      return {
        text: clean.length > maxCellWidth ? `${clean.slice(0, maxCellWidth - 1)}…` : clean,
        colour: cellColour,
      };
    }),
  );
  const widths = columns.map((title, index) =>
    Math.max(title.length, ...cells.map((row) => row[index]?.text.length ?? 0)),
  );
  const line = (row: readonly { text: string; colour?: Colour | undefined }[]) =>
    row
      .map((cell, index) => paint(cell.text.padEnd(widths[index]!), cell.colour, colour))
      .join('  ')
      .trimEnd();
  return [
    line(columns.map((text) => ({ text }))),
    line(widths.map((width) => ({ text: '-'.repeat(width) }))),
    ...cells.map(line),
  ].join('\n');
}

/** `[=========>          ]` for done of total. */
export function progressBar(done: number, total: number, width = 30): string {
  if (total <= 0) return `[${'='.repeat(width)}]`;
  const filled = Math.min(width, Math.floor((done / total) * width));
  const head = filled < width && filled > 0 ? '>' : '';
  return `[${'='.repeat(filled - head.length)}${head}${' '.repeat(width - filled)}]`;
}
