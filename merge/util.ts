// Small shared helpers for the merge rules: rounding, ranking with a fixed tie rule, checks.
// Plain JS (no tensors), so every rule ranks tokens identically on every tfjs backend.

/**
 * Python's `round` (round half to even), which the authors' code uses for token counts:
 * roundHalfEven(2.5) = 2, roundHalfEven(3.5) = 4, roundHalfEven(100.8) = 101.
 * JS doubles and Python floats are both IEEE binary64, so `L * (1 - keep)` is the same value
 * in both languages and this gives the same count as the reference code.
 */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * Sorts `indices` from the best to the worst score: score descending; among EQUAL scores the
 * LOWER index ranks higher (is treated as the higher score). This is the one tie rule of every
 * rule in merge/: the lower index is kept first / becomes the destination first / is dropped last.
 * Returns a new array; `indices` is not modified.
 */
export function rankDescending(indices: readonly number[], score: (i: number) => number): number[] {
  return [...indices].sort((a, b) => {
    const sa = score(a);
    const sb = score(b);
    if (sa > sb) return -1;
    if (sa < sb) return 1;
    return a - b;
  });
}

/** Throws a clear error when a score is NaN (a NaN would make the ranking meaningless). */
export function checkScores(scores: ArrayLike<number>, what: string): void {
  for (let i = 0; i < scores.length; i++) {
    if (Number.isNaN(scores[i])) throw new Error(`${what}: score of token ${i} is NaN`);
  }
}

/** Throws unless `n` is an integer >= min. */
export function checkInteger(n: number, name: string, min = 0): void {
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer >= ${min}, got ${n}`);
}

/** Throws unless the tensor shape has the expected rank, with a readable message. */
export function checkRank(shape: readonly number[], rank: number, name: string, layout: string): void {
  if (shape.length !== rank) throw new Error(`${name} must be ${layout}, got shape [${shape.join(', ')}]`);
}
