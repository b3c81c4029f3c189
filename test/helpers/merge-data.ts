// Shared inputs of the merge/ unit tests: a seeded generator, random rows, float32 bit patterns.
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';

/** Every merge rule must give the same result on both backends. */
export const BACKENDS = ['cpu', 'wasm'] as const;

/** mulberry32: a small seeded generator, so test inputs are the same on every run. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n rows of c values in about [-2.5, 2.5). */
export function randomRows(n: number, c: number, seed: number): number[][] {
  const r = rng(seed);
  return Array.from({ length: n }, () => Array.from({ length: c }, () => (r() - 0.5) * 5.1));
}

/** Float32 bit patterns of a row, to compare bit-for-bit. */
export const bits = (row: ArrayLike<number>): number[] => Array.from(new Uint32Array(Float32Array.from(row).buffer));
