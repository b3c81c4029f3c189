/// <reference lib="dom" />
// Browser images -> RgbImage (uint8 RGB, row-major), the input LlavaModel preprocesses with the
// same Pillow-exact resampler as in Node (src/resample.ts). The browser only decodes: pixels are
// read at the image's own size (never scaled by a canvas), without colour-space conversion or
// premultiplied alpha, and alpha is dropped as PIL's convert('RGB') does.
import type { RgbImage } from './image.js';

/** What a page can give as an image. */
export type BrowserImageInput = ImageData | ImageBitmap | HTMLImageElement | HTMLCanvasElement | Blob;

/** RGBA bytes -> RGB bytes (alpha ignored, not composited: PIL's RGBA->RGB). */
function rgbaToRgb(width: number, height: number, rgba: Uint8ClampedArray): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; j < data.length; i += 4, j += 3) {
    data[j] = rgba[i];
    data[j + 1] = rgba[i + 1];
    data[j + 2] = rgba[i + 2];
  }
  return { width, height, data };
}

/** Draws `source` 1:1 onto a canvas of its own size and reads the pixels back. */
function readPixels(source: CanvasImageSource, width: number, height: number): RgbImage {
  if (width < 1 || height < 1) throw new Error(`image: ${width}x${height} has no pixels (not loaded yet?)`);
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d', { colorSpace: 'srgb', willReadFrequently: true });
  if (!ctx) throw new Error('image: this browser gives no 2d canvas context');
  ctx.drawImage(source, 0, 0);
  return rgbaToRgb(width, height, ctx.getImageData(0, 0, width, height, { colorSpace: 'srgb' }).data);
}

/** Decodes/reads any BrowserImageInput to RGB. Blobs (a File, a fetch's blob) are decoded by the browser. */
export async function browserImageToRgb(input: BrowserImageInput): Promise<RgbImage> {
  if (typeof ImageData !== 'undefined' && input instanceof ImageData) return rgbaToRgb(input.width, input.height, input.data);
  if (input instanceof Blob) {
    let bitmap: ImageBitmap;
    try {
      bitmap = await createImageBitmap(input, { colorSpaceConversion: 'none', premultiplyAlpha: 'none', imageOrientation: 'none' });
    } catch (e) {
      throw new Error(`image: the browser cannot decode this ${input.type || 'blob'} (${(e as Error).message})`);
    }
    try {
      return readPixels(bitmap, bitmap.width, bitmap.height);
    } finally {
      bitmap.close();
    }
  }
  if (typeof HTMLImageElement !== 'undefined' && input instanceof HTMLImageElement) {
    if (!input.complete) await input.decode();
    // Through createImageBitmap so the colour-space and alpha settings apply as for Blobs.
    const bitmap = await createImageBitmap(input, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
    try {
      return readPixels(bitmap, bitmap.width, bitmap.height);
    } finally {
      bitmap.close();
    }
  }
  if (typeof ImageBitmap !== 'undefined' && input instanceof ImageBitmap) return readPixels(input, input.width, input.height);
  if (typeof HTMLCanvasElement !== 'undefined' && input instanceof HTMLCanvasElement) return readPixels(input, input.width, input.height);
  throw new Error('image: expected an ImageData, ImageBitmap, HTMLImageElement, HTMLCanvasElement or Blob');
}
