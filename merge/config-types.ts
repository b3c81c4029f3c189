// The merge configuration's types (what config.ts validates and presets produce), apart from
// config.ts so that the preset files can use them without importing config.ts back.
import { LLM_RULE_ENTRIES, VISION_RULE_ENTRIES } from './rules.js';

/** The registered vision rules (rules.ts), and 'none'. */
export type VisionRule = keyof typeof VISION_RULE_ENTRIES | 'none';
/** The registered LLM rules (rules.ts), and 'none'. */
export type LlmRule = keyof typeof LLM_RULE_ENTRIES | 'none';
export const VISION_RULES: readonly VisionRule[] = [...(Object.keys(VISION_RULE_ENTRIES) as VisionRule[]), 'none'];
export const LLM_RULES: readonly LlmRule[] = [...(Object.keys(LLM_RULE_ENTRIES) as LlmRule[]), 'none'];

export interface VisionMergeConfig {
  rule: VisionRule;
  /** 0-based encoder blocks that merge (between the attention residual and the MLP). */
  layers: number[];
  /** Tokens removed per merge layer (ToMe: r). */
  remove: number;
  /** illava-similarity: share of the kept tokens that recycle (default 0.05). */
  recycleRatio?: number;
  /** illava-similarity: dropped tokens absorbed per recycling token (default 5). */
  neighbours?: number;
  /** tome, redundancy: add log(size) to the attention logits (ToMe's proportional attention; default true). */
  proportionalAttention?: boolean;
  /** redundancy: removals are chosen among the ceil(pool x remove) least-attended tokens (default 2). */
  pool?: number;
  /**
   * Anyres models only (LLaVA-OneVision): how a tile's survivors are laid out for the packing
   * (unpadding, image_newline per row, the anyres_max downscale, video pooling).
   * 'square' (default, the authors' code): the N' survivors, in their original raster order, are
   * regridded as a sqrt(N') x sqrt(N') square, so N' = patches - layers x remove must be a perfect
   * square. 'positions': every survivor keeps its original grid cell, removed cells stay empty
   * (see src/anyres-merge.ts for how unpadding, newlines and the downscale treat them).
   */
  layout?: TileLayout;
  /**
   * One-grid models (LLaVA-1.5): where the LLM places the image's N' survivors. false (default, the
   * authors' code): N' consecutive position ids. true: each keeps the position id of the patch it
   * was (a merged token, its anchor's), removed patches leave gaps and the text after the image
   * starts where it would unmerged, as the language stage's survivors keep theirs. A decoder that
   * reads where a patch is from its RoPE position needs this (bench/eval/README.md). Anyres models
   * have layout 'positions' instead.
   */
  keepPositions?: boolean;
}

/** Survivor layout of an anyres tile (VisionMergeConfig.layout). */
export type TileLayout = 'square' | 'positions';
export const TILE_LAYOUTS: readonly TileLayout[] = ['square', 'positions'];

export interface LlmMergeConfig {
  rule: LlmRule;
  /** 0-based decoder layers K; tokens are merged before layer K with layer K-1's attention. */
  layers: number[];
  /** Ratio in (0, 1] of each image span kept per merge layer (Python round of L * (1 - keep) removed). */
  keep: number;
  recycleRatio?: number;
  neighbours?: number;
  /** redundancy: removals are chosen among the ceil(pool x removed) least-attended tokens (default 2). */
  pool?: number;
}

export interface MergeConfig {
  vision?: VisionMergeConfig;
  llm?: LlmMergeConfig;
  /**
   * Video frames (LLaVA-OneVision's <video>): the vision stage of every frame and the language stage
   * of a prompt holding a video. A missing stage falls back to `vision` / `llm`.
   */
  video?: { vision?: VisionMergeConfig; llm?: LlmMergeConfig };
  /** Track which original patches every token holds (MergeReport.patchToToken). */
  trackSources?: boolean;
}

/** What the presets scale to and the validation checks against. */
export interface ModelShape {
  /** Encoder blocks that run before the feature layer (LLaVA-1.5: 23 of 24, feature layer -2). */
  visionLayersRun: number;
  /** Image patches (without CLS). */
  patches: number;
  llmLayers: number;
  /** The encoder's token 0 is a CLS (CLIP; default true). SigLIP (OneVision) has none. */
  clsToken?: boolean;
  /** Images are anyres tiles packed as grids (LLaVA-OneVision): VisionMergeConfig.layout applies. */
  anyres?: boolean;
  /** The published settings the presets scale from: LLaVA-1.5's (default) or the iLLaVA authors' LLaVA-OneVision ones. */
  reference?: 'llava-1.5' | 'onevision';
}

/** LLaVA-1.5: CLIP ViT-L/14-336 (24 blocks, feature layer -2, 576 patches) + 32-layer LLaMA. */
export const LLAVA15_SHAPE: Readonly<ModelShape> = { visionLayersRun: 23, patches: 576, llmLayers: 32 };
