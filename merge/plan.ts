// MergePlan: the outcome of one merge step, computed once by a rule (from scores or similarities)
// and then applied to every tensor or array that must follow the tokens (hidden states, ToMe sizes,
// position ids, source maps). Same idea as ToMe's merge.py returning a `merge` closure.
import * as tf from '@tensorflow/tfjs-core';

/** One output token, described over the input tokens. */
export interface PlanRow {
  /** Input index whose slot, order and position id the output token takes. */
  anchor: number;
  /** Input indices combined into this token. A kept token is `[anchor]`. */
  sources: number[];
  /** One weight per source. For a weighted mean they sum to 1. A kept token is `[1]`. */
  weights: number[];
}

/** The output token list as rows over `inputCount` input tokens, in output order. */
export interface MergePlan {
  inputCount: number;
  rows: PlanRow[];
}

/** A plan that keeps every token. */
export function identityPlan(n: number): MergePlan {
  const rows: PlanRow[] = [];
  for (let i = 0; i < n; i++) rows.push({ anchor: i, sources: [i], weights: [1] });
  return { inputCount: n, rows };
}

/**
 * Builds a plan in original order: every input not in `dropped` becomes a row; the rows whose
 * anchor is in `merged` take those sources/weights, the others are plain copies.
 */
export function buildPlan(
  inputCount: number,
  dropped: ReadonlySet<number>,
  merged: ReadonlyMap<number, { sources: number[]; weights: number[] }> = new Map(),
): MergePlan {
  const rows: PlanRow[] = [];
  for (let i = 0; i < inputCount; i++) {
    if (dropped.has(i)) continue;
    const m = merged.get(i);
    rows.push(m ? { anchor: i, sources: [...m.sources], weights: [...m.weights] } : { anchor: i, sources: [i], weights: [1] });
  }
  return { inputCount, rows };
}

/** A row that is a pure copy of one input (copied bit-for-bit by applyPlan). */
function copyOf(row: PlanRow): number | null {
  return row.sources.length === 1 && row.weights[0] === 1 ? row.sources[0] : null;
}

/** True when the plan returns exactly its input (same tokens, same order, no mixing). */
export function isIdentityPlan(plan: MergePlan): boolean {
  return plan.rows.length === plan.inputCount && plan.rows.every((r, i) => r.anchor === i && copyOf(r) === i);
}

/** Anchors in output order: the input index each output token stands at. */
export function keptIndices(plan: MergePlan): number[] {
  return plan.rows.map((r) => r.anchor);
}

function checkInput(plan: MergePlan, rows: number, what: string): void {
  if (rows !== plan.inputCount) throw new Error(`${what}: plan expects ${plan.inputCount} input tokens, got ${rows}`);
}

/**
 * How applyPlan places the rows. 'gather': one tf.gather from concat([x, mixed]). 'copy': the same
 * rows copied in JS from x's and mixed's data into a new tensor. Both are bit-exact for copy rows.
 * Default 'auto' = 'copy' on the cpu and wasm backends (their data is in JS/wasm memory; tfjs-wasm's
 * Gather kernel is ~8x slower than the copy: 28 ms vs 3.5 ms for 505 of 577 x 1024 rows, 117 ms for
 * 599 of 700 x 4096), 'gather' elsewhere (native/GPU backends, where a read-back would cost more).
 */
export type PlacementMethod = 'auto' | 'gather' | 'copy';

/**
 * Applies the plan to x [inputCount, C] -> [rows, C]: copy rows are taken bit-for-bit; mixed rows
 * are `W @ x` with a dense W [G, inputCount] (G = number of mixed rows; a plain 2-D matMul without
 * transposes, the XNNPACK path on wasm); then every row is placed in output order (see
 * PlacementMethod). Returns a new tensor owned by the caller; `x` is not disposed.
 */
export function applyPlan(plan: MergePlan, x: tf.Tensor2D, method: PlacementMethod = 'auto'): tf.Tensor2D {
  checkInput(plan, x.shape[0], 'applyPlan');
  if (isIdentityPlan(plan)) return tf.clone(x);
  const n = plan.inputCount;
  const c = x.shape[1];
  const index: number[] = [];
  const mixedRows: PlanRow[] = [];
  for (const row of plan.rows) {
    const k = copyOf(row);
    if (k !== null) index.push(k);
    else index.push(n + mixedRows.push(row) - 1);
  }
  if (plan.rows.length === 0) return tf.zeros([0, c], x.dtype) as tf.Tensor2D;
  let mixed: tf.Tensor2D | null = null;
  if (mixedRows.length > 0) {
    const w = new Float32Array(mixedRows.length * n);
    mixedRows.forEach((row, g) => row.sources.forEach((s, j) => (w[g * n + s] += row.weights[j])));
    mixed = tf.tidy(() => tf.matMul(tf.tensor2d(w, [mixedRows.length, n]), x) as tf.Tensor2D);
  }
  const backend = tf.getBackend();
  const copy = method === 'copy' || (method === 'auto' && (backend === 'cpu' || backend === 'wasm'));
  let out: tf.Tensor2D;
  if (copy) {
    const src = x.dataSync() as Float32Array | Int32Array;
    const mix = mixed ? mixed.dataSync() : null;
    const dst = x.dtype === 'int32' ? new Int32Array(index.length * c) : new Float32Array(index.length * c);
    index.forEach((k, o) => {
      if (k < n) dst.set(src.subarray(k * c, (k + 1) * c), o * c);
      else dst.set(mix!.subarray((k - n) * c, (k - n + 1) * c), o * c);
    });
    out = tf.tensor2d(dst, [index.length, c], x.dtype);
  } else {
    out = tf.tidy(() => tf.gather(mixed ? tf.concat([x, mixed], 0) : x, tf.tensor1d(index, 'int32')) as tf.Tensor2D);
  }
  mixed?.dispose();
  return out;
}

/**
 * Sums the sources of each row, ignoring the weights: used for ToMe's size vector (sizes add up).
 * x is [inputCount] or [inputCount, C]; copy rows stay bit-exact. Returns a new tensor.
 */
export function applyPlanSum<T extends tf.Tensor1D | tf.Tensor2D>(plan: MergePlan, x: T): T {
  const unweighted: MergePlan = {
    inputCount: plan.inputCount,
    rows: plan.rows.map((r) => ({ anchor: r.anchor, sources: r.sources, weights: r.sources.map(() => 1) })),
  };
  if (x.rank === 1) {
    return tf.tidy(() => tf.reshape(applyPlan(unweighted, tf.reshape(x, [-1, 1]) as tf.Tensor2D), [-1])) as T;
  }
  return applyPlan(unweighted, x as tf.Tensor2D) as T;
}

/** Sizes after the plan (ToMe's patches per token: the sources' sizes add up); `sizes` null = all ones. */
export function planSizes(plan: MergePlan, sizes: ArrayLike<number> | null): Float32Array {
  if (sizes) checkInput(plan, sizes.length, 'planSizes');
  return Float32Array.from(plan.rows, (row) => row.sources.reduce((acc, j) => acc + (sizes ? sizes[j] : 1), 0));
}

/** Plain arrays (position ids, labels): each output takes its anchor's value. */
export function applyPlanToArray<T>(plan: MergePlan, values: ArrayLike<T>): T[] {
  checkInput(plan, values.length, 'applyPlanToArray');
  return plan.rows.map((r) => values[r.anchor]);
}

/**
 * The part of a sequence plan that acts on the tokens [start, end), re-indexed to 0..end-start-1.
 * Every row anchored inside the range must take its sources from inside it (true for all rules here:
 * language merges never mix image spans with text).
 */
export function restrictPlan(plan: MergePlan, start: number, end: number): MergePlan {
  const rows: PlanRow[] = [];
  for (const r of plan.rows) {
    if (r.anchor < start || r.anchor >= end) continue;
    if (r.sources.some((s) => s < start || s >= end)) {
      throw new Error(`restrictPlan: row at ${r.anchor} takes sources outside [${start}, ${end})`);
    }
    rows.push({ anchor: r.anchor - start, sources: r.sources.map((s) => s - start), weights: [...r.weights] });
  }
  return { inputCount: end - start, rows };
}

/** Composition of two plans: applying the result equals applying `first` then `second`. */
export function composePlans(first: MergePlan, second: MergePlan): MergePlan {
  checkInput(second, first.rows.length, 'composePlans');
  const rows = second.rows.map((r) => {
    const acc = new Map<number, number>();
    r.sources.forEach((s, j) => {
      const inner = first.rows[s];
      inner.sources.forEach((t, k) => acc.set(t, (acc.get(t) ?? 0) + r.weights[j] * inner.weights[k]));
    });
    return { anchor: first.rows[r.anchor].anchor, sources: [...acc.keys()], weights: [...acc.values()] };
  });
  return { inputCount: first.inputCount, rows };
}
