/**
 * The contract between the SSM emulator (which speaks the AWS API) and the node sandboxes (which
 * play EC2 instances with an SSM agent). The emulator decides *what* runs and reports it the way
 * SSM does; a managed node decides *how* a script runs on "its" machine.
 */

export type PingStatus = 'Online' | 'ConnectionLost';

export interface ScriptRun {
  /** The document's aws:runShellScript lines after {{ parameter }} substitution, joined with newlines. */
  script: string;
  commandId: string;
  /** Seconds before the agent kills the script (the step's timeoutSeconds / executionTimeout). */
  timeoutSeconds: number;
}

/** A script as SSM delivers it, with the document and parameters it came from. */
export interface CommandRun extends ScriptRun {
  documentName: string;
  parameters: Readonly<Record<string, readonly string[]>>;
}

export interface ScriptResult {
  /** Exit code as the agent sees it; 137 when it killed the script on timeout. */
  exitCode: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface ManagedNode {
  readonly instanceId: string;
  readonly computerName: string;
  readonly ipAddress: string;
  readonly tags: Readonly<Record<string, string>>;
  /** What SSM's DescribeInstanceInformation reports; a node that is not Online gets no commands. */
  pingStatus(): PingStatus;
  /**
   * Run a delivered command as the SSM agent would: a sandbox runs the script as root (`sh -c
   * <file>`); a simulated node answers from the document and its parameters.
   */
  runScript(run: CommandRun): Promise<ScriptResult>;
}

export interface Fleet {
  nodes(): readonly ManagedNode[];
  node(instanceId: string): ManagedNode | undefined;
}
