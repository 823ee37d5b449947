/**
 * What the gossip plan may do next, decided only from what every expected server reported. Keys are
 * named by fingerprint throughout. The rules follow serf's and Nomad's behaviour: the keyring API
 * shows no per-server primary (the keyring file's first entry does); `NumNodes` leaves out servers
 * already marked failed, so a count equal to the members that answered proves nothing about the
 * expected set; removing a key that a live server still uses as primary cuts that server off.
 */

/** One server's view of the gossip keyring, as every gossip step reports it (fingerprints only). */
export interface ServerGossipReport {
  instanceId: string;
  /** `/v1/agent/keyring/list` on this server: counts by key fingerprint, or why it failed. */
  list:
    | { ok: true; counts: Readonly<Record<string, number>>; numNodes: number }
    | { ok: false; error: string };
  /** Fingerprints in `serf.keyring`, primary first; undefined when the file does not exist. */
  keyringFile?: readonly string[];
  /** `/v1/agent/health?type=server` answered 200. */
  healthy: boolean;
  /** Servers this one sees `alive` in `/v1/agent/members`. */
  aliveServers: number;
  /**
   * Every member this one sees, whatever its status: more than the expected servers means a pool
   * shared with servers the rotation does not cover (another region, a stranger).
   */
  members?: number;
}

/**
 * A server gossiping in clear has no keyring file, and its list fails with only "x/y nodes reported
 * failure": serf's per-node "Keyring is empty (encryption not enabled)" stays in the Messages that
 * Nomad drops on an error (serf keymanager.go handleKeyRequest, nomad agent_endpoint.go).
 */
export function gossipsInClear(report: Pick<ServerGossipReport, 'list' | 'keyringFile'>): boolean {
  return !report.list.ok && report.keyringFile === undefined;
}

export type Verdict = { go: true } | { go: false; reasons: string[]; waitFor?: string[] };

/**
 * Before a rotation: every expected server answered, all use one key as primary (the current key,
 * whatever set it: the rotator or a hand-written `encrypt`), hold it and no other key but the
 * rotation's own `next` (a rotation that resumes after its install), see every server alive and are
 * healthy. A cluster whose servers all gossip in clear is for the enable mode, not for a rotation.
 */
export function preCheck(
  expected: readonly string[],
  reports: readonly ServerGossipReport[],
  next: string,
): { go: true; current: string } | { go: false; reasons: string[]; waitFor?: string[]; enable?: true } {
  const byId = reportsOf(expected, reports);
  const missing = expected.filter((id) => !byId.has(id));
  if (missing.length > 0)
    return { go: false, reasons: [`no report from ${missing.join(', ')}`], waitFor: missing };
  const inClear = expected.filter((id) => gossipsInClear(byId.get(id)!));
  if (inClear.length === expected.length) {
    return { go: false, enable: true, reasons: ['every server gossips in clear: enable encryption first'] };
  }
  const reasons: string[] = [];
  const current = byId.get(expected[0]!)?.keyringFile?.[0];
  if (current === undefined || current === next)
    reasons.push(`${expected[0]}: no keyring file with a primary other than the new key`);
  for (const id of expected) {
    const report = byId.get(id)!;
    reasons.push(...common(id, report, expected.length));
    const counts = report.list.ok ? report.list.counts : {};
    const resumed = { [current ?? '']: expected.length, [next]: expected.length };
    if (
      report.list.ok &&
      !sameKeys(counts, { [current ?? '']: expected.length }) &&
      !sameKeys(counts, resumed)
    ) {
      reasons.push(`${id}: the keyring holds other keys than the current one, or not on every server`);
    }
    if (report.keyringFile?.[0] !== current)
      reasons.push(`${id}: its keyring file's primary differs from the other servers'`);
  }
  return reasons.length === 0 && current !== undefined ? { go: true, current } : { go: false, reasons };
}

/**
 * After `install`: every expected server holds both keys, each on all of them, and its file still
 * has the old key first. A server that did not answer, or answers from a smaller cluster, is waited
 * for: `use` before it holds the new key would cut it off.
 */
export function installVerified(
  expected: readonly string[],
  reports: readonly ServerGossipReport[],
  keys: { current: string; next: string },
): Verdict {
  const byId = reportsOf(expected, reports);
  const waitFor = expected.filter((id) => {
    const report = byId.get(id);
    return report === undefined || !report.list.ok;
  });
  const reasons = waitFor.map((id) => `${id}: not yet seen holding the new key (no answer)`);
  for (const id of expected.filter((candidate) => !waitFor.includes(candidate))) {
    const report = byId.get(id)!;
    reasons.push(...common(id, report, expected.length));
    const counts = report.list.ok ? report.list.counts : {};
    if (!sameKeys(counts, { [keys.current]: expected.length, [keys.next]: expected.length })) {
      reasons.push(`${id}: the new key is not installed on every server`);
    }
    if (!report.keyringFile?.includes(keys.next)) reasons.push(`${id}: its keyring file lacks the new key`);
    if (report.keyringFile?.[0] !== keys.current) reasons.push(`${id}: its primary changed before use`);
  }
  return waitFor.length > 0 ? { go: false, reasons, waitFor } : verdict(reasons);
}

/**
 * After `use`: the new key is every expected server's primary, and all of them see each other. The
 * old key may be removed only on this verdict: removing it from under a server that still uses it
 * as primary cuts that server off.
 */
export function useVerified(
  expected: readonly string[],
  reports: readonly ServerGossipReport[],
  next: string,
): Verdict {
  const byId = reportsOf(expected, reports);
  const reasons: string[] = [];
  const waitFor: string[] = [];
  for (const id of expected) {
    const report = byId.get(id);
    if (report === undefined) {
      waitFor.push(id);
      reasons.push(`${id}: no report`);
      continue;
    }
    reasons.push(...common(id, report, expected.length));
    if (report.keyringFile?.[0] !== next) {
      waitFor.push(id);
      reasons.push(`${id}: the new key is not its primary yet (use again)`);
    }
  }
  return reasons.length > 0 ? { go: false, reasons, waitFor } : { go: true };
}

/**
 * After `remove`: only the new key is left, on every expected server. Servers that answer from a
 * smaller cluster, are unhealthy, or still have another primary were cut off: they need a repair.
 */
export function removeVerified(
  expected: readonly string[],
  reports: readonly ServerGossipReport[],
  next: string,
): Verdict & { stragglers: string[] } {
  const byId = reportsOf(expected, reports);
  // A cut-off server's own list answers for fewer servers than the rest see (its [1/1] against their [2/2]).
  const widestView = Math.max(
    0,
    ...[...byId.values()].map((report) => (report.list.ok ? report.list.numNodes : 0)),
  );
  const stragglers = expected.filter((id) => {
    const report = byId.get(id);
    return (
      report !== undefined &&
      (!report.healthy ||
        !report.list.ok ||
        report.list.numNodes < widestView ||
        report.keyringFile?.[0] !== next)
    );
  });
  const missing = expected.filter((id) => !byId.has(id));
  const reasons = [
    ...missing.map((id) => `${id}: no report`),
    ...stragglers.map((id) => `${id}: cut off from the other servers (repair it)`),
  ];
  for (const id of expected.filter((candidate) => byId.has(candidate) && !stragglers.includes(candidate))) {
    const report = byId.get(id)!;
    if (report.list.ok && !sameKeys(report.list.counts, { [next]: expected.length })) {
      reasons.push(`${id}: keys other than the new one are still installed`);
    }
  }
  const base: Verdict =
    reasons.length === 0
      ? { go: true }
      : { go: false, reasons, ...(missing.length > 0 ? { waitFor: missing } : {}) };
  return { ...base, stragglers };
}

function reportsOf(
  expected: readonly string[],
  reports: readonly ServerGossipReport[],
): Map<string, ServerGossipReport> {
  const wanted = new Set(expected);
  return new Map(
    reports.filter((report) => wanted.has(report.instanceId)).map((report) => [report.instanceId, report]),
  );
}

/** What every stage asks of every server: a keyring that answers for all of them, health, members alive. */
function common(id: string, report: ServerGossipReport, serverCount: number): string[] {
  const reasons: string[] = [];
  if (!report.list.ok) reasons.push(`${id}: the keyring list failed`);
  else if (report.list.numNodes !== serverCount) {
    reasons.push(`${id}: the keyring answered for ${report.list.numNodes} of ${serverCount} servers`);
  }
  if (!report.healthy) reasons.push(`${id}: not healthy`);
  if (report.aliveServers !== serverCount) {
    reasons.push(`${id}: sees ${report.aliveServers} of ${serverCount} servers alive`);
  }
  if (report.members !== undefined && report.members > serverCount) {
    reasons.push(
      `${id}: its gossip pool has ${report.members} members, more than the ${serverCount} servers expected`,
    );
  }
  return reasons;
}

function sameKeys(
  counts: Readonly<Record<string, number>>,
  expected: Readonly<Record<string, number>>,
): boolean {
  const actual = Object.entries(counts).sort();
  const wanted = Object.entries(expected).sort();
  return JSON.stringify(actual) === JSON.stringify(wanted);
}

function verdict(reasons: string[]): Verdict {
  return reasons.length === 0 ? { go: true } : { go: false, reasons };
}
