// iLLaVA v2 selection (illava-method.md §3.4, mode 3): keep the top-k tokens by score; the last pc of
// them are "recycling" tokens, each absorbing its most similar dropped tokens.
import * as tf from '@tensorflow/tfjs-core';
import { buildPlan, type MergePlan } from './plan.js';
import { checkInteger, checkMergeInput, checkRank, checkScores, rankDescending, roundHalfEven } from './util.js';

/** A recycling token and the dropped tokens folded into it. */
export interface RecyclingToken {
  token: number;
  /** Dropped tokens absorbed, most similar first. */
  neighbours: number[];
  /** Raw dot products of keys with them. */
  similarities: number[];
  /** softmax(similarities / sqrt(Dk)); the new value is (own + sum w_m x_m) / 2. */
  weights: number[];
}

export interface RecycleSelection {
  /** Kept unchanged (top k - pc), best first. */
  informative: number[];
  recycling: RecyclingToken[];
  /** Not kept (may or may not feed a recycling token), best first. */
  dropped: number[];
}

export interface RecycleOptions {
  /** pc = max(1, round(k * recycleRatio)) recycling tokens (Python round, half to even); default 0.05. */
  recycleRatio?: number;
  /** Dropped tokens each recycling token absorbs (fewer if fewer were dropped); default 5. */
  neighbours?: number;
}

/**
 * Core of the rule over a candidate subset (global indices): ranks `candidates` by score (descending;
 * equal scores: the LOWER index ranks higher; equal similarities: the lower index is picked first),
 * keeps k, makes the last pc of them recycling tokens. Returns the selection and the plan rows of the
 * recycling tokens (anchor -> sources/weights over global indices).
 */
export function recycleCandidates(
  candidates: readonly number[],
  score: (i: number) => number,
  keys: tf.Tensor2D,
  k: number,
  options: RecycleOptions = {},
): { selection: RecycleSelection; merged: Map<number, { sources: number[]; weights: number[] }> } {
  const ratio = options.recycleRatio ?? 0.05;
  const m = options.neighbours ?? 5;
  checkInteger(k, 'keep (tokens kept)', 1);
  checkInteger(m, 'neighbours', 1);
  if (!(ratio >= 0 && ratio <= 1)) throw new Error(`recycleRatio must be in [0, 1], got ${ratio}`);
  if (k > candidates.length) throw new Error(`cannot keep ${k} of ${candidates.length} candidate tokens`);
  const ranked = rankDescending(candidates, score);
  const pc = Math.min(k, Math.max(1, roundHalfEven(k * ratio)));
  const informative = ranked.slice(0, k - pc);
  const rec = ranked.slice(k - pc, k);
  const dropped = ranked.slice(k);
  const merged = new Map<number, { sources: number[]; weights: number[] }>();
  const recycling: RecyclingToken[] = rec.map((token) => ({ token, neighbours: [], similarities: [], weights: [] }));
  if (dropped.length > 0) {
    const sim = tf.tidy(() => {
      const idx = (a: number[]) => tf.tensor1d(a, 'int32');
      return tf.matMul(tf.gather(keys, idx(rec)), tf.gather(keys, idx(dropped)), false, true);
    });
    const s = sim.dataSync();
    sim.dispose();
    const scale = 1 / Math.sqrt(keys.shape[1]);
    const nd = dropped.length;
    recycling.forEach((rt, p) => {
      const order = dropped.map((_, j) => j).sort((a, b) => s[p * nd + b] - s[p * nd + a] || dropped[a] - dropped[b]);
      const top = order.slice(0, Math.min(m, nd));
      rt.neighbours = top.map((j) => dropped[j]);
      rt.similarities = top.map((j) => s[p * nd + j]);
      const mx = Math.max(...rt.similarities);
      const e = rt.similarities.map((v) => Math.exp((v - mx) * scale));
      const z = e.reduce((a, b) => a + b, 0);
      rt.weights = e.map((v) => v / z);
      merged.set(rt.token, { sources: [rt.token, ...rt.neighbours], weights: [0.5, ...rt.weights.map((w) => w / 2)] });
    });
  }
  return { selection: { informative, recycling, dropped }, merged };
}

export interface SimilarityRecycleInput extends RecycleOptions {
  /** [N] ranking score (higher = more important). */
  scores: ArrayLike<number>;
  /** [N, Dk] vectors for the similarity (raw dot product; the authors' v2 code uses the token features). Not disposed. */
  keys: tf.Tensor2D;
  /** k: tokens kept among the non-protected ones. */
  keep: number;
  /** Indices never dropped nor merged (e.g. CLS = 0); not counted in k. */
  protect?: readonly number[];
}

export interface SimilarityRecycleResult {
  /** N tokens -> k + protected, in original order. */
  plan: MergePlan;
  selection: RecycleSelection;
}

/**
 * Similarity recycling: of the k kept (top-k by score), the top k - pc are kept as they are, the next
 * pc = max(1, round(k * recycleRatio)) become recycling tokens. Each takes its `neighbours` most
 * similar dropped tokens (dot product of keys), weights them by softmax(sim / sqrt(Dk)), and becomes
 * (own + sum_m w_m x_m) / 2. A dropped token may feed several recycling tokens or none. Output keeps
 * the original order. No dropped tokens (k = all candidates): the identity plan.
 */
export function similarityRecycle(input: SimilarityRecycleInput): SimilarityRecycleResult {
  checkMergeInput('similarityRecycle', input, ['keys'], [], ['scores']);
  const { keys, scores } = input;
  checkRank(keys.shape, 2, 'keys', '[tokens, dims]');
  const n = keys.shape[0];
  if (scores.length !== n) throw new Error(`similarityRecycle: keys (${n}) and scores (${scores.length}) must have the same token count`);
  checkScores(scores, 'similarityRecycle');
  const protect = new Set(input.protect ?? []);
  const candidates = [...Array(n).keys()].filter((i) => !protect.has(i));
  const { selection, merged } = recycleCandidates(candidates, (i) => scores[i], keys, input.keep, input);
  return { plan: buildPlan(n, new Set(selection.dropped), merged), selection };
}
