import type { NodeStore } from './store';

/**
 * Attempts' targets split by the SSM ping status inventory last recorded: a command to a node whose
 * agent lost its connection would only wait out its delivery timeout.
 */
export async function splitByReachability<Attempt extends { target: string }>(
  nodes: Pick<NodeStore, 'getNodes'>,
  cluster: string,
  attempts: readonly Attempt[],
): Promise<{ online: Attempt[]; offline: Attempt[] }> {
  const records = new Map(
    (
      await nodes.getNodes(
        cluster,
        attempts.map((attempt) => attempt.target),
      )
    ).map((node) => [node.instanceId, node]),
  );
  const lost = (attempt: Attempt) => records.get(attempt.target)?.ping === 'ConnectionLost';
  return { online: attempts.filter((attempt) => !lost(attempt)), offline: attempts.filter(lost) };
}
