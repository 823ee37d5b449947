import { describe, expect, it } from 'vitest';
import { renderFleetTable } from '../../cli/fleet-table';
import { failureReason, installOutputSchema } from '../../shared/certificates/outputs';
import type { NodeRecord } from '../../shared/state/records';
import { stripControlCharacters } from '../../shared/terminal-text';

const ESC = '\u001b';
/** Clears the screen, sets the window title, rewrites the line and rings the bell. */
const HOSTILE = `${ESC}[2J${ESC}]0;owned${String.fromCharCode(7)}\rok${String.fromCharCode(0x9b)}1A`;

function hasControlCharacter(text: string): boolean {
  return [...text].some((character) => {
    const code = character.charCodeAt(0);
    return (code < 0x20 && character !== '\n') || (code >= 0x7f && code <= 0x9f);
  });
}

describe('text a node controls never drives an operator’s terminal', () => {
  it('strips CSI, OSC, 8-bit CSI and bare control characters, keeping the visible text', () => {
    expect(stripControlCharacters(`a${HOSTILE}b`)).toBe('aokb');
    expect(stripControlCharacters('line one\n\tline two')).toBe('line one\n\tline two');
  });

  it('a failure detail with escape sequences is reduced to the safe set or dropped; the reason stays', () => {
    // Arrange
    const withEscapes = JSON.stringify({
      ok: false,
      stage: 'install',
      reason: 'reload-failed',
      detail: HOSTILE,
    });
    const withSpaces = JSON.stringify({
      ok: false,
      stage: 'install',
      reason: 'reload-failed',
      detail: 'rm -rf /',
    });

    // Act
    const escaped = failureReason(withEscapes, 'Failed');
    const spaced = failureReason(withSpaces, 'Failed');

    // Assert
    expect(escaped).toBe('reload-failed:ok');
    expect(spaced).toBe('reload-failed');
  });

  it('SSM’s status detail, the fallback reason, keeps only the safe set', () => {
    expect(failureReason('', `Delivery${HOSTILE} Timed Out`)).toBe('DeliveryokTimedOut');
    expect(failureReason('', `${ESC}[2J`)).toBe('failed');
  });

  it('an install output naming an attempt or serial outside their patterns is not accepted', () => {
    // Arrange
    const certificate = { serial: 'AB01', notBefore: 1, notAfter: 2 };
    const output = {
      ok: true,
      stage: 'install',
      attemptId: 'a1',
      changed: true,
      action: 'reload',
      servedSerial: 'AB01',
      agent: certificate,
      cli: certificate,
    };

    // Act
    const shellInAttempt = installOutputSchema.safeParse({ ...output, attemptId: 'a1;reboot' });
    const escapeInSerial = installOutputSchema.safeParse({ ...output, servedSerial: `AB${ESC}[2J` });

    // Assert
    expect(shellInAttempt.success).toBe(false);
    expect(escapeInSerial.success).toBe(false);
  });

  it('the fleet table prints what a table item says without its control characters', () => {
    // Arrange
    const node: NodeRecord = {
      cluster: 'prod',
      instanceId: 'i-0000000000000000a',
      role: 'client',
      ip: '10.0.0.1',
      status: 'failed',
      failures: 1,
      lastError: `install-failed${HOSTILE}`,
      lastAction: `rotate${ESC}[1A`,
      version: 1,
      updatedAt: 0,
    };

    // Act
    const table = renderFleetTable([node], 0);

    // Assert
    expect(hasControlCharacter(table)).toBe(false);
    expect(table).toContain('failed (install-failedok)');
    expect(table).toContain('rotate');
  });
});
