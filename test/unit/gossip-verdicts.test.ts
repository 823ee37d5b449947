import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  installVerified,
  preCheck,
  removeVerified,
  type ServerGossipReport,
  useVerified,
} from '../../shared/gossip/verdicts';

const OLD = 'aaaaaaaaaaaaaaaa';
const NEW = 'bbbbbbbbbbbbbbbb';
const SERVERS = ['i-0000000000000000a', 'i-0000000000000000b', 'i-0000000000000000c'];

/** A server of a healthy three-server cluster holding `keys` everywhere, `file` in its keyring file. */
function report(
  instanceId: string,
  keys: string[],
  file: string[],
  changes: Partial<ServerGossipReport> = {},
) {
  return {
    instanceId,
    list: {
      ok: true,
      counts: Object.fromEntries(keys.map((key) => [key, SERVERS.length])),
      numNodes: SERVERS.length,
    },
    keyringFile: file,
    healthy: true,
    aliveServers: SERVERS.length,
    ...changes,
  } satisfies ServerGossipReport;
}
const all = (keys: string[], file: string[]) => SERVERS.map((id) => report(id, keys, file));

describe('gossip verdicts', () => {
  it('lets a rotation start only on a cluster where every server uses the current key alone', () => {
    expect(preCheck(SERVERS, all([OLD], [OLD]), NEW)).toEqual({ go: true, current: OLD });
    // A rotation cut off after its install finds its own key installed too, still not in use.
    expect(preCheck(SERVERS, all([OLD, NEW], [OLD, NEW]), NEW)).toEqual({ go: true, current: OLD });

    const stale = preCheck(
      SERVERS,
      [...all([OLD], [OLD]).slice(0, 2), report(SERVERS[2]!, [OLD, NEW], [NEW, OLD])],
      NEW,
    );
    expect(stale.go).toBe(false);
    const stranger = preCheck(SERVERS, all([OLD, 'cccccccccccccccc'], [OLD, 'cccccccccccccccc']), NEW);
    expect(stranger.go).toBe(false);
  });

  it('sends a cluster that gossips in clear to the enable mode', () => {
    const inClear = SERVERS.map((id) =>
      report(id, [], [], {
        list: { ok: false, error: '3/3 nodes reported failure' },
        keyringFile: undefined,
      }),
    );

    expect(preCheck(SERVERS, inClear, NEW)).toMatchObject({ go: false, enable: true });
  });

  it('refuses a pool holding servers outside the expected set (another region, a stranger)', () => {
    const federated = SERVERS.map((id) =>
      report(id, [OLD], [OLD], { list: { ok: true, counts: { [OLD]: 5 }, numNodes: 5 }, aliveServers: 5 }),
    );

    const verdict = preCheck(SERVERS, federated, NEW);

    expect(verdict.go).toBe(false);
    expect(verdict.go === false && verdict.reasons.join()).toMatch(/answered for 5 of 3 servers/);
  });

  it('never allows use while a server was down during install: it is waited for', () => {
    // Once the stopped server is marked failed, the others' install succeeds [2/2] without it.
    const afterInstall = [
      report(SERVERS[0]!, [OLD, NEW], [OLD, NEW], {
        list: { ok: true, counts: { [OLD]: 2, [NEW]: 2 }, numNodes: 2 },
        aliveServers: 2,
      }),
      report(SERVERS[1]!, [OLD, NEW], [OLD, NEW], {
        list: { ok: true, counts: { [OLD]: 2, [NEW]: 2 }, numNodes: 2 },
        aliveServers: 2,
      }),
    ];

    const verdict = installVerified(SERVERS, afterInstall, { current: OLD, next: NEW });

    expect(verdict).toMatchObject({ go: false, waitFor: [SERVERS[2]] });
    expect(installVerified(SERVERS, all([OLD, NEW], [OLD, NEW]), { current: OLD, next: NEW })).toEqual({
      go: true,
    });
  });

  it('asks for use again on a server that missed it, and never lets the old key go before', () => {
    const missedUse = [
      ...all([OLD, NEW], [NEW, OLD]).slice(0, 2),
      report(SERVERS[2]!, [OLD, NEW], [OLD, NEW]),
    ];

    expect(useVerified(SERVERS, missedUse, NEW)).toMatchObject({ go: false, waitFor: [SERVERS[2]] });
    expect(useVerified(SERVERS, all([OLD, NEW], [NEW, OLD]), NEW)).toEqual({ go: true });
  });

  it('finds a server cut off by the removal and names it for repair', () => {
    // Its own list answers [1/1] with only the old key; the others no longer count it.
    const cutOff = report(SERVERS[2]!, [OLD], [OLD], {
      list: { ok: true, counts: { [OLD]: 1 }, numNodes: 1 },
      healthy: false,
      aliveServers: 1,
    });
    const others = all([NEW], [NEW])
      .slice(0, 2)
      .map((server) => ({
        ...server,
        list: { ok: true as const, counts: { [NEW]: 2 }, numNodes: 2 },
        aliveServers: 2,
      }));

    const verdict = removeVerified(SERVERS, [...others, cutOff], NEW);

    expect(verdict.go).toBe(false);
    expect(verdict.stragglers).toEqual([SERVERS[2]]);
    expect(removeVerified(SERVERS, all([NEW], [NEW]), NEW)).toEqual({ go: true, stragglers: [] });
  });

  it('never judges the old key removable while any expected server is missing or has another primary', () => {
    // Mostly healthy servers, so that the cases where only the primary decides come up often.
    const mostly = <T>(usual: T, other: fc.Arbitrary<T>) =>
      fc.oneof({ weight: 4, arbitrary: fc.constant(usual) }, { weight: 1, arbitrary: other });
    const serverReport = (id: string) =>
      fc.record({
        instanceId: fc.constant(id),
        list: fc.oneof(
          {
            weight: 4,
            arbitrary: fc.record({
              ok: fc.constant(true as const),
              counts: fc.dictionary(fc.constantFrom(OLD, NEW), fc.integer({ min: 0, max: 4 })),
              numNodes: mostly(3, fc.integer({ min: 0, max: 4 })),
            }),
          },
          {
            weight: 1,
            arbitrary: fc.record({
              ok: fc.constant(false as const),
              error: fc.constant('1/3 nodes reported success'),
            }),
          },
        ),
        keyringFile: fc.option(fc.array(fc.constantFrom(OLD, NEW), { maxLength: 2 }), {
          nil: undefined,
          freq: 8,
        }),
        healthy: mostly(true, fc.boolean()),
        aliveServers: mostly(3, fc.integer({ min: 0, max: 4 })),
      });
    const reports = fc.tuple(
      ...SERVERS.map((id) => fc.option(serverReport(id), { nil: undefined, freq: 8 })),
    );

    fc.assert(
      fc.property(reports, (maybe) => {
        const present = maybe.filter((entry) => entry !== undefined) as ServerGossipReport[];
        const safe = useVerified(SERVERS, present, NEW).go;
        const everyPrimaryNew =
          present.length === SERVERS.length && present.every((entry) => entry.keyringFile?.[0] === NEW);
        return !safe || everyPrimaryNew;
      }),
      { numRuns: 2_000 },
    );
  });
});
