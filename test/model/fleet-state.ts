/** What the model fleet remembers: its nodes, the commands sent to them and each command's invocations. */

import type { SignedPair } from '../../shared/certificates/commands';
import type { NodeRole } from '../../shared/certificates/names';
import type { IssuedFact } from './model-authority';

export interface KeyPairIndex {
  agent: number;
  cli: number;
}

export interface InstalledSet {
  keys: KeyPairIndex;
  agent: IssuedFact;
  cli: IssuedFact;
}

export interface FakeNode {
  cluster: string;
  instanceId: string;
  role: NodeRole;
  ip: string;
  online: boolean;
  terminated: boolean;
  /** The keys `prepare` left in .pending, and the attempt id written beside them. */
  pending?: { attemptId: string; keys: KeyPairIndex };
  installed?: InstalledSet;
}

export type Step = 'prepare' | 'install';

export interface Invocation {
  commandId: string;
  target: string;
  state: 'running' | 'succeeded' | 'failed';
  stdout: string;
  detail: string;
}

export interface SentCommand {
  commandId: string;
  /** The cluster whose engine sent it (its plan's commands port), not what the routing key says. */
  cluster: string;
  routingKey: string;
  step: Step;
  targets: string[];
  attemptId: string;
  mode: 'reload' | 'restart';
  sentAt: number;
  /** When the node agent kills what is still running. */
  killAt: number;
  pairs: readonly SignedPair[];
  invocations: Map<string, Invocation>;
  /** Targets whose attempt recorded this command id: the others were sent by a run that died first. */
  recorded: Set<string>;
}

export type FinishOutcome = 'success' | 'failure';

export interface DispatchRequest {
  attemptId: string;
  routingKey: string;
  mode?: 'reload' | 'restart';
  pairs?: readonly SignedPair[];
}
