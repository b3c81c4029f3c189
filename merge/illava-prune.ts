// iLLaVA's pure-pruning ablation ("mode 1" of the authors' v2 code, illava-method.md §3.4): the v1
// scores (attention received in the vision encoder, the last prompt token's row in the LLM), the
// lowest-scored tokens dropped, nothing recycled. Registered as rule 'illava-prune' in rules.ts.
import { visionScores, type VisionScoreInput } from './illava-vision.js';
import { fastvPrune, type FastvResult } from './fastv.js';
import type { LanguageInput } from './language-common.js';
import { buildPlan, type MergePlan } from './plan.js';
import { lowestRanked } from './util.js';

export interface IllavaVisionPruneResult {
  plan: MergePlan;
  /** [N] attention received; CLS = +Infinity. */
  scores: Float32Array;
  /** The r dropped tokens, lowest score first. */
  dropped: number[];
}

/**
 * Vision stage, pure pruning: score = attention received (as illavaVision), the CLS protected; the
 * r = remove lowest-scored candidates are dropped, the others are kept as they are, in original
 * order. Tie rule: among equal scores the LOWER index ranks higher (is kept first). The kept set is
 * illavaVision's plus its group's destination; r = 0 gives the identity plan.
 */
export function illavaVisionPrune(input: VisionScoreInput): IllavaVisionPruneResult {
  const { n, scores, candidates } = visionScores('illavaVisionPrune', input);
  const dropped = lowestRanked(candidates, (i) => scores[i], input.remove);
  return { plan: buildPlan(n, new Set(dropped)), scores, dropped };
}

/** LLM stage, pure pruning: the iLLaVA score and counts with nothing recycled, which is FastV's rule. */
export function illavaLanguagePrune(input: LanguageInput): FastvResult {
  return fastvPrune(input);
}
