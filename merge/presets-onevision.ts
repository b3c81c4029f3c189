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

/**
 * The kept square per tile and the blocks that remove it: target side = side * 19 / 27 (the authors'
 * 27 -> 19); for n = min(4, blocks run) down to 1, the floor or ceiling of the target (within
 * [1, side - 1], the closer first) whose side^2 - kept^2 divides by n. Null when the tile has no
 * square side or too few patches. The authors' 27: 19, n = 4 (92 each); LLaVA-NeXT's 24: target
 * 16.9, 16 (320 = 4 x 80); the tiny fixture's 3: 2, n = 1 (5).
 */
function keptSquare(patches: number, run: number): { kept: number; n: number; total: number } | null {
  const side = Math.round(Math.sqrt(patches));
  if (side * side !== patches || side < 2 || run < 1) return null;
  const target = (side * REF.keptSide) / REF.side;
  const candidates = [...new Set([Math.floor(target), Math.ceil(target)])]
    .map((k) => clamp(k, 1, side - 1))
    .sort((a, b) => Math.abs(a - target) - Math.abs(b - target) || b - a);
  for (let n = Math.min(4, run); n >= 1; n--) {
    for (const kept of candidates) {
      const total = patches - kept * kept;
      if (total > 0 && total % n === 0) return { kept, n, total };
    }
  }
  return null;
}

/**
 * iLLaVA's vision stage on square tiles: keptSquare's n consecutive blocks starting at
 * round(first * run) (first = 5/26 for the authors' images, 3/26 for their video, 5/23 for the
 * LLaVA-1.5 reference), clamped so that all n run, each removing total / n per tile.
 */
export function squareIllavaVision(shape: ModelShape, first: number): VisionMergeConfig | undefined {
  const run = shape.visionLayersRun;
  const sq = keptSquare(shape.patches, run);
  if (!sq) return undefined;
  const start = clamp(roundHalfEven(first * run), 0, run - sq.n);
  return { rule: 'illava', layers: Array.from({ length: sq.n }, (_, i) => start + i), remove: sq.total / sq.n };
}

/** ToMe on square tiles: the same kept square, a constant r over the first n blocks (the largest n whose r fits every block). */
export function squareTome(shape: ModelShape): VisionMergeConfig | undefined {
  const run = shape.visionLayersRun;
  const sq = keptSquare(shape.patches, run);
  if (!sq) return undefined;
  for (let n = Math.min(run, sq.total); n >= 1; n--) {
    if (sq.total % n !== 0) continue;
    const r = sq.total / n;
    let left = shape.patches;
    let fits = true;
    for (let i = 0; i < n && fits; i++) {
      fits = r <= VISION_RULE_ENTRIES.tome.maxRemove(left);
      left -= r;
    }
    if (fits) return { rule: 'tome', layers: Array.from({ length: n }, (_, i) => i), remove: r, proportionalAttention: true };
  }
  return undefined;
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
      const vision = squareIllavaVision(shape, 5 / REF.visionLayersRun);
      if (vision) config.vision = vision;
      if (!noLlm) config.llm = { rule: 'illava', layers: [llmLayer(8, shape.llmLayers)], keep: 0.7 };
      const videoVision = squareIllavaVision(shape, 3 / REF.visionLayersRun);
      const video: MergeConfig['video'] = {};
      if (videoVision) video.vision = videoVision;
      if (!noLlm) video.llm = { rule: 'illava', layers: [llmLayer(2, shape.llmLayers)], keep: 0.7 };
      if (video.vision || video.llm) config.video = video;
      return config;
    }
    case 'tome': {
      const vision = squareTome(shape);
      return vision ? { vision } : {};
    }
  }
}
