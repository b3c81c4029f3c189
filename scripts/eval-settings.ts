// The eval's settings: every rule at 1/2, 1/3, 1/6 and 1/9 of the 64 image tokens of the shapes
// models (scripts/eval.ts, scripts/vision-speed.ts).
import type { MergeConfig, MergeReport } from '../merge/index.js';

export const EVAL_RULES = ['none', 'illava', 'illava-similarity', 'illava-prune', 'illava+positions', 'redundancy', 'tome', 'fastv'] as const;
export type EvalRule = (typeof EVAL_RULES)[number];

export interface EvalSetting {
  rule: EvalRule;
  budget: string;
  merge: MergeConfig;
}

/** Vision blocks that run in the shapes model (5 layers, feature layer -2). */
const BLOCKS = 4;
export const PATCHES = 64;

/**
 * Settings for a model with 64 patches, 4 vision blocks that run and 4 decoder layers.
 * - illava, illava-similarity, illava-prune, redundancy (the two-stage rules, same counts): vision
 *   stage at blocks 1-2 (remove 8 / 16 / 24 / 28 each: 48 / 32 / 16 / 8 tokens), then the language
 *   stage before decoder layer 1 (the preset's depth, 8/32) down to k = 32 / 21 / 11 / 7.
 * - tome: every block that runs (0-3), constant r = 8 / 11 / 12 / 12 -> 32 / 20 / 16 / 16 (ToMe merges
 *   at most half the tokens of a block, so 4 blocks cannot go below 16 with a constant r: its 1/9
 *   point is at 16 tokens, and the table says so).
 * - fastv: before decoder layer 1 (the preset's 2/32 depth, clamped to 1), keep k.
 * - redundancy keeps the vision survivors' position ids (keepPositions, as its preset does);
 *   illava+positions is iLLaVA with only that changed (the ablation: what the positions alone give).
 */
export function settings(): EvalSetting[] {
  const out: EvalSetting[] = [{ rule: 'none', budget: 'all', merge: {} }];
  const budgets: Array<[string, number, number, number]> = [
    // [label, final tokens k, two-stage rules' vision removal per layer, tome r]
    ['1/2', 32, 8, 8],
    ['1/3', 21, 16, 11],
    ['1/6', 11, 24, 12],
    ['1/9', 7, 28, 12],
  ];
  for (const [label, k, remove, r] of budgets) {
    const afterVision = PATCHES - 2 * remove;
    for (const rule of ['illava', 'illava-similarity', 'illava-prune', 'illava+positions', 'redundancy'] as const) {
      const merger = rule === 'illava+positions' ? 'illava' : rule;
      const keepPositions = rule === 'illava+positions' || rule === 'redundancy';
      out.push({ rule, budget: label, merge: { vision: { rule: merger, layers: [1, 2], remove, ...(keepPositions && { keepPositions }) }, llm: { rule: merger, layers: [1], keep: k / afterVision } } });
    }
    out.push({ rule: 'tome', budget: label, merge: { vision: { rule: 'tome', layers: [0, 1, 2, 3], remove: r, proportionalAttention: true } } });
    out.push({ rule: 'fastv', budget: label, merge: { llm: { rule: 'fastv', layers: [1], keep: k / PATCHES } } });
  }
  return out;
}

/** Tokens entering each running block's MLP (after its merge), summed over the blocks, over the unmerged sum. */
export function tokenBlocksRatio(report: MergeReport): number {
  let tokens = report.patches;
  let sum = 0;
  for (let b = 0; b < BLOCKS; b++) {
    const merged = report.vision.find((m) => m.layer === b);
    if (merged) tokens = merged.tokens;
    sum += tokens + 1; // + CLS
  }
  return sum / (BLOCKS * (report.patches + 1));
}

