// CLIPImageProcessor (Hugging Face, slow PIL path) driven by preprocessor_config.json.
//
// Steps, in HF order: RGB -> [LLaVA pad to square] -> resize -> center crop -> rescale ->
// normalize -> CHW float32 [3, H, W].
//  * pad (`image_aspect_ratio: "pad"` as in LLaVA, or `do_pad: true` as in llava-hf's
//    LlavaImageProcessor): expand2square with fill `int(mean * 255)` (truncation), per channel.
//  * resize: `size.shortest_edge` -> short side = s, long side = int(s * long / short)
//    (truncation, HF get_resize_output_image_size); `size.{height,width}` -> exactly that.
//    Pillow-identical resampling (resample.ts).
//  * center crop: top = floor((h - ch) / 2), left = floor((w - cw) / 2); an image smaller than
//    the crop is zero-padded around the centre first (HF center_crop), which amounts to the same
//    offsets with out-of-range pixels = 0.
//  * rescale: float32(uint8 * rescale_factor), product in float64 (HF `rescale`).
//  * normalize in float32: (x - float32(mean)) / float32(std), each op rounded to float32.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { RgbImage } from './image.js';
import { DEFAULT_MAX_IMAGE_PIXELS, validateRgbImage } from './image.js';
import { parseStrictJson } from '../weights/strict-json.js';
import { readRegularFile, utf8Text } from './files.js';
import { cropImage, padToSquare, PIL_RESAMPLE, resize, type ResampleFilter } from './resample.js';

/** The fields of preprocessor_config.json that are read (others are ignored). */
export interface PreprocessorConfig {
  image_processor_type?: string;
  do_convert_rgb?: boolean;
  do_resize?: boolean;
  size?: number | number[] | { shortest_edge?: number; height?: number; width?: number };
  resample?: number;
  do_center_crop?: boolean;
  crop_size?: number | number[] | { height?: number; width?: number };
  do_rescale?: boolean;
  rescale_factor?: number;
  do_normalize?: boolean;
  image_mean?: number | number[];
  image_std?: number | number[];
  image_aspect_ratio?: string;
  do_pad?: boolean;
  [key: string]: unknown;
}

type Triple = [number, number, number];

/** Validated settings. */
export interface ImageProcessorSettings {
  pad: boolean;
  padFill: Triple;
  resize: { shortestEdge: number } | { height: number; width: number } | null;
  filter: ResampleFilter;
  crop: { height: number; width: number } | null;
  rescaleFactor: number | null;
  mean: Triple | null;
  std: Triple | null;
}

export interface PreprocessResult {
  /** [3, height, width], channels first, RGB. */
  pixelValues: Float32Array;
  channels: 3;
  height: number;
  width: number;
  /** The uint8 image after pad/resize/crop (before rescale/normalize). */
  resized: RgbImage;
}

// HF CLIPImageProcessor defaults (OpenAI CLIP mean/std, 224).
const CLIP_MEAN: Triple = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD: Triple = [0.26862954, 0.26130258, 0.27577711];

const bad = (field: string, why: string, got: unknown): Error =>
  new Error(`preprocessor config: '${field}' ${why} (got ${JSON.stringify(got)})`);

/** Largest resize/crop size accepted from a preprocessor config (px per side). */
export const MAX_PREPROCESS_SIDE = 4096;

function posInt(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw bad(field, 'must be a positive integer', v);
  if (v > MAX_PREPROCESS_SIDE) throw bad(field, `must be at most ${MAX_PREPROCESS_SIDE} px`, v);
  return v;
}

function bool(v: unknown, field: string, dflt: boolean): boolean {
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'boolean') throw bad(field, 'must be true or false', v);
  return v;
}

function triple(v: unknown, field: string, dflt: Triple, nonZero: boolean): Triple {
  if (v === undefined || v === null) return dflt;
  const arr = typeof v === 'number' ? [v, v, v] : v;
  if (!Array.isArray(arr) || arr.length !== 3 || !arr.every((x) => typeof x === 'number' && Number.isFinite(x) && (!nonZero || x !== 0))) {
    throw bad(field, `must be a number or 3 finite${nonZero ? ' non-zero' : ''} numbers`, v);
  }
  return [arr[0], arr[1], arr[2]];
}

/** {height,width} from an int, [h, w] or {height, width} (HF get_size_dict, square default). */
function hw(v: unknown, field: string): { height: number; width: number } {
  if (typeof v === 'number') return { height: posInt(v, field), width: v };
  if (Array.isArray(v) && v.length === 2) return { height: posInt(v[0], `${field}[0]`), width: posInt(v[1], `${field}[1]`) };
  if (v && typeof v === 'object' && 'height' in v && 'width' in v) {
    const o = v as { height: unknown; width: unknown };
    return { height: posInt(o.height, `${field}.height`), width: posInt(o.width, `${field}.width`) };
  }
  throw bad(field, 'must be an integer, [height, width] or {height, width}', v);
}

/** Validates a preprocessor_config.json object (HF CLIPImageProcessor defaults for missing fields). */
export function resolveConfig(cfg: PreprocessorConfig): ImageProcessorSettings {
  if (!cfg || typeof cfg !== 'object' || Array.isArray(cfg)) throw new Error('preprocessor config: must be a JSON object');
  const aspect = cfg.image_aspect_ratio ?? 'none';
  if (typeof aspect !== 'string' || !['pad', 'none', 'square', 'resize'].includes(aspect)) {
    throw bad('image_aspect_ratio', "must be 'pad' or 'none' ('anyres' and others are not supported)", aspect);
  }
  const pad = aspect === 'pad' || bool(cfg.do_pad, 'do_pad', false);
  bool(cfg.do_convert_rgb, 'do_convert_rgb', true); // validated only: inputs are always RGB
  let resizeSpec: ImageProcessorSettings['resize'] = null;
  if (bool(cfg.do_resize, 'do_resize', true)) {
    const size = cfg.size ?? { shortest_edge: 224 };
    if (typeof size === 'number') resizeSpec = { shortestEdge: posInt(size, 'size') };
    else if (size && typeof size === 'object' && !Array.isArray(size) && 'shortest_edge' in size) {
      resizeSpec = { shortestEdge: posInt(size.shortest_edge, 'size.shortest_edge') };
    } else resizeSpec = hw(size, 'size');
  }
  const resampleId = cfg.resample ?? 3;
  const filter = PIL_RESAMPLE[resampleId as number];
  if (typeof resampleId !== 'number' || !filter) {
    throw bad('resample', 'must be a PIL filter id: 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming (0 nearest unsupported)', resampleId);
  }
  const crop = bool(cfg.do_center_crop, 'do_center_crop', true) ? hw(cfg.crop_size ?? 224, 'crop_size') : null;
  let rescaleFactor: number | null = null;
  if (bool(cfg.do_rescale, 'do_rescale', true)) {
    rescaleFactor = cfg.rescale_factor ?? 1 / 255;
    if (typeof rescaleFactor !== 'number' || !Number.isFinite(rescaleFactor)) throw bad('rescale_factor', 'must be a finite number', cfg.rescale_factor);
  }
  const meanForPad = triple(cfg.image_mean, 'image_mean', CLIP_MEAN, false);
  const doNorm = bool(cfg.do_normalize, 'do_normalize', true);
  const mean = doNorm ? meanForPad : null;
  const std = doNorm ? triple(cfg.image_std, 'image_std', CLIP_STD, true) : null;
  // Values that would turn pixels into Inf/NaN in float32 (e.g. image_std 1e-300 rounds to 0,
  // rescale_factor 1e308 overflows) are refused: the model would silently answer nothing.
  const f = Math.fround;
  for (const u of [0, 255]) {
    const x = rescaleFactor !== null ? f(u * rescaleFactor) : u;
    if (!Number.isFinite(x)) throw bad('rescale_factor', 'overflows float32 on pixel values', cfg.rescale_factor);
    for (let c = 0; c < 3 && mean && std; c++) {
      if (f(std[c]) === 0) throw bad('image_std', 'is zero in float32 (pixels would become Inf/NaN)', cfg.image_std);
      if (!Number.isFinite(f(f(x - f(mean[c])) / f(std[c])))) throw bad('image_std', 'makes normalised pixels overflow float32', cfg.image_std);
    }
  }
  // LLaVA: tuple(int(x * 255) for x in image_processor.image_mean), clamped to a byte.
  const padFill = meanForPad.map((m) => Math.min(255, Math.max(0, Math.trunc(m * 255)))) as Triple;
  return { pad, padFill, resize: resizeSpec, filter, crop, rescaleFactor, mean, std };
}

export class ImageProcessor {
  constructor(readonly settings: ImageProcessorSettings) {}

  static fromConfig(cfg: PreprocessorConfig): ImageProcessor {
    return new ImageProcessor(resolveConfig(cfg));
  }

  /** Reads preprocessor_config.json (a file, or a model directory containing one). */
  static async fromFile(path: string): Promise<ImageProcessor> {
    let file = path;
    try {
      if ((await stat(path)).isDirectory()) file = join(path, 'preprocessor_config.json');
    } catch {
      throw new Error(`preprocessor config '${path}': file not found`);
    }
    const label = `preprocessor config '${file}'`;
    const cfg = parseStrictJson(utf8Text(await readRegularFile(file, label), label), label) as PreprocessorConfig;
    try {
      return ImageProcessor.fromConfig(cfg);
    } catch (e) {
      throw new Error(`${(e as Error).message} in '${file}'`);
    }
  }

  /** The output size when it does not depend on the input (a crop, or a fixed resize), else null. */
  fixedOutputSize(): { width: number; height: number } | null {
    const s = this.settings;
    if (s.crop) return { ...s.crop };
    if (s.resize && !('shortestEdge' in s.resize)) return { ...s.resize };
    return null;
  }

  /**
   * Throws unless preprocessing a `width` x `height` image stays within `maxPixels` for every
   * buffer it allocates (the padded square, the resized image and the resampler's intermediate),
   * so an extreme aspect ratio (400000x1) is refused before anything is allocated.
   */
  checkSize(width: number, height: number, maxPixels: number = DEFAULT_MAX_IMAGE_PIXELS): void {
    const s = this.settings;
    let w = width;
    let h = height;
    const sizes: Array<[string, number, number]> = [['image', w, h]];
    if (s.pad) {
      w = h = Math.max(w, h);
      sizes.push(['padded to a square', w, h]);
    }
    if (s.resize) {
      let nw: number;
      let nh: number;
      if ('shortestEdge' in s.resize) {
        const size = s.resize.shortestEdge;
        const newLong = Math.trunc((size * Math.max(w, h)) / Math.min(w, h));
        [nw, nh] = w <= h ? [size, newLong] : [newLong, size];
      } else ({ width: nw, height: nh } = s.resize);
      if (nw === 0 || nh === 0) throw new Error(`image ${width}x${height} is too elongated to resize (would be ${nw}x${nh})`);
      sizes.push(['resampling', nw, h], ['resampling', w, nh], ['resized', nw, nh]);
    }
    for (const [what, a, b] of sizes) {
      if (a * b > maxPixels) {
        throw new Error(`image ${width}x${height}: preprocessing would allocate ${a}x${b} pixels (${what}), over the ${maxPixels}-pixel limit (maxImagePixels / --max-image-pixels); an aspect ratio this extreme is not supported`);
      }
    }
  }

  /** The uint8 steps: pad, resize, center crop. */
  transform(img: RgbImage, maxPixels: number = DEFAULT_MAX_IMAGE_PIXELS): RgbImage {
    validateRgbImage(img);
    this.checkSize(img.width, img.height, maxPixels);
    const s = this.settings;
    let im = s.pad ? padToSquare(img, s.padFill) : img;
    if (s.resize) {
      let w: number;
      let h: number;
      if ('shortestEdge' in s.resize) {
        const size = s.resize.shortestEdge;
        const short = Math.min(im.width, im.height);
        const long = Math.max(im.width, im.height);
        const newLong = Math.trunc((size * long) / short);
        [w, h] = im.width <= im.height ? [size, newLong] : [newLong, size];
      } else {
        ({ width: w, height: h } = s.resize);
      }
      if (w === 0 || h === 0) throw new Error(`image ${im.width}x${im.height} is too elongated to resize (would be ${w}x${h})`);
      im = resize(im, w, h, s.filter);
    }
    if (s.crop) {
      const top = Math.floor((im.height - s.crop.height) / 2);
      const left = Math.floor((im.width - s.crop.width) / 2);
      im = cropImage(im, left, top, s.crop.width, s.crop.height, [0, 0, 0]);
    }
    return im;
  }

  preprocess(img: RgbImage, maxPixels: number = DEFAULT_MAX_IMAGE_PIXELS): PreprocessResult {
    const s = this.settings;
    const im = this.transform(img, maxPixels);
    const { width, height } = im;
    const plane = width * height;
    const out = new Float32Array(3 * plane);
    const f = Math.fround;
    for (let c = 0; c < 3; c++) {
      const mean = s.mean ? f(s.mean[c]) : 0;
      const std = s.std ? f(s.std[c]) : 1;
      for (let i = 0; i < plane; i++) {
        const u = im.data[i * 3 + c];
        let x = s.rescaleFactor !== null ? f(u * s.rescaleFactor) : u;
        if (s.mean) x = f(f(x - mean) / std);
        out[c * plane + i] = x;
      }
    }
    return { pixelValues: out, channels: 3, height, width, resized: im };
  }
}
