// Shared pieces of the LLM-stage rules (iLLaVA language, FastV, similarity recycling, pruning):
// scores from the last prompt token's attention row, per-span counts.
import * as tf from '@tensorflow/tfjs-core';
import type { MergePlan } from './plan.js';
import type { Span } from './token-state.js';
import { checkMergeInput, checkRank, checkScores, roundHalfEven } from './util.js';

/** Inputs common to every language rule. */
export interface LanguageInput {
  /** Attention row of the last prompt token in layer K-1 (softmax probabilities), [H, T]. Not disposed. */
  lastRowAttn: tf.Tensor2D;
  /** Image spans, [start, end), sorted and disjoint. */
  spans: ReadonlyArray<Span>;
  /** Ratio in (0, 1] of each span to keep, or an integer > 1 = tokens kept per span; see removedCount. */
  keep: number;
}

/** Outputs common to every language rule. */
export interface LanguageResult {
  /** T tokens -> T': text tokens and kept image tokens are copies, in original order. */
  plan: MergePlan;
  /** Mean over heads of lastRowAttn, [T] (float64, computed in JS so every backend ranks alike). */
  scores: Float64Array;
}

/**
 * Tokens removed from a span of length L.
 * - 0 < keep <= 1: a ratio to keep; r = round(L * (1 - keep)) with Python's round (half to even),
 *   as in the authors' code. 0.65 of 288: round(100.8) = 101 removed, 187 kept; 0.5 of 576: 288.
 * - keep > 1: an integer count of tokens kept per span; r = max(0, L - keep).
 *   (keep = 1 is the ratio 1 = keep everything; to keep one token use a ratio <= 1/L.)
 * At least one token of a non-empty span survives: r <= L - 1.
 */
export function removedCount(length: number, keep: number): number {
  let r: number;
  if (keep > 0 && keep <= 1) r = roundHalfEven(length * (1 - keep));
  else if (keep > 1 && Number.isInteger(keep)) r = Math.max(0, length - keep);
  else throw new Error(`keep must be a ratio in (0, 1] or an integer count > 1, got ${keep}`);
  return Math.max(0, Math.min(r, length - 1));
}

/** Checks shapes and spans and returns the head-averaged last-row scores [T]. */
export function languageScores(input: LanguageInput, what: string, moreTensors: string[] = []): Float64Array {
  checkMergeInput(what, input, ['lastRowAttn', ...moreTensors]);
  const { lastRowAttn, spans } = input;
  checkRank(lastRowAttn.shape, 2, 'lastRowAttn', '[heads, tokens]');
  const [h, t] = lastRowAttn.shape;
  let prev = 0;
  for (const [s, e] of spans) {
    if (!Number.isInteger(s) || !Number.isInteger(e) || s < prev || e < s || e > t) {
      throw new Error(`${what}: spans must be sorted, disjoint [start, end) ranges inside [0, ${t}), got [${s}, ${e})`);
    }
    prev = e;
  }
  const a = lastRowAttn.dataSync();
  const scores = new Float64Array(t);
  for (let k = 0; k < h; k++) for (let i = 0; i < t; i++) scores[i] += a[k * t + i];
  for (let i = 0; i < t; i++) scores[i] /= h;
  checkScores(scores, what);
  return scores;
}

/** Indices of one span. */
export function spanIndices([s, e]: Span): number[] {
  const out: number[] = [];
  for (let i = s; i < e; i++) out.push(i);
  return out;
}
