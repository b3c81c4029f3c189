// Pillow-compatible resampling of uint8 RGB images, plus crop and pad-to-square.
//
// `resize` reproduces Pillow's ImagingResample (src/libImaging/Resample.c) for 8-bit images, so
// that `PIL.Image.resize(size, BICUBIC)` (what Hugging Face's CLIPImageProcessor and LLaVA use)
// is matched bit for bit:
//  * separable filter; the support is scaled by the downscale factor (antialiasing);
//  * per output pixel: center = (i + 0.5) * scale, window [trunc(center - support + 0.5),
//    trunc(center + support + 0.5)) clipped to the image, weights filter((j - center + 0.5) / fs)
//    normalised to sum 1, then converted to fixed point with 22 fractional bits
//    (PRECISION_BITS = 32 - 8 - 2), rounding half away from zero;
//  * accumulate in integers starting from 1 << 21 (rounding), shift right by 22, clip to 0..255;
//  * horizontal pass first (only over the rows the vertical pass reads), uint8 intermediate image,
//    then the vertical pass; a pass is skipped when that dimension does not change.
import type { RgbImage } from './image.js';

export type ResampleFilter = 'bicubic' | 'bilinear' | 'box' | 'hamming' | 'lanczos';

/** PIL.Image.Resampling values -> filter (NEAREST = 0 is not a convolution and is not supported). */
export const PIL_RESAMPLE: Readonly<Record<number, ResampleFilter>> = { 1: 'lanczos', 2: 'bilinear', 3: 'bicubic', 4: 'box', 5: 'hamming' };

interface Filter {
  fn: (x: number) => number;
  support: number;
}

const sinc = (x: number): number => (x === 0 ? 1 : Math.sin(x * Math.PI) / (x * Math.PI));

const FILTERS: Record<ResampleFilter, Filter> = {
  // Keys' cubic convolution with a = -0.5, written in the same operation order as Pillow.
  bicubic: {
    support: 2,
    fn: (x) => {
      const a = -0.5;
      if (x < 0) x = -x;
      if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
      if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
      return 0;
    },
  },
  bilinear: { support: 1, fn: (x) => Math.max(0, 1 - Math.abs(x)) },
  box: { support: 0.5, fn: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0) },
  hamming: {
    support: 1,
    fn: (x) => {
      if (x < 0) x = -x;
      if (x === 0) return 1;
      if (x >= 1) return 0;
      x *= Math.PI;
      // Pillow uses float literals 0.54f / 0.46f here.
      return (Math.sin(x) / x) * (Math.fround(0.54) + Math.fround(0.46) * Math.cos(x));
    },
  },
  lanczos: { support: 3, fn: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) },
};

const PRECISION_BITS = 32 - 8 - 2;

/** Fixed-point weights for one axis: output i reads input [start[i], start[i] + count[i]). */
interface Coeffs {
  ksize: number;
  start: Int32Array;
  count: Int32Array;
  /** [outSize * ksize] integer weights, scaled by 2^22. */
  k: Float64Array;
}

function precomputeCoeffs(inSize: number, outSize: number, filter: Filter): Coeffs {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = filter.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const k = new Float64Array(outSize * ksize);
  const w = new Float64Array(ksize);
  const ss = 1 / filterscale;
  for (let i = 0; i < outSize; i++) {
    const center = (i + 0.5) * scale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      w[x] = filter.fn((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0 ? w[x] / ww : w[x];
      k[i * ksize + x] = v < 0 ? Math.trunc(-0.5 + v * (1 << PRECISION_BITS)) : Math.trunc(0.5 + v * (1 << PRECISION_BITS));
    }
    start[i] = xmin;
    count[i] = Math.max(0, xmax);
  }
  return { ksize, start, count, k };
}

/** Rounds the fixed-point accumulator back to uint8 (int32 arithmetic shift, then clip). */
function clip8(acc: number): number {
  const v = (acc | 0) >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** Horizontal pass over rows [row0, row0 + rows) of `src` (width srcW) -> [rows, outW, 3]. */
function horizontal(src: Uint8Array, srcW: number, row0: number, rows: number, c: Coeffs, outW: number): Uint8Array {
  const out = new Uint8Array(rows * outW * 3);
  const half = 1 << (PRECISION_BITS - 1);
  for (let y = 0; y < rows; y++) {
    const rowBase = (y + row0) * srcW * 3;
    for (let x = 0; x < outW; x++) {
      let s0 = half;
      let s1 = half;
      let s2 = half;
      const kb = x * c.ksize;
      let p = rowBase + c.start[x] * 3;
      for (let j = 0; j < c.count[x]; j++, p += 3) {
        const w = c.k[kb + j];
        s0 += src[p] * w;
        s1 += src[p + 1] * w;
        s2 += src[p + 2] * w;
      }
      const o = (y * outW + x) * 3;
      out[o] = clip8(s0);
      out[o + 1] = clip8(s1);
      out[o + 2] = clip8(s2);
    }
  }
  return out;
}

/** Vertical pass: `src` is [*, w, 3]; `rowShift` is subtracted from the coefficient windows. */
function vertical(src: Uint8Array, w: number, c: Coeffs, outH: number, rowShift: number): Uint8Array {
  const out = new Uint8Array(outH * w * 3);
  const half = 1 << (PRECISION_BITS - 1);
  const stride = w * 3;
  for (let y = 0; y < outH; y++) {
    const kb = y * c.ksize;
    const base = (c.start[y] - rowShift) * stride;
    for (let xc = 0; xc < stride; xc++) {
      let s = half;
      for (let j = 0; j < c.count[y]; j++) s += src[base + j * stride + xc] * c.k[kb + j];
      out[y * stride + xc] = clip8(s);
    }
  }
  return out;
}

/** Pillow-identical resize of an RGB image (`PIL.Image.resize((width, height), filter)`). */
export function resize(img: RgbImage, width: number, height: number, filter: ResampleFilter = 'bicubic'): RgbImage {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new Error(`resize: target size must be positive integers (got ${width}x${height})`);
  }
  const f = FILTERS[filter];
  if (!f) throw new Error(`resize: unsupported filter '${String(filter)}'`);
  const needH = width !== img.width;
  const needV = height !== img.height;
  if (!needH && !needV) return { width, height, data: img.data.slice() };
  const cv = precomputeCoeffs(img.height, height, f);
  let data = img.data;
  let shift = 0;
  if (needH) {
    // Only the rows the vertical pass will read (all rows when there is no vertical pass).
    const first = needV ? cv.start[0] : 0;
    const last = needV ? cv.start[height - 1] + cv.count[height - 1] : img.height;
    data = horizontal(img.data, img.width, first, last - first, precomputeCoeffs(img.width, width, f), width);
    shift = first;
  }
  if (needV) data = vertical(data, width, cv, height, shift);
  return { width, height, data };
}

/** `resize` with Pillow's BICUBIC filter. */
export function resizeBicubic(img: RgbImage, width: number, height: number): RgbImage {
  return resize(img, width, height, 'bicubic');
}

/**
 * Crops the box [left, left + width) x [top, top + height). The box may extend past the image:
 * those pixels get `fill` (as Hugging Face's center_crop zero-pads small images).
 */
export function cropImage(img: RgbImage, left: number, top: number, width: number, height: number, fill: [number, number, number] = [0, 0, 0]): RgbImage {
  if (![left, top, width, height].every(Number.isInteger) || width <= 0 || height <= 0) {
    throw new Error(`cropImage: box must be integers with positive size (got ${left},${top} ${width}x${height})`);
  }
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const sy = y + top;
    for (let x = 0; x < width; x++) {
      const sx = x + left;
      const o = (y * width + x) * 3;
      const inside = sy >= 0 && sy < img.height && sx >= 0 && sx < img.width;
      const s = (sy * img.width + sx) * 3;
      for (let c = 0; c < 3; c++) data[o + c] = inside ? img.data[s + c] : fill[c];
    }
  }
  return { width, height, data };
}

/**
 * LLaVA `expand2square`: centres the image on a square canvas of side max(w, h) filled with
 * `fill`; the offset along the short side is floor((long - short) / 2).
 */
export function padToSquare(img: RgbImage, fill: [number, number, number]): RgbImage {
  const side = Math.max(img.width, img.height);
  if (img.width === img.height) return { width: side, height: side, data: img.data.slice() };
  const left = -Math.floor((side - img.width) / 2);
  const top = -Math.floor((side - img.height) / 2);
  return cropImage(img, left, top, side, side, fill);
}
