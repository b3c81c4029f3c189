// LLaVA-OneVision's anyres packing (HF LlavaOnevisionModel.pack_image_features / apply_pooling and
// LlavaOnevisionProcessor._get_number_of_features): the tile grid of an image, unpadding to the
// original aspect, the anyres_max_N bilinear downscale, image_newline after every row, base tile
// first; video frames pooled 2x2 bilinear with one trailing newline.
//
// The processor's token count and the packing both come from packedLayout(), so the number of
// <image> ids a prompt is expanded to is the number of feature rows packImageFeatures returns.
import * as tf from '@tensorflow/tfjs-core';
import type { AnyresConfig, LlavaConfig } from './config.js';
import { validateRgbImage, type RgbImage } from './image.js';
import { ImageProcessor, type PreprocessorConfig } from './preprocess.js';
import { cropImage, resize } from './resample.js';

/** HF select_best_resolution: the (height, width) pinpoint keeping the most of the image, then wasting the least. */
export function selectBestResolution(height: number, width: number, pinpoints: ReadonlyArray<readonly [number, number]>): [number, number] {
  let best: [number, number] | null = null;
  let maxEffective = 0;
  let minWasted = Infinity;
  for (const [h, w] of pinpoints) {
    const scale = Math.min(w / width, h / height);
    const effective = Math.min(Math.trunc(width * scale) * Math.trunc(height * scale), width * height);
    const wasted = h * w - effective;
    if (effective > maxEffective || (effective === maxEffective && wasted < minWasted)) {
      maxEffective = effective;
      minWasted = wasted;
      best = [h, w];
    }
  }
  if (!best) throw new Error(`no image_grid_pinpoints entry fits an image of ${width}x${height}`);
  return best;
}

/** Python's int(round(x, 7)) for the non-negative values unpadding computes. */
function roundTo7Int(x: number): number {
  return Math.trunc(Math.round(x * 1e7) / 1e7);
}

/** How one image's features are laid out after packing. */
export interface PackedLayout {
  /** Tiles of the anyres grid (the base tile not counted). */
  rows: number;
  cols: number;
  /** Feature grid before unpadding: rows * side, cols * side. */
  gridHeight: number;
  gridWidth: number;
  /** Feature rows / columns kept by unpadding: [top, top + height), [left, left + width). */
  top: number;
  left: number;
  unpaddedHeight: number;
  unpaddedWidth: number;
  /** After the anyres_max_N downscale (the unpadded size when there is none). */
  height: number;
  width: number;
  /** Base tokens + height * (width + 1): what one <image> stands for. */
  tokens: number;
}

/** Patches along one side of a tile. */
export function tileSide(config: LlavaConfig): number {
  return Math.floor(config.vision.imageSize / config.vision.patchSize);
}

function anyresOf(config: LlavaConfig): AnyresConfig {
  if (!config.anyres) throw new Error(`model_type '${config.modelType}' has no anyres packing`);
  return config.anyres;
}

/**
 * The packed layout of an image of height x width pixels (HF pack_image_features, and the processor's
 * count). `side`: tokens along one side of a tile's grid; default the tile's patches per side. After a
 * vision-stage merge with the 'square' layout it is sqrt(N') (the authors' code: unpadding, the
 * anyres_max downscale and the base tile all use the regridded side; src/anyres-merge.ts).
 */
export function packedLayout(config: LlavaConfig, height: number, width: number, side = tileSide(config)): PackedLayout {
  if (!Number.isSafeInteger(height) || !Number.isSafeInteger(width) || height < 1 || width < 1) throw new Error(`image size ${width}x${height} must be positive integers`);
  if (!Number.isInteger(side) || side < 1) throw new Error(`packedLayout: a tile side of ${side} tokens must be a positive integer`);
  const anyres = anyresOf(config);
  const tile = config.vision.imageSize;
  const [bestH, bestW] = selectBestResolution(height, width, anyres.imageGridPinpoints);
  const rows = Math.floor(bestH / tile);
  const cols = Math.floor(bestW / tile);
  const gridHeight = rows * side;
  const gridWidth = cols * side;
  let top = 0;
  let left = 0;
  let unpaddedHeight = gridHeight;
  let unpaddedWidth = gridWidth;
  if (width / height > gridWidth / gridHeight) {
    const newHeight = roundTo7Int(height * (gridWidth / width));
    top = Math.floor((gridHeight - newHeight) / 2);
    unpaddedHeight = gridHeight - 2 * top;
  } else {
    const newWidth = roundTo7Int(width * (gridHeight / height));
    left = Math.floor((gridWidth - newWidth) / 2);
    unpaddedWidth = gridWidth - 2 * left;
  }
  let outH = unpaddedHeight;
  let outW = unpaddedWidth;
  const max = /^anyres_max_([0-9]+)$/.exec(anyres.visionAspectRatio);
  if (max) {
    const ratio = Math.sqrt((unpaddedHeight * unpaddedWidth) / (Number(max[1]) * side * side));
    if (ratio > 1.1) {
      outH = Math.floor(unpaddedHeight / ratio);
      outW = Math.floor(unpaddedWidth / ratio);
    }
  }
  return { rows, cols, gridHeight, gridWidth, top, left, unpaddedHeight, unpaddedWidth, height: outH, width: outW, tokens: side * side + outH * (outW + 1) };
}

/** Tiles the vision tower runs for one image: the base tile plus the grid. */
export function tileCount(config: LlavaConfig, height: number, width: number): number {
  const { rows, cols } = packedLayout(config, height, width);
  return 1 + rows * cols;
}

/** Tokens one <video> of `frames` frames stands for: ceil(side / 2)^2 per frame, plus one newline. */
export function videoTokenCount(config: LlavaConfig, frames: number): number {
  const pooled = Math.ceil(tileSide(config) / 2);
  return frames * pooled * pooled + 1;
}

function newlineOf(newline: tf.Tensor1D | null): tf.Tensor1D {
  if (!newline) throw new Error('anyres packing needs the image_newline parameter');
  return newline;
}

/**
 * projected [1 + rows * cols, side^2, D] (the base tile, then the grid tiles row-major) of an image
 * of height x width pixels -> the packed features [layout.tokens, D].
 */
export function packImageFeatures(config: LlavaConfig, projected: tf.Tensor3D, height: number, width: number, newline: tf.Tensor1D | null): tf.Tensor2D {
  const layout = packedLayout(config, height, width);
  const side = tileSide(config);
  const [tiles, perTile, D] = projected.shape;
  if (tiles !== 1 + layout.rows * layout.cols || perTile !== side * side) {
    throw new Error(`packImageFeatures: ${tiles} tiles of ${perTile} features, but a ${width}x${height} image needs 1 + ${layout.rows}x${layout.cols} tiles of ${side * side}`);
  }
  const nl = newlineOf(newline);
  return tf.tidy(() => {
    const base = tf.reshape(tf.slice(projected, [0, 0, 0], [1, -1, -1]), [perTile, D]);
    const tileFeatures = tf.slice(projected, [1, 0, 0], [-1, -1, -1]);
    // [rows, cols, side, side, D] -> [rows, side, cols, side, D] -> [rows * side, cols * side, D]
    const grid = tf.reshape(tf.transpose(tf.reshape(tileFeatures, [layout.rows, layout.cols, side, side, D]), [0, 2, 1, 3, 4]), [layout.gridHeight, layout.gridWidth, D]);
    let kept = tf.slice(grid, [layout.top, layout.left, 0], [layout.unpaddedHeight, layout.unpaddedWidth, D]) as tf.Tensor3D;
    if (layout.height !== layout.unpaddedHeight || layout.width !== layout.unpaddedWidth) {
      // torch F.interpolate(mode='bilinear', align_corners=False), no antialias = half-pixel centres.
      kept = tf.reshape(tf.image.resizeBilinear(tf.expandDims(kept, 0) as tf.Tensor4D, [layout.height, layout.width], false, true), [layout.height, layout.width, D]);
    }
    const newlines = tf.broadcastTo(tf.reshape(nl, [1, 1, D]), [layout.height, 1, D]);
    const rowsWithNewline = tf.reshape(tf.concat([kept, newlines], 1), [layout.height * (layout.width + 1), D]);
    return tf.concat([base, rowsWithNewline], 0) as tf.Tensor2D;
  });
}

/** projected [F, side^2, D] of F video frames -> [F * ceil(side/2)^2 + 1, D]: each frame pooled bilinear to ceil(side/2) square, then one newline. */
export function packVideoFeatures(config: LlavaConfig, projected: tf.Tensor3D, newline: tf.Tensor1D | null): tf.Tensor2D {
  const side = tileSide(config);
  const [frames, perTile, D] = projected.shape;
  if (perTile !== side * side) throw new Error(`packVideoFeatures: ${perTile} features per frame, expected ${side * side}`);
  const nl = newlineOf(newline);
  const pooled = Math.ceil(side / 2);
  return tf.tidy(() => {
    const small = tf.image.resizeBilinear(tf.reshape(projected, [frames, side, side, D]) as tf.Tensor4D, [pooled, pooled], false, true);
    return tf.concat([tf.reshape(small, [frames * pooled * pooled, D]), tf.reshape(nl, [1, D])], 0) as tf.Tensor2D;
  });
}

/**
 * The per-tile steps (size, resample, [centre crop], rescale, normalize) of
 * LlavaOnevisionImageProcessor / LlavaNextImageProcessor from preprocessor_config.json. Their
 * `do_pad` means the anyres canvas padding (done by anyresPixelValues; NeXT's batch padding with
 * zero tiles is not needed for one prompt), not LLaVA-1.5's pad-to-square, so it is not passed on.
 * OneVision has no crop (no crop_size); NeXT crops each tile to crop_size, a no-op on tile-sized tiles.
 */
export function anyresTileProcessor(cfg: PreprocessorConfig): ImageProcessor {
  const { do_pad: _pad, image_grid_pinpoints: _pinpoints, ...rest } = cfg;
  return ImageProcessor.fromConfig({ ...rest, do_pad: false, do_center_crop: cfg.crop_size === undefined ? false : (cfg.do_center_crop ?? true) });
}

/** What anyresPixelValues returns. */
export interface AnyresPixels {
  /** [tiles, 3, tile, tile]: the base image (resized straight to the tile), then the grid tiles row-major. */
  pixelValues: Float32Array;
  tiles: number;
  /** The uint8 canvas after the aspect-keeping resize and the centred zero padding (before tiling). */
  canvas: RgbImage;
}

/** Where an image of H x W pixels lies on its anyres canvas (best resolution): resized to newW x newH (aspect kept), at (padX, padY). */
export interface CanvasPlacement {
  bestH: number;
  bestW: number;
  newH: number;
  newW: number;
  padX: number;
  padY: number;
}

/** HF get_patch_output_size and the centred padding of LlavaOnevisionImageProcessor. */
export function canvasPlacement(anyres: AnyresConfig, H: number, W: number): CanvasPlacement {
  const [bestH, bestW] = selectBestResolution(H, W, anyres.imageGridPinpoints);
  let newW: number;
  let newH: number;
  if (bestW / W < bestH / H) {
    newW = bestW;
    newH = Math.min(Math.ceil((H * bestW) / W), bestH);
  } else {
    newH = bestH;
    newW = Math.min(Math.ceil((W * bestH) / H), bestW);
  }
  return { bestH, bestW, newH, newW, padX: Math.floor((bestW - newW) / 2), padY: Math.floor((bestH - newH) / 2) };
}

/**
 * HF LlavaOnevisionImageProcessor (slow PIL path) on one image: best resolution over the
 * pinpoints, aspect-keeping resize (get_patch_output_size) with the processor's resampler, centred
 * zero padding, tiles row-major, the base image first; every tile through `tileProcessor`.
 */
export function anyresPixelValues(config: LlavaConfig, tileProcessor: ImageProcessor, img: RgbImage): AnyresPixels {
  validateRgbImage(img);
  const anyres = anyresOf(config);
  const tile = config.vision.imageSize;
  const out = tileProcessor.fixedOutputSize();
  if (!out || out.width !== tile || out.height !== tile) throw new Error(`anyres: the tile processor must give ${tile}x${tile} tiles (vision_config.image_size), got ${out ? `${out.width}x${out.height}` : 'a size that depends on the input'}`);
  const { bestH, bestW, newH, newW, padX, padY } = canvasPlacement(anyres, img.height, img.width);
  const filter = tileProcessor.settings.filter;
  const resized = resize(img, newW, newH, filter);
  const canvas = cropImage(resized, -padX, -padY, bestW, bestH, [0, 0, 0]);
  const pieces: RgbImage[] = [resize(img, tile, tile, filter)];
  for (let r = 0; r < bestH / tile; r++) for (let c = 0; c < bestW / tile; c++) pieces.push(cropImage(canvas, c * tile, r * tile, tile, tile));
  const plane = 3 * tile * tile;
  const pixelValues = new Float32Array(pieces.length * plane);
  pieces.forEach((piece, i) => pixelValues.set(tileProcessor.preprocess(piece).pixelValues, i * plane));
  return { pixelValues, tiles: pieces.length, canvas };
}
