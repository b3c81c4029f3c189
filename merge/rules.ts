// The one place where merge rules are registered. A rule is a function in its own file that returns a
// MergePlan (plus its diagnostics); an entry here says what the model must compute for it and turns a
// config's numbers into the rule's input. MergeSession runs the entries; config.ts validates against
// them. Adding a rule = writing its file and adding an entry below; nothing in src/ changes.
import * as tf from '@tensorflow/tfjs-core';
import { fastvPrune } from './fastv.js';
import { illavaLanguage } from './illava-language.js';
import { illavaLanguagePrune, illavaVisionPrune } from './illava-prune.js';
import { illavaLanguageSimilarity, illavaVisionSimilarity } from './illava-similarity.js';
import { illavaVision } from './illava-vision.js';
import type { MergePlan } from './plan.js';
import type { Span } from './token-state.js';
import { redundancyLanguage, redundancyVision } from './redundancy.js';
import { proportionalAttentionBias, tomeBipartite } from './tome.js';

/** What an encoder block hands a vision rule (after the attention residual). Nothing is disposed. */
export interface VisionRuleInput {
  /** [N, C] after the attention residual (the similarity rules' vectors). */
  hidden: tf.Tensor2D;
  /** [H, N, N] softmax probabilities, when the entry uses 'attn'. */
  attn?: tf.Tensor3D;
  /** [N, H * Dh] keys, heads concatenated, when the entry uses 'keys'. */
  keys?: tf.Tensor2D;
  numHeads: number;
  /** ToMe sizes of the current tokens; null = all ones. */
  sizes: Float32Array | null;
  clsToken: boolean;
}

/** The numbers of one vision merge config (VisionMergeConfig) a rule may read. */
export interface VisionStep {
  remove: number;
  recycleRatio?: number;
  neighbours?: number;
  proportionalAttention?: boolean;
  pool?: number;
}

export interface VisionRuleEntry {
  /** What the block must compute for the rule: attention probabilities, keys, or both. */
  uses: 'attn' | 'keys' | 'attn+keys';
  /** Most tokens one merge layer can remove when `left` patches are there (config validation). */
  maxRemove(left: number): number;
  /** Bias over the keys of the blocks after a merge, from the sizes (ToMe's proportional attention:
   *  log(size); off when the config says proportionalAttention: false). Caller disposes. */
  keyBias?(sizes: Float32Array): tf.Tensor1D;
  plan(step: VisionStep, input: VisionRuleInput): MergePlan;
}

/** What the decoder hands a language rule before layer K. Nothing is disposed. */
export interface LanguageRuleInput {
  /** [T, D] hidden states entering layer K (the similarity rule's vectors). */
  hidden: tf.Tensor2D;
  /** [H, T] attention row of the last prompt token in layer K-1. */
  lastRowAttn: tf.Tensor2D;
  spans: ReadonlyArray<Span>;
}

/** The numbers of one LLM merge config (LlmMergeConfig) a rule may read. */
export interface LlmStep {
  keep: number;
  recycleRatio?: number;
  neighbours?: number;
  pool?: number;
}

export interface LlmRuleEntry {
  plan(step: LlmStep, input: LanguageRuleInput): MergePlan;
}

function need<T>(value: T | undefined, rule: string, what: string): T {
  if (value === undefined) throw new Error(`rule '${rule}' needs ${what}`);
  return value;
}

const ATTN = 'the attention probabilities [H, N, N]';
/** ToMe's matching metric: the keys [N, H * Dh] averaged over heads -> [N, Dh]. Caller disposes. */
function headMeanKeys(keys: tf.Tensor2D, numHeads: number): tf.Tensor2D {
  return tf.tidy(() => tf.mean(tf.reshape(keys, [keys.shape[0], numHeads, -1]), 1) as tf.Tensor2D);
}

const recycling = (s: { recycleRatio?: number; neighbours?: number }) => ({ recycleRatio: s.recycleRatio, neighbours: s.neighbours });

export const VISION_RULE_ENTRIES = {
  illava: {
    uses: 'attn',
    maxRemove: (left) => left - 1, // one token receives the group
    plan: (s, i) => illavaVision({ attn: need(i.attn, 'illava', ATTN), remove: s.remove, clsToken: i.clsToken }).plan,
  },
  'illava-similarity': {
    uses: 'attn',
    maxRemove: (left) => left - 1,
    plan: (s, i) => illavaVisionSimilarity({ attn: need(i.attn, 'illava-similarity', ATTN), keys: i.hidden, remove: s.remove, clsToken: i.clsToken, ...recycling(s) }).plan,
  },
  tome: {
    uses: 'keys',
    maxRemove: (left) => Math.floor(left / 2), // |A| - CLS
    keyBias: (sizes) => proportionalAttentionBias(sizes),
    plan: (s, i) => {
      const keys = need(i.keys, 'tome', 'keys [N, heads * headDim]');
      const metric = headMeanKeys(keys, i.numHeads);
      try {
        return tomeBipartite({ metric, size: i.sizes ?? undefined, remove: s.remove, clsToken: i.clsToken }).plan;
      } finally {
        metric.dispose();
      }
    },
  },
  'illava-prune': {
    uses: 'attn',
    maxRemove: (left) => left - 1,
    plan: (s, i) => illavaVisionPrune({ attn: need(i.attn, 'illava-prune', ATTN), remove: s.remove, clsToken: i.clsToken }).plan,
  },
  // ours (merge/redundancy.ts): removes tokens that are little attended AND redundant, size-weighted recycling
  redundancy: {
    uses: 'attn+keys',
    maxRemove: (left) => left - 1,
    keyBias: (sizes) => proportionalAttentionBias(sizes),
    plan: (s, i) => {
      const metric = headMeanKeys(need(i.keys, 'redundancy', 'keys [N, heads * headDim]'), i.numHeads);
      try {
        return redundancyVision({ attn: need(i.attn, 'redundancy', ATTN), metric, sizes: i.sizes, remove: s.remove, clsToken: i.clsToken, pool: s.pool }).plan;
      } finally {
        metric.dispose();
      }
    },
  },
} satisfies Record<string, VisionRuleEntry>;

export const LLM_RULE_ENTRIES = {
  illava: { plan: (s, i) => illavaLanguage({ lastRowAttn: i.lastRowAttn, spans: i.spans, keep: s.keep }).plan },
  'illava-similarity': { plan: (s, i) => illavaLanguageSimilarity({ lastRowAttn: i.lastRowAttn, spans: i.spans, keep: s.keep, keys: i.hidden, ...recycling(s) }).plan },
  fastv: { plan: (s, i) => fastvPrune({ lastRowAttn: i.lastRowAttn, spans: i.spans, keep: s.keep }).plan },
  'illava-prune': { plan: (s, i) => illavaLanguagePrune({ lastRowAttn: i.lastRowAttn, spans: i.spans, keep: s.keep }).plan },
  redundancy: { plan: (s, i) => redundancyLanguage({ lastRowAttn: i.lastRowAttn, spans: i.spans, keep: s.keep, keys: i.hidden, pool: s.pool }).plan },
} satisfies Record<string, LlmRuleEntry>;
