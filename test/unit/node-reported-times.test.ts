import { describe, expect, it } from 'vitest';
import { installOutputSchema, lastJsonLine, prepareOutputSchema } from '../../shared/certificates/outputs';

const notBefore = Date.UTC(2026, 10, 22, 12);
const notAfter = Date.UTC(2026, 10, 23, 12);
/** What the scripts print: `date +%s` of openssl's dates, whole epoch seconds. */
const seconds = (epochMs: number) => epochMs / 1000;

describe('certificate times a node reports', () => {
  it('reach the rotator as the epoch milliseconds its records use', () => {
    const stdout = JSON.stringify({
      ok: true,
      stage: 'install',
      attemptId: 'a1b2c3-0011aabb',
      changed: true,
      action: 'reload',
      servedSerial: '0A1B',
      agent: { serial: '0A1B', notBefore: seconds(notBefore), notAfter: seconds(notAfter) },
      cli: { serial: '0C1D', notBefore: seconds(notBefore), notAfter: seconds(notAfter) },
    });

    const output = installOutputSchema.parse(lastJsonLine(stdout));

    expect(output.agent).toEqual({ serial: '0A1B', notBefore, notAfter });
    expect(new Date(output.cli.notAfter).toISOString()).toBe('2026-11-23T12:00:00.000Z');
  });

  it('give the expiry of the certificate a node holds before a rotation in milliseconds', () => {
    const stdout = JSON.stringify({
      ok: true,
      stage: 'prepare',
      attemptId: 'a1b2c3-0011aabb',
      agentCsr: 'AAAA',
      cliCsr: 'AAAA',
      current: { agent: { serial: '0A1B', notAfter: seconds(notAfter) }, cli: null },
    });

    const output = prepareOutputSchema.parse(lastJsonLine(stdout));

    expect(output.current.agent).toEqual({ serial: '0A1B', notAfter });
  });
});
