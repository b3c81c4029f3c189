// TokenMerger: the one object the model calls at its configured depths.
//
// Vision stage, per image, inside encoder block i between the attention residual and the MLP:
//   const needs = merger.visionNeeds(i);            // before the attention: what to compute
//   const bias = merger.attentionBias(state);       // ToMe log(size) over keys, or null
//   ... attention (probabilities only if needs.attn, keys kept if needs.keys) ...
//   if (needs.merge) ({ hidden, state } = merger.mergeVision({ layer: i, hidden, attn, keys, numHeads, state }));
// Language stage, prefill only: llmNeedsLastRow(K-1) asks layer K-1 for the last prompt token's
// attention row; before layer K, mergeLanguage(...) shortens the sequence.
//
// Ownership: every tensor passed in stays owned by the caller (never disposed here). Every tensor
// returned is new and owned by the caller (when nothing merges, a clone sharing the data). States and
// reports hold no tensors (plain arrays), so they need no disposal.
import * as tf from '@tensorflow/tfjs-core';
import { resolveMergeConfig, type MergeConfig, type MergePresetName, type ModelShape } from './config.js';
import { fastvPrune } from './fastv.js';
import { illavaLanguage } from './illava-language.js';
import { illavaLanguageSimilarity, illavaVisionSimilarity } from './illava-similarity.js';
import { illavaVision } from './illava-vision.js';
import type { Span } from './language-common.js';
import { identityPlan, keptIndices, restrictPlan, type MergePlan } from './plan.js';
import { SourceMap } from './source-map.js';
import { proportionalAttentionBias, tomeBipartite } from './tome.js';

/** Token count after a merge layer (image tokens, CLS excluded). */
export interface LayerCount { layer: number; tokens: number }

/** One merge step of an image, in order: vision layers, then language layers. */
export interface MergeStage {
  stage: 'vision' | 'llm';
  layer: number;
  /** Image tokens after this step (CLS excluded). */
  tokens: number;
  /** When tracking sources: per original patch (raster order), the index among the image's tokens
   *  after this step (CLS excluded) of the token holding most of it, or -1 if it was dropped. */
  patchToToken?: Int32Array;
}

/** Patch -> image-token map of a source map whose original 0 is the CLS when clsOffset is 1. */
function patchMap(sources: SourceMap, clsOffset: number, tokenOffset: number): Int32Array {
  return sources.tokenOfPatch().slice(clsOffset).map((t) => (t < 0 ? -1 : t - tokenOffset));
}

export interface VisionMergeState {
  readonly clsToken: boolean;
  /** Original patches (CLS excluded). */
  readonly patches: number;
  /** Current tokens, CLS included. */
  readonly tokens: number;
  /** ToMe sizes of the current tokens (CLS included); null = all ones (no ToMe merge yet). */
  readonly sizes: Float32Array | null;
  /** Over the original tokens, CLS included (original 0 = CLS when clsToken); null = not tracking. */
  readonly sources: SourceMap | null;
  readonly counts: readonly LayerCount[];
  /** Merge steps so far, with the patch -> token map when tracking. */
  readonly stages?: readonly MergeStage[];
}

export interface ImageLanguageState {
  readonly patches: number;
  /** Current span length. */
  readonly tokens: number;
  readonly vision: readonly LayerCount[];
  readonly language: readonly LayerCount[];
  /** Over the original tokens, CLS included as in the vision state; its tokens = the span's tokens. */
  readonly sources: SourceMap | null;
  readonly clsOffset: number;
  /** Vision then language merge steps, with the patch -> token map when tracking. */
  readonly stages?: readonly MergeStage[];
}

export interface LanguageMergeState {
  /** One entry per image, in the order of their spans. */
  readonly images: readonly ImageLanguageState[];
}

/** Per image: becomes `out.merges` of model.generate. */
export interface MergeReport {
  /** Original patches (CLS excluded). */
  patches: number;
  /** Image tokens after each vision merge layer. */
  vision: LayerCount[];
  /** Image tokens in the LLM after each language merge layer. */
  language: LayerCount[];
  /** Image tokens in the LLM at the end (the image span's length). */
  tokens: number;
  /** When tracking: per original patch (raster order), the index within the image's final span of the
   *  token holding most of it, or -1 if it was dropped. */
  patchToToken?: Int32Array;
  /** Every merge step (vision layers, then language layers) with its patch -> token map when tracking. */
  stages?: MergeStage[];
}

export interface VisionNeeds {
  /** This block merges: call mergeVision after the attention residual. */
  merge: boolean;
  /** The rule needs the attention probabilities [H, N, N] of this block. */
  attn: boolean;
  /** The rule needs the keys [N, H * Dh] of this block (ToMe's metric). */
  keys: boolean;
  /** attentionBias(state) may be non-null: add it to this block's attention logits. */
  sizeBias: boolean;
}

export interface MergeVisionArgs {
  layer: number;
  /** [N, C] after the attention residual. */
  hidden: tf.Tensor2D;
  /** [H, N, N] softmax probabilities (when visionNeeds(layer).attn). */
  attn?: tf.Tensor3D;
  /** [N, H * Dh] keys, heads concatenated (when visionNeeds(layer).keys). */
  keys?: tf.Tensor2D;
  numHeads: number;
  state: VisionMergeState;
}

export interface MergeLanguageArgs {
  layer: number;
  /** [T, D] hidden states entering decoder layer `layer`. */
  hidden: tf.Tensor2D;
  /** [H, T] last prompt token's attention row from layer `layer - 1`. */
  lastRowAttn: tf.Tensor2D;
  /** Unused by the current rules (similarity uses the hidden states, as the authors' code). */
  keys?: tf.Tensor2D;
  /** Image spans, one per image of the state, in order. */
  spans: ReadonlyArray<Span>;
  positionIds: ArrayLike<number>;
  state: LanguageMergeState;
}

export interface MergeLanguageResult {
  hidden: tf.Tensor2D;
  positionIds: number[];
  spans: Span[];
  keptIndices: number[];
  plan: MergePlan;
  state: LanguageMergeState;
}

export class TokenMerger {
  readonly config: MergeConfig;

  /** `config` should come from resolveMergeConfig (validated for the model); see fromSpec. */
  constructor(config: MergeConfig) {
    this.config = config;
  }

  static fromSpec(spec: MergeConfig | MergePresetName, shape: ModelShape): TokenMerger {
    return new TokenMerger(resolveMergeConfig(spec, shape));
  }

  private get vision() {
    const v = this.config.vision;
    return v && v.rule !== 'none' ? v : null;
  }

  private get llm() {
    const m = this.config.llm;
    return m && m.rule !== 'none' ? m : null;
  }

  private get propAttn(): boolean {
    return this.vision?.rule === 'tome' && this.vision.proportionalAttention !== false;
  }

  /** What encoder block `layer` must compute for the merger. */
  visionNeeds(layer: number): VisionNeeds {
    const v = this.vision;
    const merge = v !== null && v.layers.includes(layer);
    return {
      merge,
      attn: merge && v.rule !== 'tome',
      keys: merge && v.rule === 'tome',
      sizeBias: this.propAttn && v !== null && v.layers.some((l) => l < layer),
    };
  }

  /** Fresh state for one image of `tokens` tokens (CLS included when clsToken). */
  createVisionState(tokens: number, clsToken: boolean, track = this.config.trackSources ?? false): VisionMergeState {
    return { clsToken, patches: tokens - (clsToken ? 1 : 0), tokens, sizes: null, sources: track ? SourceMap.identity(tokens) : null, counts: [] };
  }

  /** ToMe proportional attention: log(size) [N] to add to the logits over the keys, or null. Caller disposes. */
  attentionBias(state: VisionMergeState): tf.Tensor1D | null {
    return this.propAttn && state.sizes ? proportionalAttentionBias(state.sizes) : null;
  }

  /** Merges one image's tokens at encoder block `layer`; a non-merge layer returns a clone. */
  mergeVision(args: MergeVisionArgs): { hidden: tf.Tensor2D; state: VisionMergeState; plan: MergePlan } {
    const { layer, hidden, state } = args;
    const v = this.vision;
    if (hidden.shape[0] !== state.tokens) throw new Error(`mergeVision: hidden has ${hidden.shape[0]} tokens, the state ${state.tokens}`);
    if (v === null || !v.layers.includes(layer)) return { hidden: tf.clone(hidden), state, plan: identityPlan(state.tokens) };
    const cls = state.clsToken;
    let out: { plan: MergePlan; hidden: tf.Tensor2D };
    let sizes = state.sizes;
    if (v.rule === 'tome') {
      if (!args.keys) throw new Error(`mergeVision: rule 'tome' at layer ${layer} needs keys [N, heads * headDim]`);
      const keys = args.keys;
      const metric = tf.tidy(() => tf.mean(tf.reshape(keys, [keys.shape[0], args.numHeads, -1]), 1) as tf.Tensor2D);
      const r = tomeBipartite({ metric, x: hidden, size: sizes ?? undefined, remove: v.remove, clsToken: cls });
      metric.dispose();
      r.size.dispose();
      sizes = r.sizes;
      out = { plan: r.plan, hidden: r.x };
    } else {
      if (!args.attn) throw new Error(`mergeVision: rule '${v.rule}' at layer ${layer} needs the attention probabilities [H, N, N]`);
      const common = { hidden, attn: args.attn, remove: v.remove, clsToken: cls };
      const r = v.rule === 'illava' ? illavaVision(common) : illavaVisionSimilarity({ ...common, recycleRatio: v.recycleRatio, neighbours: v.neighbours });
      out = { plan: r.plan, hidden: r.hidden };
      if (sizes) sizes = Float32Array.from(r.plan.rows, (row) => row.sources.reduce((a, j) => a + sizes![j], 0));
    }
    const tokens = out.plan.rows.length;
    const sources = state.sources ? state.sources.apply(out.plan) : null;
    const off = cls ? 1 : 0;
    const next: VisionMergeState = {
      clsToken: cls,
      patches: state.patches,
      tokens,
      sizes,
      sources,
      counts: [...state.counts, { layer, tokens: tokens - off }],
      stages: [...(state.stages ?? []), { stage: 'vision', layer, tokens: tokens - off, ...(sources && { patchToToken: patchMap(sources, off, off) }) }],
    };
    return { hidden: out.hidden, state: next, plan: out.plan };
  }

  /** True for layer K-1 when K is a language merge layer: keep the last prompt token's attention row. */
  llmNeedsLastRow(layer: number): boolean {
    return this.llm?.layers.includes(layer + 1) ?? false;
  }

  /** True when the sequence is merged before decoder layer `layer` (prefill only). */
  isLlmMergeLayer(layer: number): boolean {
    return this.llm?.layers.includes(layer) ?? false;
  }

  /** Language state from the images' final vision states, in span order (the CLS is left out: LLaVA drops it). */
  createLanguageState(images: readonly VisionMergeState[]): LanguageMergeState {
    return {
      images: images.map((s) => {
        const off = s.clsToken ? 1 : 0;
        let sources = s.sources;
        if (sources && off) {
          const rows = [];
          for (let i = 1; i < s.tokens; i++) rows.push({ anchor: i, sources: [i], weights: [1] });
          sources = sources.apply({ inputCount: s.tokens, rows });
        }
        return { patches: s.patches, tokens: s.tokens - off, vision: s.counts, language: [], sources, clsOffset: off, stages: s.stages ?? [] };
      }),
    };
  }

  /** Shortens the prefill sequence before decoder layer `layer`; a non-merge layer returns clones. */
  mergeLanguage(args: MergeLanguageArgs): MergeLanguageResult {
    const { layer, hidden, spans, state } = args;
    const m = this.llm;
    if (m === null || !m.layers.includes(layer)) {
      const plan = identityPlan(hidden.shape[0]);
      return { hidden: tf.clone(hidden), positionIds: Array.from(args.positionIds), spans: spans.map(([s, e]) => [s, e] as Span), keptIndices: keptIndices(plan), plan, state };
    }
    if (spans.length !== state.images.length) throw new Error(`mergeLanguage: ${spans.length} spans for ${state.images.length} images`);
    spans.forEach(([s, e], i) => {
      if (state.images[i].sources && e - s !== state.images[i].tokens) {
        throw new Error(`mergeLanguage: span ${i} has ${e - s} tokens, image ${i} has ${state.images[i].tokens} (tracking sources needs one LLM token per vision token)`);
      }
    });
    const common = { hidden, lastRowAttn: args.lastRowAttn, spans, keep: m.keep, positionIds: args.positionIds };
    const r = m.rule === 'fastv' ? fastvPrune(common)
      : m.rule === 'illava' ? illavaLanguage(common)
      : illavaLanguageSimilarity({ ...common, recycleRatio: m.recycleRatio, neighbours: m.neighbours });
    const images = state.images.map((img, i) => {
      const [s, e] = spans[i];
      const tokens = r.spans[i][1] - r.spans[i][0];
      const sources = img.sources ? img.sources.apply(restrictPlan(r.plan, s, e)) : null;
      const stage: MergeStage = { stage: 'llm', layer, tokens, ...(sources && { patchToToken: patchMap(sources, img.clsOffset, 0) }) };
      return {
        ...img,
        tokens,
        language: [...img.language, { layer, tokens }],
        sources,
        stages: [...(img.stages ?? []), stage],
      };
    });
    return { hidden: r.hidden, positionIds: r.positionIds, spans: r.spans, keptIndices: r.keptIndices, plan: r.plan, state: { images } };
  }

  /** One report per image. */
  reports(state: LanguageMergeState): MergeReport[] {
    return state.images.map((img) => {
      const report: MergeReport = { patches: img.patches, vision: [...img.vision], language: [...img.language], tokens: img.tokens };
      if (img.sources) report.patchToToken = img.sources.tokenOfPatch().slice(img.clsOffset);
      if (img.stages && img.stages.length > 0) report.stages = img.stages.map((st) => ({ ...st }));
      return report;
    });
  }
}
