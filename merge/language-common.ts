// Shared pieces of the LLM-stage rules (iLLaVA language, FastV, similarity recycling):
// scores from the last prompt token's attention row, per-span counts, rebuilt spans.
import * as tf from '@tensorflow/tfjs-core';
import { applyPlan, applyPlanToArray, keptIndices, type MergePlan } from './plan.js';
import { checkMergeInput, checkRank, checkScores, roundHalfEven } from './util.js';

/** [start, end) of one image's tokens in the sequence. */
export type Span = [number, number];

/** Inputs common to every language rule. */
export interface LanguageInput {
  /** Prefill hidden states before decoder layer K, [T, D]. Not disposed. */
  hidden: tf.Tensor2D;
  /** Attention row of the last prompt token in layer K-1 (softmax probabilities), [H, T]. Not disposed. */
  lastRowAttn: tf.Tensor2D;
  /** Image spans, [start, end), sorted and disjoint. */
  spans: ReadonlyArray<Span>;
  /** Ratio in (0, 1] of each span to keep, or an integer > 1 = tokens kept per span; see removedCount. */
  keep: number;
  /** Position id of every token, length T (may already have gaps from an earlier merge). */
  positionIds: ArrayLike<number>;
}

/** Outputs common to every language rule. */
export interface LanguageResult {
  plan: MergePlan;
  keptIndices: number[];
  /** [T', D], owned by the caller. */
  hidden: tf.Tensor2D;
  /** Position ids of the kept tokens (the anchors' original ids, gaps remain). */
  positionIds: number[];
  /** The spans in the shortened sequence. */
  spans: Span[];
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
export function languageScores(input: LanguageInput, what: string): Float64Array {
  checkMergeInput(what, input, ['hidden', 'lastRowAttn']);
  const { hidden, lastRowAttn, spans, positionIds } = input;
  checkRank(hidden.shape, 2, 'hidden', '[tokens, channels]');
  checkRank(lastRowAttn.shape, 2, 'lastRowAttn', '[heads, tokens]');
  const t = hidden.shape[0];
  if (lastRowAttn.shape[1] !== t) throw new Error(`${what}: lastRowAttn has ${lastRowAttn.shape[1]} tokens, hidden has ${t}`);
  if (positionIds.length !== t) throw new Error(`${what}: positionIds has ${positionIds.length} entries, hidden has ${t} tokens`);
  let prev = 0;
  for (const [s, e] of spans) {
    if (!Number.isInteger(s) || !Number.isInteger(e) || s < prev || e < s || e > t) {
      throw new Error(`${what}: spans must be sorted, disjoint [start, end) ranges inside [0, ${t}), got [${s}, ${e})`);
    }
    prev = e;
  }
  const h = lastRowAttn.shape[0];
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

/** Spans after the plan: each new span covers the kept tokens whose anchors were in the old span. */
export function spansAfter(plan: MergePlan, spans: ReadonlyArray<Span>): Span[] {
  const anchors = plan.rows.map((r) => r.anchor);
  return spans.map(([s, e]) => {
    let first = -1;
    let count = 0;
    anchors.forEach((a, j) => {
      if (a >= s && a < e) {
        if (first < 0) first = j;
        count++;
      }
    });
    if (first < 0) first = anchors.filter((a) => a < s).length; // empty span stays where it was
    return [first, first + count] as Span;
  });
}

/** Position ids after the plan (the anchors' ids). */
export function positionIdsAfter(plan: MergePlan, positionIds: ArrayLike<number>): number[] {
  return applyPlanToArray(plan, positionIds);
}

/** Applies a language rule's plan to everything that must follow it: hidden states, positions, spans. */
export function languageResult(plan: MergePlan, input: LanguageInput, scores: Float64Array): LanguageResult {
  return {
    plan,
    keptIndices: keptIndices(plan),
    hidden: applyPlan(plan, input.hidden),
    positionIds: positionIdsAfter(plan, input.positionIds),
    spans: spansAfter(plan, input.spans),
    scores,
  };
}
