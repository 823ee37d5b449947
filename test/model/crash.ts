import { AsyncLocalStorage } from 'node:async_hooks';

/** The process running an action died at a write; nothing it would have done after that happens. */
export class SimulatedCrash extends Error {
  override readonly name = 'SimulatedCrash';
}

/** One Lambda invocation: its own write count, and whether it is dead. */
export interface Actor {
  crashAtWrite?: number;
  /**
   * Die at the first write after the first command this run sends: the one spot a command exists
   * that no attempt item names. A write count alone lands there too rarely to matter.
   */
  crashAfterSend?: boolean;
  /** Set once the run has sent a command, when it is to die right after. */
  dyingAfterSend?: boolean;
  writes: number;
  crashed: boolean;
}

const actors = new AsyncLocalStorage<Actor>();

export function runAs<T>(actor: Actor, work: () => Promise<T>): Promise<T> {
  return actors.run(actor, work);
}

/** A dead process neither writes, sends, signs nor publishes; reads are harmless and left alone. */
export function assertAlive(): void {
  if (actors.getStore()?.crashed === true) throw new SimulatedCrash('the process is gone');
}

/** The invocation the calling code runs in, if it runs in one. */
export function currentActor(): Actor | undefined {
  return actors.getStore();
}
