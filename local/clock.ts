import type { Clock } from '../shared/clock';

/** A clock the local world and tests move by hand; every emulator reads time from one of these. */
export class ManualClock implements Clock {
  #now: number;

  constructor(start: number = Date.now()) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  advance(ms: number): void {
    if (ms < 0) throw new RangeError('a clock only moves forward');
    this.#now += ms;
  }

  set(epochMs: number): void {
    this.#now = epochMs;
  }
}

/** Real time shifted by a controllable offset: processes keep moving, tests can still jump ahead. */
export class OffsetClock implements Clock {
  #offsetMs = 0;

  now(): number {
    return Date.now() + this.#offsetMs;
  }

  advance(ms: number): void {
    if (ms < 0) throw new RangeError('a clock only moves forward');
    this.#offsetMs += ms;
  }

  /** Back to real time: after a demo or test has shown the scheduler a future moment. */
  reset(): void {
    this.#offsetMs = 0;
  }
}
