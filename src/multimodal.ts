// The processors of the anyres models, LLaVA-NeXT and LLaVA-OneVision (HF LlavaNextImageProcessor,
// LlavaOnevisionImageProcessor / VideoProcessor and their Processors' token counts), and the model
// side that turns one image's tiles (or one video's frames) into the features its placeholder
// stands for.
//
// * one image in a prompt (NeXT: every image): the base tile plus the anyres grid
//   (anyresPixelValues), packed by packImageFeatures (unpadding, OneVision's anyres_max_N
//   downscale, image_newline after every row);
// * OneVision, several images in a prompt (HF batch_num_images > 1): each image padded to a square
//   with int(mean * 255), resized to one tile; its features + one image_newline
//   (num_image_tokens + 1 ids);
// * OneVision video: each frame through the video processor, 2x2 bilinear pooled, one newline at the
//   end (packVideoFeatures).
// The processor's counts come from sizes alone (packedLayout); the model checks its feature rows
// against them, so a processor/model disagreement is an error, not a shifted prompt.
import * as tf from '@tensorflow/tfjs-core';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { anyresPixelValues, anyresTileProcessor, packedLayout, packImageFeatures, packVideoFeatures, videoTokenCount } from './anyres.js';
import { patchesPerImage, type LlavaConfig } from './config.js';
import { readRegularFileSync, utf8Text } from './files.js';
import { ImageProcessor, type PreprocessorConfig } from './preprocess.js';
import type { RgbImage } from './image.js';
import type { PixelValues } from './generate-types.js';
import type { VisionTower } from './vision.js';
import { visualFeatures } from './anyres-features.js';
import type { MergeSession } from '../merge/index.js';
import type { Projector } from './projector.js';
import { parseStrictJson } from '../weights/strict-json.js';

function readJsonObject(path: string): Record<string, unknown> {
  const label = `'${path}'`;
  const json = parseStrictJson(utf8Text(readRegularFileSync(path, label, 16 * 1024 * 1024), label), label);
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error(`${label}: not a JSON object`);
  return json as Record<string, unknown>;
}

const samePairs = (a: unknown, b: ReadonlyArray<readonly [number, number]>): boolean =>
  Array.isArray(a) && a.length === b.length && a.every((p: unknown, i) => Array.isArray(p) && p.length === 2 && p[0] === b[i][0] && p[1] === b[i][1]);

/** The files an anyres processor is read from (each optional but preprocessor_config.json). */
export interface AnyresProcessorFiles {
  /** preprocessor_config.json */
  image: PreprocessorConfig;
  /** video_preprocessor_config.json (OneVision; default: the image settings without crop). */
  video?: PreprocessorConfig;
  /** processor_config.json */
  processor?: Record<string, unknown>;
}

export class AnyresProcessor {
  private constructor(
    readonly config: LlavaConfig,
    /** One tile: [resize,] [crop,] rescale, normalize (the anyres canvas is cut by anyresPixelValues). */
    readonly tiles: ImageProcessor,
    /** OneVision's several-images path: pad to a square with the mean colour, resize to one tile. */
    readonly multiImage: ImageProcessor | null,
    /** OneVision's frames. */
    readonly video: ImageProcessor | null,
  ) {}

  /** Reads preprocessor_config.json, video_preprocessor_config.json and processor_config.json of a model folder. */
  static fromDir(dir: string, config: LlavaConfig): AnyresProcessor {
    const file = (name: string) => join(dir, name);
    if (!existsSync(file('preprocessor_config.json'))) throw new Error(`${dir}: no preprocessor_config.json (the ${config.modelType} image processor)`);
    const optional = (name: string) => (existsSync(file(name)) ? readJsonObject(file(name)) : undefined);
    const image = readJsonObject(file('preprocessor_config.json')) as PreprocessorConfig;
    const video = optional('video_preprocessor_config.json') as PreprocessorConfig | undefined;
    const processor = optional('processor_config.json');
    try {
      return AnyresProcessor.fromConfigs(config, { image, video, processor });
    } catch (e) {
      throw new Error(`${dir}: ${(e as Error).message}`);
    }
  }

  /**
   * Checks the processor files against config.json: whatever would make the processor expand a
   * placeholder to a count other than the model's features is refused here, at load.
   */
  static fromConfigs(config: LlavaConfig, files: AnyresProcessorFiles): AnyresProcessor {
    const anyres = config.anyres;
    if (!anyres) throw new Error(`model_type '${config.modelType}' has no anyres processor`);
    const image = files.image;
    if (typeof image !== 'object' || image === null || Array.isArray(image)) throw new Error('preprocessor_config.json: not a JSON object');
    if (image.image_grid_pinpoints !== undefined && !samePairs(image.image_grid_pinpoints, anyres.imageGridPinpoints)) {
      throw new Error(`preprocessor_config.json image_grid_pinpoints differ from config.json's: the processor would cut other tile grids (and expand <image> to other counts) than the model packs`);
    }
    const tiles = anyresTileProcessor(image);
    const tile = config.vision.imageSize;
    const out = tiles.fixedOutputSize();
    if (!out || out.width !== tile || out.height !== tile) {
      throw new Error(`preprocessor_config.json gives ${out ? `${out.width}x${out.height}` : 'input-dependent'} tiles but the vision tower expects ${tile}x${tile} (vision_config.image_size)`);
    }
    const p = files.processor ?? {};
    const check = (key: string, want: unknown) => {
      if (p[key] !== undefined && p[key] !== want) {
        throw new Error(`processor_config.json ${key} ${JSON.stringify(p[key])} disagrees with config.json (${JSON.stringify(want)}): the processor would expand <image> to a count other than the model's features`);
      }
    };
    check('vision_feature_select_strategy', config.visionFeatureSelectStrategy);
    const onevision = config.modelType === 'llava_onevision';
    if (onevision) {
      check('num_image_tokens', patchesPerImage(config));
      check('vision_aspect_ratio', anyres.visionAspectRatio);
    } else {
      check('patch_size', config.vision.patchSize);
      check('num_additional_image_tokens', config.vision.kind === 'clip' ? 1 : 0);
    }
    if (!onevision) return new AnyresProcessor(config, tiles, null, null);
    const { image_grid_pinpoints: _p, ...rest } = image;
    const multiImage = ImageProcessor.fromConfig({ ...rest, do_pad: true, do_center_crop: false });
    const video = ImageProcessor.fromConfig({ ...(files.video ?? rest), do_pad: false, do_center_crop: false });
    for (const [what, proc] of [['preprocessor_config.json (several images)', multiImage], ['video_preprocessor_config.json', video]] as const) {
      const size = proc.fixedOutputSize();
      if (!size || size.width !== tile || size.height !== tile) throw new Error(`${what} gives ${size ? `${size.width}x${size.height}` : 'input-dependent'} images but the vision tower expects ${tile}x${tile}`);
    }
    return new AnyresProcessor(config, tiles, multiImage, video);
  }

  /** Whether a prompt with `images` images takes OneVision's several-images path. */
  multiImageMode(images: number): boolean {
    return this.multiImage !== null && images > 1;
  }

  /** One image -> its tiles (the base first) and size; `multiImage`: OneVision's single padded tile. */
  image(rgb: RgbImage, multiImage: boolean, maxPixels: number): PixelValues {
    const tile = this.config.vision.imageSize;
    const imageSize = { height: rgb.height, width: rgb.width };
    if (multiImage) {
      if (!this.multiImage) throw new Error(`${this.config.modelType} has no several-images mode`);
      return { pixelValues: this.multiImage.preprocess(rgb, maxPixels).pixelValues, height: tile, width: tile, tiles: 1, imageSize };
    }
    this.tiles.checkSize(rgb.width, rgb.height, maxPixels);
    const { pixelValues, tiles } = anyresPixelValues(this.config, this.tiles, rgb);
    return { pixelValues, height: tile, width: tile, tiles, imageSize };
  }

  /** One video frame -> [3, tile, tile]. */
  frame(rgb: RgbImage, maxPixels: number): PixelValues {
    if (!this.video) throw new Error(`${this.config.modelType} has no video input`);
    const { pixelValues, height, width } = this.video.preprocess(rgb, maxPixels);
    return { pixelValues, height, width };
  }

  /** Throws when an image of width x height would be too big to preprocess. */
  checkSize(width: number, height: number, maxPixels: number): void {
    this.tiles.checkSize(width, height, maxPixels);
  }

  /** What the processor expands one `<image>` to (HF _get_number_of_features; several images: num_image_tokens + 1). */
  imageTokens(pixels: PixelValues, multiImage: boolean): number {
    if (multiImage) return patchesPerImage(this.config) + 1;
    const size = requireImageSize(pixels);
    return packedLayout(this.config, size.height, size.width).tokens;
  }

  /** What the processor expands one `<video>` of `frames` frames to. */
  videoTokens(frames: number): number {
    return videoTokenCount(this.config, frames);
  }
}

function requireImageSize(pixels: PixelValues): { height: number; width: number } {
  const size = pixels.imageSize;
  if (!size || !Number.isSafeInteger(size.height) || !Number.isSafeInteger(size.width) || size.height < 1 || size.width < 1) {
    throw new Error('anyres pixel values need imageSize { height, width }: the original image size fixes the tile grid and the unpadding');
  }
  return size;
}

/** Checks anyres pixel values: tiles of the tower's size, as many values as tiles. */
export function checkAnyresPixels(config: LlavaConfig, pixels: PixelValues, multiImage: boolean): void {
  const tile = config.vision.imageSize;
  const tiles = pixels.tiles ?? 1;
  if (!(pixels.pixelValues instanceof Float32Array)) throw new Error('pixel values must be a Float32Array');
  if (!Number.isSafeInteger(tiles) || tiles < 1 || pixels.height !== tile || pixels.width !== tile || pixels.pixelValues.length !== tiles * 3 * tile * tile) {
    throw new Error(`pixel values must be [tiles, 3, ${tile}, ${tile}], got ${pixels.pixelValues.length} values for ${String(tiles)} tile(s) of ${pixels.width}x${pixels.height}`);
  }
  if (multiImage) {
    if (tiles !== 1) throw new Error(`a prompt with several images takes one padded tile per image (OneVision), got ${tiles} tiles: preprocess it with the model in that prompt (pixelValues(image, images))`);
    return;
  }
  const size = requireImageSize(pixels);
  const { rows, cols } = packedLayout(config, size.height, size.width);
  if (tiles !== 1 + rows * cols) throw new Error(`an image of ${size.width}x${size.height} takes 1 + ${rows}x${cols} tiles, got ${tiles}`);
}

/** Tiles [tiles, 3, T, T] -> projector output [tiles, side^2, D] (each tile through the tower alone). */
function projectTiles(vision: VisionTower, projector: Projector, pixels: Float32Array, tiles: number, tile: number): tf.Tensor3D {
  const plane = 3 * tile * tile;
  const perTile: tf.Tensor2D[] = [];
  try {
    for (let t = 0; t < tiles; t++) {
      const input = tf.tensor3d(pixels.subarray(t * plane, (t + 1) * plane), [3, tile, tile]);
      const features = vision.forward(input);
      input.dispose();
      perTile.push(projector.apply(features));
      features.dispose();
    }
    return tf.stack(perTile) as tf.Tensor3D;
  } finally {
    perTile.forEach((p) => p.dispose());
  }
}

/**
 * One image's packed features [tokens, D] (HF pack_image_features). With an active merge session the
 * tiles run as their own vision sequences under its hooks and are packed under its survivor layout
 * (src/anyres-features.ts).
 */
export function anyresImageFeatures(config: LlavaConfig, vision: VisionTower, projector: Projector, pixels: PixelValues, multiImage: boolean, session?: MergeSession): tf.Tensor2D {
  checkAnyresPixels(config, pixels, multiImage);
  if (session?.active) {
    const size = multiImage ? null : requireImageSize(pixels);
    return visualFeatures({ vision, projector }, config, 'image', { pixelValues: pixels.pixelValues, tiles: pixels.tiles ?? 1 }, size, session, multiImage).features;
  }
  const projected = projectTiles(vision, projector, pixels.pixelValues, pixels.tiles ?? 1, config.vision.imageSize);
  try {
    if (multiImage) {
      const newline = projector.imageNewline;
      if (!newline) throw new Error('anyres packing needs the image_newline parameter');
      return tf.tidy(() => tf.concat([tf.squeeze(projected, [0]) as tf.Tensor2D, tf.reshape(newline, [1, -1]) as tf.Tensor2D], 0) as tf.Tensor2D);
    }
    const size = requireImageSize(pixels);
    return packImageFeatures(config, projected, size.height, size.width, projector.imageNewline);
  } finally {
    projected.dispose();
  }
}

/** One video's features [frames * pooled^2 + 1, D] (HF get_video_features + apply_pooling + one newline); merged per frame with an active session. */
export function videoFeatures(config: LlavaConfig, vision: VisionTower, projector: Projector, frames: PixelValues[], session?: MergeSession): tf.Tensor2D {
  const tile = config.vision.imageSize;
  if (frames.length === 0) throw new Error('a video needs at least one frame');
  const values = new Float32Array(frames.length * 3 * tile * tile);
  frames.forEach((f, i) => {
    if (!(f.pixelValues instanceof Float32Array) || f.height !== tile || f.width !== tile || f.pixelValues.length !== 3 * tile * tile || (f.tiles ?? 1) !== 1) {
      throw new Error(`video frame ${i + 1}: pixel values must be [3, ${tile}, ${tile}]`);
    }
    values.set(f.pixelValues, i * 3 * tile * tile);
  });
  if (session?.active) return visualFeatures({ vision, projector }, config, 'video', { pixelValues: values, tiles: frames.length }, null, session).features;
  const projected = projectTiles(vision, projector, values, frames.length, tile);
  try {
    return packVideoFeatures(config, projected, projector.imageNewline);
  } finally {
    projected.dispose();
  }
}
