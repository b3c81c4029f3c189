// Image loading: file path / encoded bytes / raw RGB -> RgbImage (uint8 RGB, row-major).
//
// Decoding uses jimp's format decoders (PNG, JPEG, BMP, GIF, TIFF) directly rather than
// `Jimp.read`, so that, like `PIL.Image.open(...).convert('RGB')` in LLaVA and Hugging Face:
//  * EXIF orientation is NOT applied (PIL does not rotate on open; pass
//    `{ applyExifOrientation: true }` to rotate anyway);
//  * alpha is dropped, not composited: PIL's RGBA->RGB, LA->RGB and P->RGB conversions copy the
//    colour channels / palette colour and ignore alpha, so a fully transparent pixel keeps its RGB;
//  * grayscale (L, LA, 1/2/4-bit) becomes R = G = B.
// Known differences from PIL (rare inputs): 16-bit PNGs are scaled with round(v * 255 / 65535)
// (PIL takes the high byte for RGB, and clips 16-bit grayscale), transparent GIF pixels come out
// black (PIL gives the palette colour), and JPEG decoding (jpeg-js vs libjpeg) can differ by a
// few levels.
import { readFile } from 'node:fs/promises';
import { Jimp, defaultFormats } from 'jimp';

/** 8-bit RGB image: `data[(y * width + x) * 3 + c]`, length width * height * 3. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

export interface LoadImageOptions {
  /** Rotate/flip JPEGs by their EXIF orientation tag (default false, as PIL/HF/LLaVA). */
  applyExifOrientation?: boolean;
}

/** Largest image accepted (pixels), checked from the header before decoding where possible. */
const MAX_PIXELS = 1 << 28;

type Mime = 'image/png' | 'image/jpeg' | 'image/gif' | 'image/bmp' | 'image/tiff';

/** A decoded RGBA bitmap (what jimp's decoders return). */
interface Rgba {
  width: number;
  height: number;
  data: Uint8Array;
}

/** Loads an image and converts it to RGB. Raw RgbImages are validated and returned unchanged. */
export async function loadImage(input: string | Uint8Array | RgbImage, opts: LoadImageOptions = {}): Promise<RgbImage> {
  if (typeof input !== 'string' && !(input instanceof Uint8Array)) {
    validateRgbImage(input, 'image <RgbImage>');
    return input;
  }
  const label = typeof input === 'string' ? `image '${input}'` : `image <${input.length} bytes>`;
  let bytes: Buffer;
  if (typeof input === 'string') {
    try {
      bytes = await readFile(input);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new Error(`${label}: file not found`);
      if (code === 'EISDIR') throw new Error(`${label}: is a directory, not an image file`);
      throw new Error(`${label}: cannot read (${(e as Error).message})`);
    }
  } else {
    bytes = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  }
  const rgba = await decodeRgba(bytes, label, opts);
  if (!(rgba.width > 0 && rgba.height > 0)) {
    throw new Error(`${label}: image has zero size (${rgba.width}x${rgba.height})`);
  }
  const n = rgba.width * rgba.height;
  if (rgba.data.length < n * 4) throw new Error(`${label}: cannot decode (decoder returned too little pixel data)`);
  const data = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    // Drop alpha (PIL convert('RGB') semantics).
    data[i * 3] = rgba.data[i * 4];
    data[i * 3 + 1] = rgba.data[i * 4 + 1];
    data[i * 3 + 2] = rgba.data[i * 4 + 2];
  }
  return { width: rgba.width, height: rgba.height, data };
}

/** Throws unless `img` is a well-formed RgbImage with positive size. */
export function validateRgbImage(img: RgbImage, label = 'image'): void {
  if (!img || !Number.isInteger(img.width) || !Number.isInteger(img.height)) {
    throw new Error(`${label}: width and height must be integers`);
  }
  if (img.width <= 0 || img.height <= 0) throw new Error(`${label}: image has zero size (${img.width}x${img.height})`);
  if (!(img.data instanceof Uint8Array) || img.data.length !== img.width * img.height * 3) {
    throw new Error(`${label}: data must be a Uint8Array of length width*height*3 = ${img.width * img.height * 3}`);
  }
}

/** Format from magic bytes, or null. */
function sniff(b: Uint8Array): Mime | null {
  const at = (i: number, ...v: number[]) => v.every((x, j) => b[i + j] === x);
  if (at(0, 0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return 'image/png';
  if (at(0, 0xff, 0xd8, 0xff)) return 'image/jpeg';
  if (at(0, 0x47, 0x49, 0x46, 0x38)) return 'image/gif';
  if (at(0, 0x42, 0x4d)) return 'image/bmp';
  if (at(0, 0x49, 0x49, 0x2a, 0x00) || at(0, 0x4d, 0x4d, 0x00, 0x2a)) return 'image/tiff';
  return null;
}

/** Width/height claimed by the header (PNG, GIF, BMP), to refuse absurd sizes before allocating. */
function headerSize(b: Buffer, mime: Mime): [number, number] | null {
  if (mime === 'image/png' && b.length >= 24) return [b.readUInt32BE(16), b.readUInt32BE(20)];
  if (mime === 'image/gif' && b.length >= 10) return [b.readUInt16LE(6), b.readUInt16LE(8)];
  if (mime === 'image/bmp' && b.length >= 26) return [Math.abs(b.readInt32LE(18)), Math.abs(b.readInt32LE(22))];
  return null;
}

async function decodeRgba(bytes: Buffer, label: string, opts: LoadImageOptions): Promise<Rgba> {
  if (bytes.length === 0) throw new Error(`${label}: cannot decode (empty file)`);
  const mime = sniff(bytes);
  if (!mime) throw new Error(`${label}: cannot decode (unrecognised format; supported: PNG, JPEG, BMP, GIF, TIFF)`);
  const size = headerSize(bytes, mime);
  if (size && (size[0] === 0 || size[1] === 0)) throw new Error(`${label}: image has zero size (${size[0]}x${size[1]})`);
  if (size && size[0] * size[1] > MAX_PIXELS) {
    throw new Error(`${label}: cannot decode (header claims ${size[0]}x${size[1]} pixels, over the ${MAX_PIXELS} limit)`);
  }
  try {
    if (opts.applyExifOrientation) {
      const j = await Jimp.fromBuffer(bytes);
      return j.bitmap;
    }
    const format = defaultFormats.map((f) => f()).find((f) => f.mime === mime);
    if (!format) throw new Error(`no decoder for ${mime}`);
    // The formats' decode signatures differ only in their options object.
    const decode = format.decode as (data: Buffer, options?: object) => Rgba | Promise<Rgba>;
    const decoded = await decode(bytes, mime === 'image/jpeg' ? { maxResolutionInMP: MAX_PIXELS / 1e6 } : undefined);
    const bmp: Rgba = { width: decoded.width, height: decoded.height, data: decoded.data };
    if (mime === 'image/png') restorePngColorKey(bytes, bmp);
    return bmp;
  } catch (e) {
    let reason = e instanceof Error ? e.message : String(e);
    if (/read requests waitng|waiting on finished stream/.test(reason)) reason = 'data is truncated';
    throw new Error(`${label}: cannot decode (${mime.slice(6).toUpperCase()}: ${reason})`);
  }
}

/**
 * pngjs blanks pixels matching a tRNS colour key (gray or RGB PNGs) to (0,0,0,0); PIL keeps their
 * colour and only marks them transparent. In such PNGs every alpha-0 pixel is a keyed pixel, so
 * put the key colour back (scaled to 8 bits as pngjs scales the other pixels).
 */
function restorePngColorKey(png: Buffer, bmp: Rgba): void {
  const depth = png[24];
  const colorType = png[25];
  if (colorType !== 0 && colorType !== 2) return;
  let pos = 8;
  while (pos + 8 <= png.length) {
    const len = png.readUInt32BE(pos);
    const type = png.toString('latin1', pos + 4, pos + 8);
    if (type === 'IDAT' || type === 'IEND') return;
    if (type === 'tRNS') {
      const n = colorType === 0 ? 1 : 3;
      if (len < 2 * n || pos + 8 + 2 * n > png.length) return;
      const max = 2 ** depth - 1;
      const key = Array.from({ length: 3 }, (_, c) => {
        const v = png.readUInt16BE(pos + 8 + 2 * (n === 1 ? 0 : c));
        return Math.floor((v * 255) / max + 0.5);
      });
      for (let i = 0; i < bmp.width * bmp.height; i++) {
        if (bmp.data[i * 4 + 3] === 0) for (let c = 0; c < 3; c++) bmp.data[i * 4 + c] = key[c];
      }
      return;
    }
    pos += 12 + len;
  }
}
