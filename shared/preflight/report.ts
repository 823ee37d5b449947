import { describeError } from '../errors';

export type CheckStatus = 'ok' | 'warn' | 'fail';

/** One line of the doctor's report; `--json` prints an array of exactly these fields, in this order. */
export interface CheckResult {
  check: string;
  status: CheckStatus;
  detail: string;
  /** What to do about it; empty when the check is ok. */
  action: string;
}

/** A check by name: resolves with its verdict, or throws, which counts as a failure of that check alone. */
export interface Check {
  name: string;
  run: () => Promise<Omit<CheckResult, 'check'>>;
}

const RANK: Record<CheckStatus, number> = { ok: 0, warn: 1, fail: 2 };

export function worstStatus(results: readonly Pick<CheckResult, 'status'>[]): CheckStatus {
  return results.reduce<CheckStatus>(
    (worst, { status }) => (RANK[status] > RANK[worst] ? status : worst),
    'ok',
  );
}

/**
 * 1 when any check failed, else 0: a warning is printed but does not stop a script that gates a
 * rotation on the doctor, since every warning names something that degrades, not something broken.
 */
export function exitCodeFor(results: readonly Pick<CheckResult, 'status'>[]): number {
  return worstStatus(results) === 'fail' ? 1 : 0;
}

/**
 * Every check at once, each under its own deadline: a check that throws or outlives the deadline is
 * reported as failed, and the others still report. The deadline only stops the waiting; the clients
 * behind the checks carry request timeouts of their own, so nothing is left running for long. Results come back in the order the checks were
 * given, whatever order they finished in, so the output is stable.
 */
export async function runChecks(checks: readonly Check[], timeoutMs: number): Promise<CheckResult[]> {
  return Promise.all(checks.map((check) => runOne(check, timeoutMs)));
}

async function runOne(check: Check, timeoutMs: number): Promise<CheckResult> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CheckTimeout(timeoutMs)), timeoutMs);
  });
  try {
    const result = await Promise.race([check.run(), expired]);
    return { check: check.name, ...result };
  } catch (error) {
    return {
      check: check.name,
      status: 'fail',
      detail: error instanceof CheckTimeout ? error.message : `could not check: ${describeError(error)}`,
      action:
        error instanceof CheckTimeout
          ? 'the service did not answer in time: check network reach and credentials, then run again'
          : 'fix what the error names (credentials, permissions, endpoint), then run again',
    };
  } finally {
    clearTimeout(timer);
  }
}

class CheckTimeout extends Error {
  constructor(timeoutMs: number) {
    super(`no answer within ${timeoutMs / 1000} s`);
  }
}
