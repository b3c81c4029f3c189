// ToMe bipartite soft matching (Bolya et al., facebookresearch/ToMe; illava-method.md §7), with
// size-weighted averages and proportional attention. Survivors are put back in original order.
import * as tf from '@tensorflow/tfjs-core';
import { buildPlan, planSizes, type MergePlan } from './plan.js';
import { checkInteger, checkMergeInput, checkRank } from './util.js';

export interface TomeInput {
  /** [N, Dk] matching metric: the keys averaged over heads. Not disposed. */
  metric: tf.Tensor2D;
  /** [N] token sizes (patches per token); default all ones. A tensor is not disposed. */
  size?: tf.Tensor1D | ArrayLike<number>;
  /** r: A tokens merged into B tokens by this step. */
  remove: number;
  /** Index 0 is a CLS token (in set A): protected, never merged. */
  clsToken: boolean;
}

export interface TomeMatch {
  /** Merged A token (removed). */
  source: number;
  /** B token it joins. */
  destination: number;
  /** Cosine similarity of the edge. */
  similarity: number;
}

export interface TomeResult {
  /** N tokens -> N - r; a merged row is the size-weighted mean sum(s_j x_j) / sum(s_j). */
  plan: MergePlan;
  /** [N - r] sizes after the step (they add up): planSizes(plan, size). */
  sizes: Float32Array;
  /** The r merged edges, highest similarity first. */
  matches: TomeMatch[];
}

/**
 * ToMe bipartite soft matching. metric is L2-normalised (norm clamped at 1e-12); A = even indices,
 * B = odd indices; cosine similarity A x B; the CLS token (index 0, in A) is protected (its scores are
 * -inf). Each A token's best B match is taken; the r A tokens with the highest best-edge similarity
 * merge into their match: size-weighted average, sizes add up. Requires r <= |A| - protected.
 * Tie rules: equal similarities in a row -> the LOWER B index is the match; equal best edges -> the
 * LOWER A index merges first.
 * Output order: upstream ToMe returns [unmerged A, B]; here every survivor is put back in ORIGINAL
 * order, and a merged token takes the slot of its B token (the destination), since in LLaVA the order
 * of image tokens carries the spatial layout.
 */
export function tomeBipartite(input: TomeInput): TomeResult {
  checkMergeInput('tomeBipartite', input, ['metric']);
  const { metric, remove: r, clsToken } = input;
  checkRank(metric.shape, 2, 'metric', '[tokens, dims]');
  const n = metric.shape[0];
  checkInteger(r, 'remove');
  const sizes = readSizes(input.size, n);
  const aIdx: number[] = [];
  const bIdx: number[] = [];
  for (let i = 0; i < n; i++) (i % 2 === 0 ? aIdx : bIdx).push(i);
  const isProtected = (i: number) => clsToken && i === 0;
  const allowed = aIdx.length - (clsToken && n > 0 ? 1 : 0);
  const maxR = bIdx.length === 0 ? 0 : allowed;
  if (r > maxR) throw new Error(`tomeBipartite: cannot merge ${r} tokens: at most ${maxR} of ${n} (|A| = ${aIdx.length}, protected = ${clsToken ? 1 : 0})`);
  const matches: TomeMatch[] = [];
  if (r > 0) {
    const sim = tf.tidy(() => {
      const m = tf.div(metric, tf.maximum(tf.norm(metric, 'euclidean', 1, true), 1e-12));
      const idx = (a: number[]) => tf.tensor1d(a, 'int32');
      return tf.matMul(tf.gather(m, idx(aIdx)), tf.gather(m, idx(bIdx)), false, true);
    });
    const s = sim.dataSync();
    sim.dispose();
    const nb = bIdx.length;
    const edges: TomeMatch[] = [];
    aIdx.forEach((a, p) => {
      if (isProtected(a)) return;
      let best = 0;
      for (let q = 1; q < nb; q++) if (s[p * nb + q] > s[p * nb + best]) best = q;
      edges.push({ source: a, destination: bIdx[best], similarity: s[p * nb + best] });
    });
    edges.sort((e1, e2) => e2.similarity - e1.similarity || e1.source - e2.source);
    matches.push(...edges.slice(0, r));
  }
  const into = new Map<number, number[]>();
  for (const m of matches) into.set(m.destination, [...(into.get(m.destination) ?? []), m.source]);
  const merged = new Map<number, { sources: number[]; weights: number[] }>();
  into.forEach((src, b) => {
    const sources = [b, ...src.sort((p, q) => p - q)];
    const total = sources.reduce((acc, j) => acc + sizes[j], 0);
    merged.set(b, { sources, weights: sources.map((j) => sizes[j] / total) });
  });
  const plan = buildPlan(n, new Set(matches.map((m) => m.source)), merged);
  return { plan, sizes: planSizes(plan, sizes), matches };
}

function readSizes(size: tf.Tensor1D | ArrayLike<number> | undefined, n: number): Float32Array {
  const out = size === undefined ? new Float32Array(n).fill(1) : size instanceof tf.Tensor ? Float32Array.from(size.dataSync()) : Float32Array.from(size);
  if (out.length !== n) throw new Error(`tomeBipartite: size has ${out.length} entries, metric has ${n} tokens`);
  return out;
}

/** ToMe proportional attention: log(size) [N], added to the attention logits over the keys. Caller disposes. */
export function proportionalAttentionBias(size: tf.Tensor1D | ArrayLike<number>): tf.Tensor1D {
  return size instanceof tf.Tensor ? tf.log(size) : tf.tidy(() => tf.log(tf.tensor1d(Float32Array.from(size))));
}
