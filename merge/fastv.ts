// FastV (illava-method.md §7): before decoder layer K (prefill only), drop the image tokens least
// attended by the last prompt token in layer K-1. No recycling.
import {
  languageResult, languageScores, removedCount, spanIndices,
  type LanguageInput, type LanguageResult, type Span,
} from './language-common.js';
import { buildPlan } from './plan.js';
import { rankDescending } from './util.js';

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
 * Text tokens and the kept image tokens are copied bit-for-bit; original order and position ids.
 */
export function fastvPrune(input: LanguageInput): FastvResult {
  const scores = languageScores(input, 'fastvPrune');
  const dropped = new Set<number>();
  const groups: FastvSpan[] = input.spans.map((span) => {
    const r = removedCount(span[1] - span[0], input.keep);
    const ranked = rankDescending(spanIndices(span), (i) => scores[i]);
    const out = r > 0 ? ranked.slice(ranked.length - r).reverse() : [];
    out.forEach((i) => dropped.add(i));
    return { span: [span[0], span[1]], removed: r, dropped: out };
  });
  const plan = buildPlan(input.hidden.shape[0], dropped);
  return { ...languageResult(plan, input, scores), groups };
}
