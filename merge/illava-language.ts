// iLLaVA v1, LLM stage (illava-method.md §3.2): before decoder layer K (prefill only), in each image
// span fold the r+1 tokens least attended by the last prompt token (layer K-1) into one.
import { lowestGroup, type RecycleGroup } from './group.js';
import { languageScores, removedCount, spanIndices, type LanguageInput, type LanguageResult } from './language-common.js';
import { buildPlan } from './plan.js';
import type { Span } from './token-state.js';

/** One span's group; `group` is null when nothing was removed from it. */
export interface SpanGroup {
  span: Span;
  removed: number;
  group: RecycleGroup | null;
}

export interface IllavaLanguageResult extends LanguageResult {
  groups: SpanGroup[];
}

/**
 * iLLaVA language merge, per image span independently:
 * score = mean over heads of lastRowAttn; L = span length; r = removedCount(L, keep) (Python round,
 * half to even; see removedCount). Tokens are ranked by score descending; the r+1 lowest form the
 * group, weighted 1, 2, ..., r+1 in descending-score order (least attended gets r+1); the weighted
 * mean overwrites the best-scored member (the destination), the other r are dropped. Text tokens are
 * untouched (copied bit-for-bit); survivors keep their original order (and original position ids).
 * Tie rule: among equal scores the LOWER index ranks higher (kept first, destination first).
 * The kept set equals FastV's for the same inputs; only the destination's value differs.
 */
export function illavaLanguage(input: LanguageInput): IllavaLanguageResult {
  const scores = languageScores(input, 'illavaLanguage');
  const dropped = new Set<number>();
  const merged = new Map<number, RecycleGroup>();
  const groups: SpanGroup[] = input.spans.map((span) => {
    const r = removedCount(span[1] - span[0], input.keep);
    if (r === 0) return { span: [span[0], span[1]], removed: 0, group: null };
    const g = lowestGroup(spanIndices(span), (i) => scores[i], r);
    g.dropped.forEach((i) => dropped.add(i));
    merged.set(g.group.destination, g.group);
    return { span: [span[0], span[1]], removed: r, group: g.group };
  });
  return { plan: buildPlan(scores.length, dropped, merged), scores, groups };
}
