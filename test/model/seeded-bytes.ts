/**
 * A stand-in for `randomBytes` while a schedule runs. Rollout ids and tokens decide the order of
 * install batches, so with real randomness a shrunk counterexample would not replay the run it came
 * from. Nothing here may import `node:crypto`: the test mocks that module with this one.
 */

let state = 0x9e3779b9;

export function reseed(seed: number): void {
  state = seed >>> 0 || 0x9e3779b9;
}

/** xorshift32: not random in any strong sense, only varied enough that ids do not collide within a run. */
export function seededBytes(size: number): Buffer {
  const bytes = Buffer.alloc(size);
  for (let index = 0; index < size; index += 1) {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    bytes[index] = state & 0xff;
  }
  return bytes;
}
