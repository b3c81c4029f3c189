// Similarity recycling (iLLaVA v2) at both stages, with the v1 scores: attention received in the
// vision encoder, the last prompt token's attention row in the LLM.
import * as tf from '@tensorflow/tfjs-core';
import { attentionReceived, visionCandidates } from './illava-vision.js';
import {
  languageResult, languageScores, removedCount, spanIndices,
  type LanguageInput, type LanguageResult, type Span,
} from './language-common.js';
import { applyPlan, buildPlan, keptIndices, type MergePlan } from './plan.js';
import { recycleCandidates, type RecycleOptions, type RecycleSelection } from './similarity-recycle.js';
import { checkInteger, checkMergeInput, checkRank, checkScores } from './util.js';

export interface IllavaVisionSimilarityInput extends RecycleOptions {
  /** [N, C] after the attention residual. Not disposed. */
  hidden: tf.Tensor2D;
  /** [H, N, N] softmax probabilities. Not disposed. */
  attn: tf.Tensor3D;
  /** [N, Dk] similarity vectors; default `hidden` (the authors' v2 code uses the token features). */
  keys?: tf.Tensor2D;
  /** Tokens removed by this step: k = candidates - remove are kept. */
  remove: number;
  clsToken: boolean;
}

export interface IllavaVisionSimilarityResult {
  plan: MergePlan;
  keptIndices: number[];
  hidden: tf.Tensor2D;
  /** [N] attention received; CLS = +Infinity. */
  scores: Float32Array;
  selection: RecycleSelection;
}

/**
 * Vision stage with similarity recycling: score = attention received (as illavaVision), CLS
 * protected and first, k = candidates - remove kept; see similarityRecycle for the recycling, the tie
 * rule (lower index ranks higher) and pc's rounding (Python round). remove = 0: input unchanged.
 */
export function illavaVisionSimilarity(input: IllavaVisionSimilarityInput): IllavaVisionSimilarityResult {
  checkMergeInput('illavaVisionSimilarity', input, ['hidden', 'attn'], ['keys']);
  const { hidden, attn, remove, clsToken } = input;
  checkRank(hidden.shape, 2, 'hidden', '[tokens, channels]');
  const n = hidden.shape[0];
  if (attn.shape[1] !== n || attn.shape[2] !== n) throw new Error(`attn must be [heads, ${n}, ${n}], got [${attn.shape.join(', ')}]`);
  checkInteger(remove, 'remove');
  const scores = attentionReceived(attn);
  checkScores(scores, 'illavaVisionSimilarity');
  if (clsToken && n > 0) scores[0] = Infinity;
  const candidates = visionCandidates(n, clsToken);
  if (remove > candidates.length - 1) {
    throw new Error(`illavaVisionSimilarity: cannot remove ${remove} of ${candidates.length} candidate tokens (at most ${candidates.length - 1})`);
  }
  if (remove === 0) {
    const plan = buildPlan(n, new Set());
    const selection = { informative: candidates, recycling: [], dropped: [] };
    return { plan, keptIndices: keptIndices(plan), hidden: applyPlan(plan, hidden), scores, selection };
  }
  const { selection, merged } = recycleCandidates(candidates, (i) => scores[i], input.keys ?? hidden, candidates.length - remove, input);
  const plan = buildPlan(n, new Set(selection.dropped), merged);
  return { plan, keptIndices: keptIndices(plan), hidden: applyPlan(plan, hidden), scores, selection };
}

export interface IllavaLanguageSimilarityInput extends LanguageInput, RecycleOptions {
  /** [T, Dk] similarity vectors; default `hidden`. Not disposed. */
  keys?: tf.Tensor2D;
}

export interface IllavaLanguageSimilarityResult extends LanguageResult {
  groups: Array<{ span: Span; removed: number; selection: RecycleSelection | null }>;
}

/**
 * LLM stage with similarity recycling, per span: score and counts as illavaLanguage (removedCount,
 * Python round), k = L - r kept, recycling within the span only. Text tokens untouched; original
 * order and position ids.
 */
export function illavaLanguageSimilarity(input: IllavaLanguageSimilarityInput): IllavaLanguageSimilarityResult {
  checkMergeInput('illavaLanguageSimilarity', input, ['hidden', 'lastRowAttn'], ['keys']);
  const scores = languageScores(input, 'illavaLanguageSimilarity');
  const keys = input.keys ?? input.hidden;
  if (keys.shape[0] !== input.hidden.shape[0]) throw new Error(`keys has ${keys.shape[0]} tokens, hidden has ${input.hidden.shape[0]}`);
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
  const plan = buildPlan(input.hidden.shape[0], dropped, merged);
  return { ...languageResult(plan, input, scores), groups };
}
