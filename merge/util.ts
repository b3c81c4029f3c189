// Small shared helpers for the merge rules: rounding, ranking with a fixed tie rule, checks.
// Plain JS (no tensors), so every rule ranks tokens identically on every tfjs backend.
import * as tf from '@tensorflow/tfjs-core';

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

/** The r worst of `indices` by rankDescending's order, the lowest score first (what a pure pruning drops). */
export function lowestRanked(indices: readonly number[], score: (i: number) => number, r: number): number[] {
  if (r <= 0) return [];
  const ranked = rankDescending(indices, score);
  return ranked.slice(ranked.length - r).reverse();
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

function isTensor(x: unknown): x is tf.Tensor {
  return typeof x === 'object' && x !== null && Array.isArray((x as { shape?: unknown }).shape) && typeof (x as { dataSync?: unknown }).dataSync === 'function';
}

/**
 * Entry check of the public merge functions: `input` is an object, the named fields are tfjs
 * tensors (optional ones may be absent), `scores` (when named) an array of numbers, and a tfjs
 * backend is ready (tensors made before `await tf.ready()` on wasm fail deep inside tfjs).
 */
export function checkMergeInput(fn: string, input: unknown, tensors: string[], optionalTensors: string[] = [], arrays: string[] = []): void {
  if (typeof input !== 'object' || input === null) throw new Error(`${fn}: expected an input object with ${tensors.join(', ')}, got ${input === null ? 'null' : typeof input}`);
  const o = input as Record<string, unknown>;
  for (const k of [...tensors, ...optionalTensors]) {
    if (o[k] === undefined && optionalTensors.includes(k)) continue;
    if (!isTensor(o[k])) throw new Error(`${fn}: '${k}' must be a tfjs tensor, got ${o[k] === null ? 'null' : Array.isArray(o[k]) ? 'an array' : typeof o[k]}`);
    if ((o[k] as tf.Tensor).isDisposed) throw new Error(`${fn}: '${k}' has been disposed`);
  }
  for (const k of arrays) {
    const v = o[k];
    if (!(Array.isArray(v) || ArrayBuffer.isView(v))) throw new Error(`${fn}: '${k}' must be an array of numbers, got ${v === null ? 'null' : typeof v}`);
  }
  const engine = tf.engine() as unknown as { backendInstance?: unknown; pendingBackendInit?: unknown };
  if (!engine.backendInstance) {
    throw new Error(`${fn}: no tfjs backend is ready yet: \`await tf.setBackend('wasm')\` (or 'cpu') and \`await tf.ready()\` first (LlavaModel.fromPretrained does this)`);
  }
}
