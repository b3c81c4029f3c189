// Merge presets for LLaVA-OneVision (ModelShape.reference 'onevision'), scaled from the iLLaVA
// authors' LLaVA-OneVision-7B settings (illava-method.md §3, their lmms-eval commands):
//   images: SigLIP blocks [5, 6, 7, 8] of the 26 that run, 92 tokens removed per block per tile
//           (729 = 27^2 -> 361 = 19^2), decoder layer 8 of Qwen2-7B's 28, keep 0.7;
//   video:  blocks [3, 4, 5, 6] (same count per frame), decoder layer 2.
// The survivors of a tile are regridded as a square (layout 'square'), so every preset here keeps a
// perfect square per tile.
import type { MergeConfig, ModelShape, VisionMergeConfig } from './config-types.js';
import { VISION_RULE_ENTRIES } from './rules.js';
import { roundHalfEven } from './util.js';

/** The authors' model: 26 SigLIP blocks run, 27 x 27 patches per tile, 28 decoder layers. */
const REF = { visionLayersRun: 26, side: 27, keptSide: 19, llmLayers: 28 } as const;

const clamp = (v: number, lo: number, hi: number) => Math.max(lo, Math.min(hi, v));

/** Decoder layer at depth fraction num / 28 of the authors' model, clamped to [1, llmLayers - 1]. */
function llmLayer(num: number, llmLayers: number): number {
  return clamp(roundHalfEven((num * llmLayers) / REF.llmLayers), 1, llmLayers - 1);
}

/** Largest divisor of `total` that is at most `limit` (1 at worst). */
function largestDivisor(total: number, limit: number): number {
  for (let d = Math.min(limit, total); d > 1; d--) if (total % d === 0) return d;
  return 1;
}

/**
 * The kept side per tile: round(side * 19 / 27) clamped to [1, side - 1]; total = side^2 - kept^2
 * tokens go per tile. Null when the tile has no square side or too few patches to merge.
 */
function keptSquare(patches: number): { side: number; kept: number; total: number } | null {
  const side = Math.round(Math.sqrt(patches));
  if (side * side !== patches || side < 2) return null;
  const kept = clamp(roundHalfEven((side * REF.keptSide) / REF.side), 1, side - 1);
  return { side, kept, total: patches - kept * kept };
}

/**
 * iLLaVA's vision stage: n = the largest divisor of `total` that is at most min(4, blocks run)
 * consecutive blocks (so every block removes the same count and the tile keeps kept^2) starting at
 * round(first / 26 * run), clamped so that all n run. The authors' shape: [5..8] removing 92
 * (images, first = 5) and [3..6] (video, first = 3).
 */
function illavaVision(shape: ModelShape, first: number): VisionMergeConfig | undefined {
  const sq = keptSquare(shape.patches);
  const run = shape.visionLayersRun;
  if (!sq || run < 1) return undefined;
  const n = largestDivisor(sq.total, Math.min(4, run));
  const start = clamp(roundHalfEven((first * run) / REF.visionLayersRun), 0, run - n);
  return { rule: 'illava', layers: Array.from({ length: n }, (_, i) => start + i), remove: sq.total / n };
}

/**
 * Presets on a OneVision-shaped model (exact on ONEVISION_SHAPE; "round" is half-to-even):
 * - illava: vision as illavaVision above; LLM layer round(8/28 * llmLayers) keep 0.7; video: vision
 *   from block round(3/26 * run), LLM layer round(2/28 * llmLayers), both clamped to what runs.
 *   Qwen2-0.5B (24 layers): LLM layer 7, video LLM layer 2; the tiny fixture (3 blocks, 3 x 3
 *   patches, 2 layers): vision [1] remove 5 (9 -> 4 = 2^2), video [0], LLM [1] keep 0.7.
 * - tome: the same kept square, removed by a constant r over the first n blocks (n = the largest
 *   divisor of the total at most the blocks run, r = total / n; 729 -> 361: 23 blocks of 16).
 * - fastv: LLM layer round(2/28 * llmLayers), keep 0.5 (images and video).
 * - none: nothing.
 * A stage the model is too small for is left out (fewer than 2 LLM layers; no square tile).
 */
export function onevisionPreset(name: 'illava' | 'tome' | 'fastv' | 'none', shape: ModelShape): MergeConfig {
  const noLlm = shape.llmLayers < 2;
  switch (name) {
    case 'none':
      return {};
    case 'fastv':
      return noLlm ? {} : { llm: { rule: 'fastv', layers: [llmLayer(2, shape.llmLayers)], keep: 0.5 } };
    case 'illava': {
      const config: MergeConfig = {};
      const vision = illavaVision(shape, 5);
      if (vision) config.vision = vision;
      if (!noLlm) config.llm = { rule: 'illava', layers: [llmLayer(8, shape.llmLayers)], keep: 0.7 };
      const videoVision = illavaVision(shape, 3);
      const video: MergeConfig['video'] = {};
      if (videoVision) video.vision = videoVision;
      if (!noLlm) video.llm = { rule: 'illava', layers: [llmLayer(2, shape.llmLayers)], keep: 0.7 };
      if (video.vision || video.llm) config.video = video;
      return config;
    }
    case 'tome': {
      const sq = keptSquare(shape.patches);
      const run = shape.visionLayersRun;
      if (!sq || run < 1) return {};
      // The largest n whose constant r fits every block (ToMe merges at most half of what is left).
      for (let n = Math.min(run, sq.total); n >= 1; n--) {
        if (sq.total % n !== 0) continue;
        const r = sq.total / n;
        let left = shape.patches;
        let fits = true;
        for (let i = 0; i < n && fits; i++) {
          fits = r <= VISION_RULE_ENTRIES.tome.maxRemove(left);
          left -= r;
        }
        if (fits) return { vision: { rule: 'tome', layers: Array.from({ length: n }, (_, i) => i), remove: r, proportionalAttention: true } };
      }
      return {};
    }
  }
}
