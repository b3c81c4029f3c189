// LLaVA-OneVision's visual features of one image (its anyres tiles) or one video (its frames), with
// the merge session's vision stage run per tile: every tile (frame) is its own vision sequence
// (CLS-free for SigLIP) with its own hook, so each keeps the configured count; the survivors are then
// packed under the session's layout (src/anyres-merge.ts) and the session is told how
// (TiledImage.packed), so the language stage sees one span per image and source maps reach every
// tile's patches. Without merging this is HF's path exactly (src/anyres.ts).
import * as tf from '@tensorflow/tfjs-core';
import type { MergeSession, VisualKind } from '../merge/index.js';
import { packImageFeatures, packVideoFeatures } from './anyres.js';
import { applyPackingPlan, imagePackingPlan, singleTilePackingPlan, tileGrids, videoPackingPlan } from './anyres-merge.js';
import type { LlavaConfig } from './config.js';
import type { Projector } from './projector.js';
import type { VisionTower } from './vision.js';

/** The modules the visual path needs. */
export interface VisualModules {
  vision: VisionTower;
  projector: Projector;
}

/** Pixel values of the tiles (frames): [tiles, 3, size, size] row-major, size = vision_config.image_size. */
export interface TilePixels {
  pixelValues: Float32Array;
  tiles: number;
}

export interface VisualFeatures {
  /** [tokens, D]: the packed span of the image (or video). */
  features: tf.Tensor2D;
  /** Projected tokens of each tile (frame) after the vision stage, before packing. */
  tileTokens: number[];
}

/** Projected tokens of every tile, each through the tower with its own hook from `tiled` (none: unmerged). */
function projectTiles(modules: VisualModules, config: LlavaConfig, pixels: TilePixels, tiled: ReturnType<MergeSession['beginImage']> | undefined): tf.Tensor2D[] {
  const size = config.vision.imageSize;
  const plane = 3 * size * size;
  if (pixels.pixelValues.length !== pixels.tiles * plane || pixels.tiles < 1) {
    throw new Error(`tile pixel values hold ${pixels.pixelValues.length} values, expected ${pixels.tiles} tiles x 3 x ${size} x ${size}`);
  }
  const { vision, projector } = modules;
  const out: tf.Tensor2D[] = [];
  try {
    for (let t = 0; t < pixels.tiles; t++) {
      const tile = tf.tensor3d(pixels.pixelValues.subarray(t * plane, (t + 1) * plane), [3, size, size]);
      const features = vision.forward(tile, tiled?.tile(vision.tokens, vision.clsToken, vision.numHeads));
      tile.dispose();
      out.push(projector.apply(features));
      features.dispose();
    }
  } catch (e) {
    out.forEach((f) => f.dispose());
    throw e;
  }
  return out;
}

function newlineOf(modules: VisualModules): tf.Tensor1D {
  const nl = modules.projector.imageNewline;
  if (!nl) throw new Error('anyres packing needs the image_newline parameter');
  return nl;
}

/**
 * One visual input: `kind` 'image' = the anyres tiles of an image of `size` pixels (base tile
 * first), or with `multiImage` OneVision's one padded tile of an image among several (its tokens
 * and one newline); 'video' = its frames. Opens the image in `session` (in prompt order) when given.
 */
export function visualFeatures(modules: VisualModules, config: LlavaConfig, kind: VisualKind, pixels: TilePixels, size: { height: number; width: number } | null, session?: MergeSession, multiImage = false): VisualFeatures {
  if (multiImage && (kind !== 'image' || pixels.tiles !== 1)) throw new Error(`the several-images mode takes one tile per image, got ${pixels.tiles} (${kind})`);
  const tiled = session?.active ? session.beginImage(kind) : undefined;
  const tiles = projectTiles(modules, config, pixels, tiled);
  const tileTokens = tiles.map((t) => t.shape[0]);
  try {
    if (!tiled) {
      // The unmerged path: HF's packing, tensor ops only.
      const stacked = tf.stack(tiles) as tf.Tensor3D;
      try {
        if (kind === 'video') return { features: packVideoFeatures(config, stacked, modules.projector.imageNewline), tileTokens };
        if (multiImage) return { features: tf.concat([tiles[0], tf.reshape(newlineOf(modules), [1, -1])], 0) as tf.Tensor2D, tileTokens };
        if (!size) throw new Error('an image needs its size in pixels for the packing');
        return { features: packImageFeatures(config, stacked, size.height, size.width, modules.projector.imageNewline), tileTokens };
      } finally {
        stacked.dispose();
      }
    }
    const grids = tileGrids(config, tiled.survivors(), tiled.layout);
    let plan;
    if (kind === 'video') plan = videoPackingPlan(grids);
    else if (multiImage) plan = singleTilePackingPlan(grids[0]);
    else {
      if (!size) throw new Error('an image needs its size in pixels for the packing');
      plan = imagePackingPlan(config, size.height, size.width, grids);
    }
    const features = applyPackingPlan(plan, tiles, newlineOf(modules));
    tiled.packed(plan);
    return { features, tileTokens };
  } finally {
    tiles.forEach((t) => t.dispose());
  }
}
