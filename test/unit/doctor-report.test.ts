import { describe, expect, it } from 'vitest';
import { renderJson, renderText } from '../../cli/doctor';
import { type CheckResult, exitCodeFor, runChecks, worstStatus } from '../../shared/preflight/report';

const result = (check: string, status: CheckResult['status']): CheckResult => ({
  check,
  status,
  detail: `${check} is ${status}`,
  action: status === 'ok' ? '' : `fix ${check}`,
});

describe('doctor: worst status and exit code', () => {
  it('exits 0 when every check is ok or only warns, 1 on any failure', () => {
    expect(worstStatus([])).toBe('ok');
    expect(exitCodeFor([result('a', 'ok'), result('b', 'ok')])).toBe(0);
    expect(worstStatus([result('a', 'ok'), result('b', 'warn')])).toBe('warn');
    expect(exitCodeFor([result('a', 'ok'), result('b', 'warn')])).toBe(0);
    expect(worstStatus([result('a', 'fail'), result('b', 'warn'), result('c', 'ok')])).toBe('fail');
    expect(exitCodeFor([result('a', 'warn'), result('b', 'fail')])).toBe(1);
  });

  it('reports a check that throws or hangs as failed, in place, without hiding the others', async () => {
    const results = await runChecks(
      [
        { name: 'hangs', run: () => new Promise(() => {}) },
        {
          name: 'throws',
          run: async () => {
            throw new Error('AccessDeniedException: not authorized');
          },
        },
        { name: 'fine', run: async () => ({ status: 'ok', detail: 'all good', action: '' }) },
      ],
      50,
    );

    expect(results.map(({ check, status }) => [check, status])).toEqual([
      ['hangs', 'fail'],
      ['throws', 'fail'],
      ['fine', 'ok'],
    ]);
    expect(results[0]!.detail).toBe('no answer within 0.05 s');
    expect(results[1]!.detail).toContain('AccessDeniedException: not authorized');
  });
});

describe('doctor: rendering', () => {
  const results = [
    result('config', 'ok'),
    { ...result('vault', 'fail'), detail: 'sealed\n  \u001b[31mred\u001b[0m' },
    result('dead-letters', 'warn'),
  ];

  it('prints one line a check with its action beneath, and the tally', () => {
    expect(renderText(results)).toBe(
      [
        'ok    config        config is ok',
        'fail  vault         sealed red',
        '                    → fix vault',
        'warn  dead-letters  dead-letters is warn',
        '                    → fix dead-letters',
        '1 fail, 1 warn, 1 ok',
        '',
      ].join('\n'),
    );
  });

  it('prints --json as an array of exactly check, status, detail, action', () => {
    const parsed = JSON.parse(renderJson([{ ...results[1]!, extra: 'dropped' } as CheckResult]));
    expect(parsed).toEqual([{ check: 'vault', status: 'fail', detail: 'sealed red', action: 'fix vault' }]);
    expect(Object.keys(parsed[0])).toEqual(['check', 'status', 'detail', 'action']);
  });
});
