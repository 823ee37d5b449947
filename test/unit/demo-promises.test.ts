import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

/** Names of the methods a class in `file` declares `async`: each returns a promise the caller must await. */
function asyncMethods(file: string): string[] {
  return [...readFileSync(file, 'utf8').matchAll(/^ {2}async (\w+)\(/gm)].map((match) => match[1]!);
}

/**
 * Calls in `file` to any of `methods` whose statement does not await them, as `line: statement`.
 * TypeScript 7 ships no compiler API and Biome's noFloatingPromises does not see through the
 * world's types, so this reads the statements themselves: the demo calls these methods one per line.
 */
function unawaitedCalls(file: string, methods: readonly string[]): string[] {
  const call = new RegExp(`\\.(${methods.join('|')})\\(`);
  return readFileSync(file, 'utf8')
    .split('\n')
    .flatMap((line, index) =>
      call.test(line) && !/^\s*(await|return)\s/.test(line) ? [`${index + 1}: ${line.trim()}`] : [],
    );
}

describe('the demo', () => {
  it('waits for every node fault it sets or clears before the step meant to meet it', () => {
    const nodeMethods = asyncMethods('local/node/sandbox.ts');

    const unawaited = unawaitedCalls('local/demo.ts', nodeMethods);

    expect(nodeMethods).toEqual(expect.arrayContaining(['injectFault', 'clearFault']));
    expect(unawaited).toEqual([]);
  });
});
