import { describe, expect, it } from 'vitest';
import { failureReason, lastJsonLine, normalizeSerial } from '../../shared/certificates/outputs';

describe('document output', () => {
  it('takes the last JSON line and ignores noise before it', () => {
    expect(lastJsonLine('warning: x\n{"ok":true,"a":1}\n')).toEqual({ ok: true, a: 1 });
  });

  it('treats a line cut by SSM output truncation as unreadable', () => {
    expect(lastJsonLine('{"ok":true,"agentCsr":"AAAA')).toBeUndefined();
  });

  it('prefers the script reason and falls back to the SSM status detail', () => {
    expect(
      failureReason('{"ok":false,"stage":"install","reason":"wrong-names","detail":"cli"}', 'Failed'),
    ).toBe('wrong-names:cli');
    expect(failureReason('', 'Delivery Timed Out')).toBe('DeliveryTimedOut');
  });

  it('compares Vault and openssl serial formats', () => {
    expect(normalizeSerial('0a:1b:FF')).toBe(normalizeSerial('A1BFF'));
  });
});
