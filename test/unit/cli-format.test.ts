import { describe, expect, it } from 'vitest';
import { parseCommandArgs, timeOf, UsageError } from '../../cli/args';
import { outcomeOf } from '../../cli/commands/history';
import {
  colourAllowed,
  localIso,
  paint,
  progressBar,
  relativeTime,
  renderTable,
  shortDuration,
} from '../../cli/format';

const NOW = Date.parse('2026-12-06T09:00:00Z');
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

describe('CLI times', () => {
  it('says how far a time is from now in its two largest units', () => {
    expect(relativeTime(NOW + 7 * HOUR + 12 * MINUTE + 30_000, NOW)).toBe('in 7h12m');
    expect(relativeTime(NOW - 3 * MINUTE - 59_000, NOW)).toBe('3m ago');
    expect(relativeTime(NOW - 42_000, NOW)).toBe('42s ago');
    expect(relativeTime(NOW + 500, NOW)).toBe('now');
    expect(relativeTime(NOW + 3 * 24 * HOUR + 5 * HOUR, NOW)).toBe('in 3d5h');
    expect(shortDuration(HOUR + 5 * MINUTE)).toBe('1h05m');
  });

  it('writes local ISO 8601 with the zone offset, to the second', () => {
    const text = localIso(NOW + 123);
    expect(text).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$/);
    // The same instant, whatever the time zone the test runs in.
    expect(Date.parse(text)).toBe(NOW);
  });

  it('takes --since as a duration back from now or an ISO time, and names what it takes otherwise', () => {
    expect(timeOf({ since: '2h' }, 'since', NOW)).toBe(NOW - 2 * HOUR);
    expect(timeOf({ since: '2026-12-06T08:30:00Z' }, 'since', NOW)).toBe(NOW - 30 * MINUTE);
    expect(timeOf({}, 'since', NOW)).toBeUndefined();
    expect(() => timeOf({ since: 'yesterday' }, 'since', NOW)).toThrow(
      /^--since yesterday: must be a duration back from now \(30m, 2h, 7d\) or an ISO time/,
    );
    expect(() => timeOf({ since: '2026-13-45' }, 'since', NOW)).toThrow(UsageError);
  });
});

describe('CLI tables and colour', () => {
  it('pads every column to its widest cell and cuts a cell past the limit', () => {
    const table = renderTable(
      ['a', 'longer title'],
      [
        ['wide cell', 'x'],
        ['y', 'z'.repeat(20)],
      ],
      { maxCellWidth: 10 },
    );

    expect(table.split('\n')).toEqual([
      'a          longer title',
      '---------  ------------',
      'wide cell  x',
      `y          ${'z'.repeat(9)}…`,
    ]);
  });

  it('strips what would drive the terminal from every cell, and colours only when allowed', () => {
    const hostile = 'ok\u001b[2J\u001b]0;title\u0007\tnext\nline';

    const plain = renderTable(['c'], [[{ text: hostile, colour: 'red' }]]);
    const coloured = renderTable(['c'], [[{ text: 'bad', colour: 'red' }]], { colour: true });

    expect(plain.split('\n')[2]).toBe('ok next line');
    expect(coloured.split('\n')[2]).toBe('\u001b[31mbad\u001b[0m');
    expect(paint('bad', 'red', false)).toBe('bad');
  });

  it('allows colour on a terminal only, and never with NO_COLOR set', () => {
    expect(colourAllowed(true, {})).toBe(true);
    expect(colourAllowed(false, {})).toBe(false);
    expect(colourAllowed(true, { NO_COLOR: '1' })).toBe(false);
    // An empty NO_COLOR is as good as unset (no-color.org).
    expect(colourAllowed(true, { NO_COLOR: '' })).toBe(true);
  });

  it('draws the progress bar at its width whatever the count', () => {
    expect(progressBar(0, 4, 8)).toBe('[        ]');
    expect(progressBar(1, 4, 8)).toBe('[=>      ]');
    expect(progressBar(4, 4, 8)).toBe('[========]');
    expect(progressBar(0, 0, 8)).toBe('[========]');
  });
});

describe('CLI flags and the audit outcome', () => {
  const options = {
    cluster: { type: 'string', description: '' },
    wait: { type: 'boolean', description: '' },
  } as const;

  it('names the flag and what is allowed when a flag is wrong', () => {
    expect(parseCommandArgs('status', ['--cluster', 'prod', '--wait'], options)).toEqual({
      cluster: 'prod',
      wait: true,
    });
    expect(() => parseCommandArgs('status', ['--nope'], options)).toThrow(
      '--nope: not an option of status (allowed: --cluster, --wait, --json, --help)',
    );
    expect(() => parseCommandArgs('status', ['--cluster', '--wait'], options)).toThrow(
      '--cluster: needs a value',
    );
    expect(() => parseCommandArgs('status', ['--wait=yes'], options)).toThrow('--wait: takes no value');
    expect(() => parseCommandArgs('status', ['prod'], options)).toThrow('status: unexpected argument "prod"');
    expect(() => parseCommandArgs('status', ['--cluster', 'a', '--cluster', 'b'], options)).toThrow(
      '--cluster: given more than once',
    );
  });

  it('reads the outcome from the action name', () => {
    expect(outcomeOf('install-failed')).toBe('failed');
    expect(outcomeOf('rollout-halted')).toBe('halted');
    expect(outcomeOf('target-joined-rollout')).toBe('joined');
    expect(outcomeOf('manual-rotate')).toBe('requested');
    expect(outcomeOf('tick')).toBe('-');
  });
});
