// Shared inputs of the merge/ unit tests: a seeded generator, random rows, float32 bit patterns.
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import { applyPlan, keptIndices, TokenState, type MergePlan, type Span } from '../../merge/index.js';

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

/** A rule's result with its plan applied to `hidden` (the caller disposes `hidden` of the result), and the kept anchors. */
export function applied<R extends { plan: MergePlan }>(out: R, hidden: tf.Tensor2D): R & { keptIndices: number[]; hidden: tf.Tensor2D } {
  return { ...out, keptIndices: keptIndices(out.plan), hidden: applyPlan(out.plan, hidden) };
}

/** A language rule's result applied to a sequence through TokenState: hidden states, position ids and spans after it. */
export function appliedSequence<R extends { plan: MergePlan }>(
  out: R,
  input: { hidden: tf.Tensor2D; positionIds: ArrayLike<number>; spans: ReadonlyArray<Span> },
): R & { keptIndices: number[]; hidden: tf.Tensor2D; positionIds: number[]; spans: Span[] } {
  const images = input.spans.map(([s, e]) => ({ patches: e - s, sources: null, stages: [] }));
  const next = TokenState.sequence(Array.from(input.positionIds), input.spans, images).advance(out.plan, input.hidden, { stage: 'llm', layer: 0 });
  return { ...out, keptIndices: keptIndices(out.plan), hidden: next.hidden, positionIds: [...next.state.positionIds], spans: next.state.spans.map(([s, e]) => [s, e]) };
}

/** Attention [H, N, N] where every query row of head h equals rows[h] (so received = mean of rows). */
export const constantRowsAttn = (rows: number[][]): tf.Tensor3D => tf.tensor3d(rows.map((r) => r.map(() => r)));

/** Two heads whose received attention (their mean) is [0.3, 0.11, 0.2, 0.05, 0.15, 0.19]; each row sums to 1. */
export const SIX_TOKEN_HEADS = [
  [0.3, 0.1, 0.25, 0.05, 0.2, 0.1],
  [0.3, 0.12, 0.15, 0.05, 0.1, 0.28],
];
