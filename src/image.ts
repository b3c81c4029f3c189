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
import { createInflate } from 'node:zlib';
import { Jimp, defaultFormats } from 'jimp';
import { MAX_IMAGE_FILE_BYTES, readRegularFile } from './files.js';

/** 8-bit RGB image: `data[(y * width + x) * 3 + c]`, length width * height * 3. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

export interface LoadImageOptions {
  /** Rotate/flip JPEGs by their EXIF orientation tag (default false, as PIL/HF/LLaVA). */
  applyExifOrientation?: boolean;
  /**
   * Largest image accepted, in pixels (default DEFAULT_MAX_IMAGE_PIXELS = 50,000,000), checked
   * from the header before anything is decoded or allocated.
   */
  maxImagePixels?: number;
  /** Largest image file read, in bytes (default 256 MiB). Only regular files are read. */
  maxFileBytes?: number;
  /** Called with the header's width and height before decoding (e.g. to bound the preprocessing). */
  checkSize?: (width: number, height: number) => void;
}

/**
 * Default limit on image pixels (decoded, and every buffer the preprocessing allocates): 50
 * megapixels, a bit more than a 48 MP camera frame. Raise it with the `maxImagePixels` option
 * (`--max-image-pixels` on the command line).
 */
export const DEFAULT_MAX_IMAGE_PIXELS = 50_000_000;

type Mime = 'image/png' | 'image/jpeg' | 'image/gif' | 'image/bmp' | 'image/tiff';

/** A decoded RGBA bitmap (what jimp's decoders return). */
interface Rgba {
  width: number;
  height: number;
  data: Uint8Array;
}

/** Loads an image and converts it to RGB. Raw RgbImages are validated and returned unchanged. */
export async function loadImage(input: string | Uint8Array | RgbImage, opts: LoadImageOptions = {}): Promise<RgbImage> {
  const maxPixels = checkPixelLimit(opts.maxImagePixels);
  if (typeof input !== 'string' && !(input instanceof Uint8Array)) {
    validateRgbImage(input, 'image <RgbImage>');
    if (input.width * input.height > maxPixels) throw new Error(`image <RgbImage>: ${input.width}x${input.height} is over the ${maxPixels}-pixel limit (maxImagePixels)`);
    opts.checkSize?.(input.width, input.height);
    return input;
  }
  const { label, bytes, info } = await readAndProbe(input, maxPixels, opts);
  const rgba = await decodeRgba(bytes, label, info.mime, maxPixels, opts);
  if (!(rgba.width > 0 && rgba.height > 0)) {
    throw new Error(`${label}: image has zero size (${rgba.width}x${rgba.height})`);
  }
  const rotated = opts.applyExifOrientation && rgba.width === info.height && rgba.height === info.width;
  if (!rotated && (rgba.width !== info.width || rgba.height !== info.height)) {
    throw new Error(`${label}: decoded as ${rgba.width}x${rgba.height} but its header says ${info.width}x${info.height}`);
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

function checkPixelLimit(v: number | undefined): number {
  if (v === undefined) return DEFAULT_MAX_IMAGE_PIXELS;
  if (!Number.isSafeInteger(v) || v < 1) throw new Error(`maxImagePixels must be a positive integer, got ${String(v)}`);
  return v;
}

/** What an image file's header says, read without decoding. */
export interface ImageHeader {
  mime: Mime;
  width: number;
  height: number;
  /** PNG only: bit depth, colour type, interlace method. */
  png?: { depth: number; colorType: number; interlace: number };
}

/**
 * Reads an image file's header (PNG, JPEG, GIF, BMP, TIFF) and checks it before any decoding:
 * a known format, positive dimensions within `maxImagePixels`, and the pixel data the header
 * promises present in the file (truncated files are refused). Cheap: reads the file, decodes nothing.
 */
export async function probeImage(input: string | Uint8Array, opts: Pick<LoadImageOptions, 'maxImagePixels' | 'maxFileBytes' | 'checkSize'> = {}): Promise<ImageHeader> {
  return (await readAndProbe(input, checkPixelLimit(opts.maxImagePixels), opts)).info;
}

/** Reads a file (regular files only, size-bounded) or takes the bytes, then checks the header, the size hook and (PNG) the data. */
async function readAndProbe(input: string | Uint8Array, maxPixels: number, opts: Pick<LoadImageOptions, 'maxFileBytes' | 'checkSize'>): Promise<{ label: string; bytes: Buffer; info: ImageHeader }> {
  const label = typeof input === 'string' ? `image '${input}'` : `image <${input.length} bytes>`;
  const bytes = typeof input === 'string' ? await readRegularFile(input, label, opts.maxFileBytes ?? MAX_IMAGE_FILE_BYTES) : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  const info = probeImageBytes(bytes, label, maxPixels);
  try {
    opts.checkSize?.(info.width, info.height);
  } catch (e) {
    throw new Error(`${label}: ${(e as Error).message}`);
  }
  if (info.mime === 'image/png') await checkPngData(bytes, info, label);
  return { label, bytes, info };
}

function probeImageBytes(bytes: Buffer, label: string, maxPixels: number): ImageHeader {
  if (bytes.length === 0) throw new Error(`${label}: cannot decode (empty file)`);
  const mime = sniff(bytes);
  if (!mime) throw new Error(`${label}: cannot decode (unrecognised format; supported: PNG, JPEG, BMP, GIF, TIFF)`);
  const fail = (why: string): never => {
    throw new Error(`${label}: cannot decode (${mime.slice(6).toUpperCase()}: ${why})`);
  };
  const info = readHeader(bytes, mime, fail);
  if (info.width === 0 || info.height === 0) throw new Error(`${label}: image has zero size (${info.width}x${info.height})`);
  if (info.width * info.height > maxPixels) {
    throw new Error(`${label}: ${info.width}x${info.height} pixels is over the ${maxPixels}-pixel limit (raise maxImagePixels / --max-image-pixels to accept it)`);
  }
  return info;
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

/** Dimensions from the header, with the checks each format allows without decoding. */
function readHeader(b: Buffer, mime: Mime, fail: (why: string) => never): ImageHeader {
  const need = (n: number, what: string) => {
    if (b.length < n) fail(`truncated ${what}`);
  };
  if (mime === 'image/png') {
    need(33, 'header (no complete IHDR chunk)');
    if (b.toString('latin1', 12, 16) !== 'IHDR') fail('first chunk is not IHDR');
    return { mime, width: b.readUInt32BE(16), height: b.readUInt32BE(20), png: { depth: b[24], colorType: b[25], interlace: b[28] } };
  }
  if (mime === 'image/gif') {
    need(13, 'header');
    const width = b.readUInt16LE(6);
    const height = b.readUInt16LE(8);
    // Find the first image descriptor: it must lie inside the logical screen (jimp reads the
    // screen size, so a bigger frame would be silently cropped).
    let pos = 13;
    if (b[10] & 0x80) pos += 3 * 2 ** ((b[10] & 7) + 1);
    for (;;) {
      need(pos + 1, 'file (no image frame)');
      const tag = b[pos];
      if (tag === 0x21) {
        pos += 2;
        for (;;) {
          need(pos + 1, 'extension block');
          const len = b[pos];
          pos += 1 + len;
          if (len === 0) break;
        }
      } else if (tag === 0x2c) {
        need(pos + 10, 'image descriptor');
        const [left, top, w, h] = [b.readUInt16LE(pos + 1), b.readUInt16LE(pos + 3), b.readUInt16LE(pos + 5), b.readUInt16LE(pos + 7)];
        if (left + w > width || top + h > height) fail(`frame ${w}x${h} at (${left}, ${top}) does not fit the ${width}x${height} logical screen`);
        if (w === 0 || h === 0) fail(`frame has zero size (${w}x${h})`);
        return { mime, width, height };
      } else {
        fail(tag === 0x3b ? 'no image frame' : 'corrupt block structure');
      }
    }
  }
  if (mime === 'image/bmp') {
    need(30, 'header');
    const infoSize = b.readUInt32LE(14);
    if (infoSize === 12) return { mime, width: b.readUInt16LE(18), height: b.readUInt16LE(20) };
    need(34, 'header');
    const width = b.readInt32LE(18);
    const height = Math.abs(b.readInt32LE(22));
    if (width < 0) fail(`negative width ${width}`);
    const bpp = b.readUInt16LE(28);
    const compression = b.readUInt32LE(30);
    if (compression === 0 && [1, 4, 8, 16, 24, 32].includes(bpp)) {
      const row = Math.ceil((width * bpp) / 32) * 4;
      const dataStart = b.readUInt32LE(10);
      if (dataStart + row * height > b.length) fail(`truncated pixel data (the header needs ${row * height} bytes from offset ${dataStart}, the file has ${b.length} bytes)`);
    }
    return { mime, width, height };
  }
  if (mime === 'image/tiff') {
    const le = b[0] === 0x49;
    const u16 = (o: number) => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
    const u32 = (o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
    need(8, 'header');
    const ifd = u32(4);
    need(ifd + 2, 'file (IFD past the end)');
    const count = u16(ifd);
    need(ifd + 2 + 12 * count, 'IFD');
    const tags = new Map<number, number[]>();
    for (let i = 0; i < count; i++) {
      const e = ifd + 2 + 12 * i;
      const tag = u16(e);
      const type = u16(e + 2);
      const n = u32(e + 4);
      const size = type === 3 ? 2 : type === 4 ? 4 : 0;
      if (size === 0 || ![256, 257, 258, 259, 273, 277, 279].includes(tag)) continue;
      const at = n * size <= 4 ? e + 8 : u32(e + 8);
      if (n > 1 << 20) fail(`tag ${tag} has ${n} values`);
      need(at + n * size, `file (tag ${tag} values past the end)`);
      tags.set(tag, Array.from({ length: n }, (_, k) => (size === 2 ? u16(at + 2 * k) : u32(at + 4 * k))));
    }
    const width = tags.get(256)?.[0];
    const height = tags.get(257)?.[0];
    if (width === undefined || height === undefined) fail('no ImageWidth/ImageLength tags');
    const offsets = tags.get(273) ?? [];
    const counts = tags.get(279) ?? [];
    if (offsets.length === 0 || offsets.length !== counts.length) fail('missing or inconsistent strip offsets/byte counts');
    let total = 0;
    offsets.forEach((o, k) => {
      if (o + counts[k] > b.length) fail(`truncated pixel data (strip ${k} ends at ${o + counts[k]}, the file has ${b.length} bytes)`);
      total += counts[k];
    });
    const compression = tags.get(259)?.[0] ?? 1;
    if (compression === 1) {
      // Bits per pixel: the sum of BitsPerSample (a lower bound when a writer gave one value for all samples).
      const bits = (tags.get(258) ?? [1]).reduce((a, c) => a + c, 0);
      const needBytes = Math.ceil((width as number) * bits / 8) * (height as number);
      if (total < needBytes) fail(`truncated pixel data (${total} bytes of strips, ${width}x${height} needs ${needBytes})`);
    }
    return { mime, width: width as number, height: height as number };
  }
  // JPEG: the first start-of-frame marker before the scan.
  let pos = 2;
  for (;;) {
    need(pos + 4, 'file (no frame header)');
    if (b[pos] !== 0xff) fail('corrupt marker structure');
    const marker = b[pos + 1];
    if (marker === 0xff) {
      pos++;
      continue;
    }
    if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
      pos += 2;
      continue;
    }
    if (marker === 0xda || marker === 0xd9) fail('no frame header before the scan');
    const len = b.readUInt16BE(pos + 2);
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      need(pos + 9, 'frame header');
      const height = b.readUInt16BE(pos + 5);
      const width = b.readUInt16BE(pos + 7);
      // The entropy-coded data must end with an EOI marker: a cut file has none.
      if (b.lastIndexOf(Buffer.from([0xff, 0xd9])) < pos) fail('truncated data (no end-of-image marker)');
      return { mime, width, height };
    }
    pos += 2 + len;
  }
}

/** Bytes of filtered scanlines a PNG's image data must inflate to. */
function pngRawBytes(width: number, height: number, depth: number, colorType: number, interlace: number): number {
  const channels = ({ 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 } as Record<number, number>)[colorType] ?? 4;
  const row = (w: number) => (w === 0 ? 0 : 1 + Math.ceil((w * channels * depth) / 8));
  if (interlace !== 1) return height * row(width);
  const passes = [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2]];
  let total = 0;
  for (const [x0, y0, dx, dy] of passes) {
    const w = Math.ceil((width - x0) / dx);
    const h = Math.ceil((height - y0) / dy);
    if (w > 0 && h > 0) total += h * row(w);
  }
  return total;
}

/**
 * Refuses a PNG whose image data is cut short: the chunks must lie inside the file, end with
 * IEND, and the IDAT stream must inflate to at least the bytes the header promises (counted
 * while streaming, nothing kept).
 */
async function checkPngData(b: Buffer, info: ImageHeader, label: string): Promise<void> {
  const fail = (why: string): never => {
    throw new Error(`${label}: cannot decode (PNG: ${why})`);
  };
  const idat: Buffer[] = [];
  let pos = 8;
  let ended = false;
  while (pos + 8 <= b.length) {
    const len = b.readUInt32BE(pos);
    const type = b.toString('latin1', pos + 4, pos + 8);
    if (pos + 12 + len > b.length) fail(`data is truncated (chunk ${JSON.stringify(type.replace(/[^A-Za-z]/g, '?'))} runs past the end of the file)`);
    if (type === 'IDAT') idat.push(b.subarray(pos + 8, pos + 8 + len));
    pos += 12 + len;
    if (type === 'IEND') {
      ended = true;
      break;
    }
  }
  if (!ended) fail('data is truncated (no IEND chunk)');
  if (idat.length === 0) fail('no image data (no IDAT chunk)');
  const png = info.png as NonNullable<ImageHeader['png']>;
  const expected = pngRawBytes(info.width, info.height, png.depth, png.colorType, png.interlace);
  const got = await new Promise<number>((resolve) => {
    const z = createInflate();
    let n = 0;
    let done = false;
    const finish = () => {
      if (!done) {
        done = true;
        resolve(n);
      }
    };
    z.on('data', (c: Buffer) => {
      n += c.length;
      if (n >= expected) {
        finish();
        z.destroy();
      }
    });
    z.on('end', finish);
    z.on('error', finish);
    z.on('close', finish);
    for (const c of idat) z.write(c);
    z.end();
  });
  if (got < expected) fail(`data is truncated (image data inflates to ${got} of the ${expected} bytes a ${info.width}x${info.height} image needs)`);
}

async function decodeRgba(bytes: Buffer, label: string, mime: Mime, maxPixels: number, opts: LoadImageOptions): Promise<Rgba> {
  try {
    if (opts.applyExifOrientation) {
      const j = await Jimp.fromBuffer(bytes);
      return j.bitmap;
    }
    const format = defaultFormats.map((f) => f()).find((f) => f.mime === mime);
    if (!format) throw new Error(`no decoder for ${mime}`);
    // The formats' decode signatures differ only in their options object.
    const decode = format.decode as (data: Buffer, options?: object) => Rgba | Promise<Rgba>;
    const decoded = await decode(bytes, mime === 'image/jpeg' ? { maxResolutionInMP: maxPixels / 1e6 } : undefined);
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
