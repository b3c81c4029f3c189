// iLLaVA v1, vision-encoder stage (illava-method.md §3.1): inside an encoder block, after the
// attention residual and before the MLP, fold the r+1 least-attended tokens into one.
import * as tf from '@tensorflow/tfjs-core';
import { lowestGroup, type RecycleGroup } from './group.js';
import { buildPlan, identityPlan, type MergePlan } from './plan.js';
import { checkInteger, checkMergeInput, checkRank, checkScores } from './util.js';

/** Inputs of the vision-stage rules that score by attention received (iLLaVA, its similarity and pruning variants). */
export interface VisionScoreInput {
  /** Softmax attention probabilities of this block, [H, N(queries), N(keys)]. Not disposed. */
  attn: tf.Tensor3D;
  /** r: tokens removed by this step. */
  remove: number;
  /** Index 0 is a CLS token: never a candidate, stays first and untouched. */
  clsToken: boolean;
}

export interface IllavaVisionResult {
  /** N tokens -> N - r: apply it with applyPlan (or TokenState.advance). */
  plan: MergePlan;
  /** [N] attention received (mean over heads and queries); the CLS entry is +Infinity. */
  scores: Float32Array;
  /** The merged group; null when r = 0. */
  group: RecycleGroup | null;
}

/**
 * Attention each token receives, [N]: mean over heads (axis 0) and over queries (axis 1) of
 * attn [H, N, N]. Reduced on the backend as ones[1, H*N] @ attn[H*N, N] (a 2-D matMul without
 * transposes: XNNPACK on wasm, ~15x faster than tf.mean over axes [0, 1], which transposes first);
 * only N floats are read back. Every column is summed in the same order, so equal columns give
 * equal scores (the tie rule then applies).
 */
export function attentionReceived(attn: tf.Tensor3D): Float32Array {
  checkRank(attn.shape, 3, 'attn', '[heads, queries, keys]');
  const [h, q, n] = attn.shape;
  const s = tf.tidy(() => tf.matMul(tf.ones([1, h * q]), tf.reshape(attn, [h * q, n])));
  const sums = s.dataSync();
  s.dispose();
  return Float32Array.from(sums, (v) => v / (h * q));
}

/**
 * Checks a vision-stage input and scores it: attention received per token (CLS = +Infinity), the
 * candidates (every token but the CLS), and that `remove` leaves at least one candidate.
 */
export function visionScores(fn: string, input: VisionScoreInput, moreTensors: string[] = []): { n: number; scores: Float32Array; candidates: number[] } {
  checkMergeInput(fn, input, ['attn', ...moreTensors]);
  const { attn, remove: r, clsToken } = input;
  checkRank(attn.shape, 3, 'attn', '[heads, queries, keys]');
  const n = attn.shape[2];
  if (attn.shape[1] !== n) throw new Error(`attn must be [heads, ${n}, ${n}] for ${n} tokens, got [${attn.shape.join(', ')}]`);
  checkInteger(r, 'remove');
  const scores = attentionReceived(attn);
  checkScores(scores, fn);
  if (clsToken && n > 0) scores[0] = Infinity;
  const candidates: number[] = [];
  for (let i = clsToken ? 1 : 0; i < n; i++) candidates.push(i);
  if (r > candidates.length - 1) {
    throw new Error(`${fn}: cannot remove ${r} of ${candidates.length} candidate tokens (at most ${candidates.length - 1}: one token must stay)`);
  }
  return { n, scores, candidates };
}

/**
 * iLLaVA vision merge. The r+1 tokens with the LOWEST score (attention received) form a group,
 * weighted r+1, r, ..., 1 in ascending score order (the least attended gets the largest weight);
 * their weighted mean sum(w_j x_j)/sum(w_j) overwrites the best-scored member (weight 1); the other
 * r are dropped; survivors keep their original order.
 * Tie rule: among equal scores the LOWER index counts as the higher score (so with equal scores the
 * highest indices are merged first, and the lowest index of the group is the destination).
 * r = 0 gives the identity plan; r > candidates - 1 throws.
 */
export function illavaVision(input: VisionScoreInput): IllavaVisionResult {
  const { n, scores, candidates } = visionScores('illavaVision', input);
  const r = input.remove;
  if (r === 0) return { plan: identityPlan(n), scores, group: null };
  const g = lowestGroup(candidates, (i) => scores[i], r);
  return { plan: buildPlan(n, new Set(g.dropped), new Map([[g.group.destination, g.group]])), scores, group: g.group };
}
