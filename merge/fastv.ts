// FastV (illava-method.md §7): before decoder layer K (prefill only), drop the image tokens least
// attended by the last prompt token in layer K-1. No recycling.
import { languageScores, removedCount, spanIndices, type LanguageInput, type LanguageResult } from './language-common.js';
import { buildPlan } from './plan.js';
import type { Span } from './token-state.js';
import { lowestRanked } from './util.js';

export interface FastvSpan {
  span: Span;
  removed: number;
  /** Dropped indices, lowest score first. */
  dropped: number[];
}

export interface FastvResult extends LanguageResult {
  groups: FastvSpan[];
}

/**
 * FastV pruning, per image span: same score and counts as illavaLanguage (mean over heads of
 * lastRowAttn; r = removedCount(L, keep), Python round half to even); the r lowest-scored tokens
 * are discarded. Tie rule: among equal scores the LOWER index ranks higher (is kept first).
 * Text tokens and the kept image tokens are copies; original order (and position ids).
 */
export function fastvPrune(input: LanguageInput): FastvResult {
  const scores = languageScores(input, 'fastvPrune');
  const dropped = new Set<number>();
  const groups: FastvSpan[] = input.spans.map((span) => {
    const r = removedCount(span[1] - span[0], input.keep);
    const out = lowestRanked(spanIndices(span), (i) => scores[i], r);
    out.forEach((i) => dropped.add(i));
    return { span: [span[0], span[1]], removed: r, dropped: out };
  });
  return { plan: buildPlan(scores.length, dropped), scores, groups };
}
