// Attention-gated redundancy merging ('redundancy', issue 14): our own training-free rule. Same two
// stages and counts as iLLaVA (early encoder blocks, then one LLM layer), but a token is removed only
// when it is BOTH little attended AND nearly a copy of a token that stays; each removed token is
// recycled into its most similar survivor with a size-weighted average (ToMe's merge). Motivation
// (bench/eval/README.md): on the shapes model iLLaVA's score ranks the rare shape tokens LAST, and
// its recycling averages them away; a shape token is unlike every other token, so a redundancy
// test keeps it whatever its attention.
import * as tf from '@tensorflow/tfjs-core';
import { visionScores, type VisionScoreInput } from './illava-vision.js';
import { languageScores, removedCount, spanIndices, type LanguageInput, type LanguageResult } from './language-common.js';
import { buildPlan, type MergePlan } from './plan.js';
import { checkRank, rankDescending } from './util.js';

export interface RedundancyOptions {
  /** The pool of removal candidates is the ceil(pool x r) least-attended tokens (default 2; at least r). */
  pool?: number;
}

/** One removed token and the survivor it was recycled into. */
export interface RedundantMatch {
  source: number;
  destination: number;
  /** Cosine similarity of the two (at the time it was chosen). */
  similarity: number;
}

export interface RedundancySelection {
  /** The least-attended candidates the removals were chosen from, least attended first. */
  pool: number[];
  /** In the order chosen (most redundant first). */
  matches: RedundantMatch[];
}

/**
 * Cosine similarities [n x n] (row-major, float64) of the rows of `vectors` [n, d], computed in JS
 * from one read-back (norms clamped at 1e-12, as ToMe). For the 65 x 32 of the shapes model this is
 * ~0.2 ms where the same on wasm's small kernels took 1.5 ms, and it ranks alike on every backend.
 */
export function cosineMatrix(vectors: tf.Tensor2D): Float64Array {
  checkRank(vectors.shape, 2, 'vectors', '[tokens, dims]');
  const [n, d] = vectors.shape;
  const x = vectors.dataSync();
  const unit = new Float64Array(n * d);
  for (let i = 0; i < n; i++) {
    let ss = 0;
    for (let k = 0; k < d; k++) ss += x[i * d + k] * x[i * d + k];
    const inv = 1 / Math.max(Math.sqrt(ss), 1e-12);
    for (let k = 0; k < d; k++) unit[i * d + k] = x[i * d + k] * inv;
  }
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      let dot = 0;
      for (let k = 0; k < d; k++) dot += unit[i * d + k] * unit[j * d + k];
      out[i * n + j] = dot;
      out[j * n + i] = dot;
    }
  }
  return out;
}

/**
 * The core over a candidate list (indices into an n x n similarity matrix `sim`):
 * 1. pool = the ceil(pool x r) candidates with the LOWEST score (least attended; capped at all of them);
 * 2. r times: every pool token not yet removed is scored by its best similarity to a candidate that
 *    is not removed (itself excluded); the highest is removed (ties: the lower index first);
 * 3. each removed token joins its most similar survivor (ties: the lower index).
 * Returns the selection and the merged rows: a survivor that absorbed tokens becomes
 * sum(s_k x_k) / sum(s_k) over itself and them, s = sizes (default 1).
 */
export function redundantMerge(
  candidates: readonly number[],
  score: (i: number) => number,
  sim: ArrayLike<number>,
  n: number,
  r: number,
  sizes: ArrayLike<number> | null,
  options: RedundancyOptions = {},
): { selection: RedundancySelection; dropped: Set<number>; merged: Map<number, { sources: number[]; weights: number[] }> } {
  const factor = options.pool ?? 2;
  if (!(factor >= 1) || !Number.isFinite(factor)) throw new Error(`pool must be a number >= 1, got ${factor}`);
  if (r > candidates.length - 1) throw new Error(`cannot remove ${r} of ${candidates.length} candidate tokens (one must stay)`);
  const ranked = rankDescending(candidates, score);
  const poolSize = Math.min(candidates.length, Math.ceil(factor * r));
  const pool = ranked.slice(ranked.length - poolSize).reverse();
  const removed = new Uint8Array(n);
  /** Best survivor of i among the candidates not removed (ties: the lower index: candidates ascend). */
  const sorted = [...candidates].sort((x, y) => x - y);
  const bestSurvivor = (i: number): [number, number] => {
    let best = -1;
    let bestSim = -Infinity;
    for (const j of sorted) {
      if (j === i || removed[j]) continue;
      const v = sim[i * n + j];
      if (v > bestSim) {
        best = j;
        bestSim = v;
      }
    }
    return [best, bestSim];
  };
  // each pool token's best survivor, recomputed only when that survivor is removed
  const best = new Map<number, [number, number]>(pool.map((i) => [i, bestSurvivor(i)]));
  const order: number[] = [];
  for (let step = 0; step < r; step++) {
    let pick = -1;
    let pickSim = -Infinity;
    for (const [i, b] of best) {
      if (b[1] > pickSim || (b[1] === pickSim && i < pick)) {
        pick = i;
        pickSim = b[1];
      }
    }
    removed[pick] = 1;
    best.delete(pick);
    order.push(pick);
    for (const [i, [j]] of best) if (j === pick) best.set(i, bestSurvivor(i));
  }
  // destinations among the final survivors (a token removed later may have been an earlier one's best match)
  const matches = order.map((source) => {
    const [destination, similarity] = bestSurvivor(source);
    return { source, destination, similarity };
  });
  const into = new Map<number, number[]>();
  for (const m of matches) into.set(m.destination, [...(into.get(m.destination) ?? []), m.source]);
  const merged = new Map<number, { sources: number[]; weights: number[] }>();
  into.forEach((src, d) => {
    const sources = [d, ...src.sort((a, b) => a - b)];
    const size = (j: number) => (sizes ? sizes[j] : 1);
    const total = sources.reduce((acc, j) => acc + size(j), 0);
    merged.set(d, { sources, weights: sources.map((j) => size(j) / total) });
  });
  return { selection: { pool, matches }, dropped: new Set(order), merged };
}

export interface RedundancyVisionInput extends VisionScoreInput, RedundancyOptions {
  /** [N, Dk] similarity vectors (the rule entry passes the keys averaged over heads, ToMe's metric). Not disposed. */
  metric: tf.Tensor2D;
  /** Patches per token (TokenState's sizes); null = all ones. */
  sizes: ArrayLike<number> | null;
}

export interface RedundancyVisionResult {
  plan: MergePlan;
  /** [N] attention received (as iLLaVA's); CLS = +Infinity. */
  scores: Float32Array;
  selection: RedundancySelection;
}

/**
 * Vision stage: score = attention received (mean over heads and queries, illavaVision's), CLS
 * protected (never removed, never a destination); redundantMerge over the patch tokens with the
 * cosine similarity of `metric`. N -> N - r tokens, survivors in original order. r = 0: identity.
 */
export function redundancyVision(input: RedundancyVisionInput): RedundancyVisionResult {
  const { n, scores, candidates } = visionScores('redundancyVision', input, ['metric']);
  checkRank(input.metric.shape, 2, 'metric', '[tokens, dims]');
  if (input.metric.shape[0] !== n) throw new Error(`redundancyVision: metric has ${input.metric.shape[0]} tokens, attn ${n}`);
  if (input.sizes && input.sizes.length !== n) throw new Error(`redundancyVision: sizes has ${input.sizes.length} entries, attn ${n} tokens`);
  if (input.remove === 0) return { plan: buildPlan(n, new Set()), scores, selection: { pool: [], matches: [] } };
  const sim = cosineMatrix(input.metric);
  const out = redundantMerge(candidates, (i) => scores[i], sim, n, input.remove, input.sizes, input);
  return { plan: buildPlan(n, out.dropped, out.merged), scores, selection: out.selection };
}

export interface RedundancyLanguageInput extends LanguageInput, RedundancyOptions {
  /** [T, D] similarity vectors (the model passes the hidden states entering layer K). Not disposed. */
  keys: tf.Tensor2D;
}

export interface RedundancyLanguageResult extends LanguageResult {
  groups: Array<{ span: [number, number]; removed: number; selection: RedundancySelection | null }>;
}

/**
 * LLM stage, per image span: score = the last prompt token's attention (illavaLanguage's), r as
 * illavaLanguage (removedCount, Python round), redundantMerge within the span with the cosine
 * similarity of the hidden states; equal weights (the LLM stage has no sizes). Text untouched.
 */
export function redundancyLanguage(input: RedundancyLanguageInput): RedundancyLanguageResult {
  const scores = languageScores(input, 'redundancyLanguage', ['keys']);
  if (input.keys.shape[0] !== scores.length) throw new Error(`keys has ${input.keys.shape[0]} tokens, lastRowAttn has ${scores.length}`);
  const dropped = new Set<number>();
  const merged = new Map<number, { sources: number[]; weights: number[] }>();
  const groups = input.spans.map(([s, e]) => {
    const r = removedCount(e - s, input.keep);
    if (r === 0) return { span: [s, e] as [number, number], removed: 0, selection: null };
    const vectors = tf.tidy(() => tf.slice(input.keys, [s, 0], [e - s, -1]) as tf.Tensor2D);
    const sim = cosineMatrix(vectors);
    vectors.dispose();
    const local = spanIndices([0, e - s]);
    const out = redundantMerge(local, (i) => scores[s + i], sim, e - s, r, null, input);
    out.dropped.forEach((i) => dropped.add(s + i));
    out.merged.forEach((v, d) => merged.set(s + d, { sources: v.sources.map((j) => s + j), weights: v.weights }));
    const shift = (m: RedundantMatch) => ({ source: s + m.source, destination: s + m.destination, similarity: m.similarity });
    return { span: [s, e] as [number, number], removed: r, selection: { pool: out.selection.pool.map((i) => s + i), matches: out.selection.matches.map(shift) } };
  });
  return { plan: buildPlan(scores.length, dropped, merged), scores, groups };
}
