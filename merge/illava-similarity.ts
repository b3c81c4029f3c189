// Similarity recycling (iLLaVA v2) at both stages, with the v1 scores: attention received in the
// vision encoder, the last prompt token's attention row in the LLM.
import * as tf from '@tensorflow/tfjs-core';
import { visionScores, type VisionScoreInput } from './illava-vision.js';
import { languageScores, removedCount, spanIndices, type LanguageInput, type LanguageResult } from './language-common.js';
import { buildPlan, type MergePlan } from './plan.js';
import { recycleCandidates, type RecycleOptions, type RecycleSelection } from './similarity-recycle.js';
import type { Span } from './token-state.js';

export interface IllavaVisionSimilarityInput extends VisionScoreInput, RecycleOptions {
  /** [N, Dk] similarity vectors (the authors' v2 code uses the token features: the post-attention residual). Not disposed. */
  keys: tf.Tensor2D;
}

export interface IllavaVisionSimilarityResult {
  plan: MergePlan;
  /** [N] attention received; CLS = +Infinity. */
  scores: Float32Array;
  selection: RecycleSelection;
}

/**
 * Vision stage with similarity recycling: score = attention received (as illavaVision), CLS
 * protected and first, k = candidates - remove kept; see similarityRecycle for the recycling, the tie
 * rule (lower index ranks higher) and pc's rounding (Python round). remove = 0: the identity plan.
 */
export function illavaVisionSimilarity(input: IllavaVisionSimilarityInput): IllavaVisionSimilarityResult {
  const { n, scores, candidates } = visionScores('illavaVisionSimilarity', input, ['keys']);
  if (input.keys.shape[0] !== n) throw new Error(`illavaVisionSimilarity: keys has ${input.keys.shape[0]} tokens, attn ${n}`);
  if (input.remove === 0) return { plan: buildPlan(n, new Set()), scores, selection: { informative: candidates, recycling: [], dropped: [] } };
  const { selection, merged } = recycleCandidates(candidates, (i) => scores[i], input.keys, candidates.length - input.remove, input);
  return { plan: buildPlan(n, new Set(selection.dropped), merged), scores, selection };
}

export interface IllavaLanguageSimilarityInput extends LanguageInput, RecycleOptions {
  /** [T, Dk] similarity vectors (the model passes the hidden states entering layer K). Not disposed. */
  keys: tf.Tensor2D;
}

export interface IllavaLanguageSimilarityResult extends LanguageResult {
  groups: Array<{ span: Span; removed: number; selection: RecycleSelection | null }>;
}

/**
 * LLM stage with similarity recycling, per span: score and counts as illavaLanguage (removedCount,
 * Python round), k = L - r kept, recycling within the span only. Text tokens untouched; original
 * order (and position ids).
 */
export function illavaLanguageSimilarity(input: IllavaLanguageSimilarityInput): IllavaLanguageSimilarityResult {
  const scores = languageScores(input, 'illavaLanguageSimilarity', ['keys']);
  const keys = input.keys;
  if (keys.shape[0] !== scores.length) throw new Error(`keys has ${keys.shape[0]} tokens, lastRowAttn has ${scores.length}`);
  const dropped = new Set<number>();
  const merged = new Map<number, { sources: number[]; weights: number[] }>();
  const groups = input.spans.map(([s, e]) => {
    const r = removedCount(e - s, input.keep);
    if (r === 0) return { span: [s, e] as Span, removed: 0, selection: null };
    const out = recycleCandidates(spanIndices([s, e]), (i) => scores[i], keys, e - s - r, input);
    out.selection.dropped.forEach((i) => dropped.add(i));
    out.merged.forEach((v, key) => merged.set(key, v));
    return { span: [s, e] as Span, removed: r, selection: out.selection };
  });
  return { plan: buildPlan(scores.length, dropped, merged), scores, groups };
}
