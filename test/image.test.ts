// Image loading, Pillow-compatible resampling and CLIP preprocessing.
import { expect } from 'chai';
import { pngChunk } from './helpers/images.js';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { Jimp } from 'jimp';
import { loadImage, type RgbImage } from '../src/image.js';
import { cropImage, padToSquare, resize, resizeBicubic } from '../src/resample.js';
import { ImageProcessor } from '../src/preprocess.js';
import { TINY_LLAVA_DIR, expectedArray, maxAbsDiff } from './helpers/fixture.js';

const rgb = (width: number, height: number, px: number[]): RgbImage => ({ width, height, data: Uint8Array.from(px) });

/** Smooth test image (no overshoot clipping in bicubic), values in about [40, 215]. */
function smoothImage(width: number, height: number, seed: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) {
        const v = 127 + 45 * Math.sin(x / (3 + c + seed) + y / 5) + 40 * Math.cos((x + 2 * y) / (7 + seed) + c);
        data[(y * width + x) * 3 + c] = Math.round(v);
      }
    }
  }
  return { width, height, data };
}

/**
 * Independent float64 reference: Keys cubic (a = -0.5) in expanded polynomial form, support
 * widened by the downscale factor, weights over every input pixel normalised per axis, applied as
 * one 2-D sum (no separable uint8 intermediate, no fixed point), rounded once.
 */
function referenceBicubic(img: RgbImage, outW: number, outH: number): RgbImage {
  const cubic = (t: number): number => {
    const x = Math.abs(t);
    if (x < 1) return 1.5 * x ** 3 - 2.5 * x ** 2 + 1;
    if (x < 2) return -0.5 * x ** 3 + 2.5 * x ** 2 - 4 * x + 2;
    return 0;
  };
  const weights = (inSize: number, outSize: number): number[][] =>
    Array.from({ length: outSize }, (_, o) => {
      const fs = Math.max(inSize / outSize, 1);
      const center = ((o + 0.5) * inSize) / outSize;
      const w = Array.from({ length: inSize }, (_, i) => cubic((i + 0.5 - center) / fs));
      const sum = w.reduce((a, b) => a + b, 0);
      return w.map((v) => v / sum);
    });
  const wx = weights(img.width, outW);
  const wy = weights(img.height, outH);
  const data = new Uint8Array(outW * outH * 3);
  for (let y = 0; y < outH; y++)
    for (let x = 0; x < outW; x++)
      for (let c = 0; c < 3; c++) {
        let s = 0;
        for (let j = 0; j < img.height; j++) {
          if (wy[y][j] === 0) continue;
          for (let i = 0; i < img.width; i++) s += wy[y][j] * wx[x][i] * img.data[(j * img.width + i) * 3 + c];
        }
        data[(y * outW + x) * 3 + c] = Math.min(255, Math.max(0, Math.round(s)));
      }
  return { width: outW, height: outH, data };
}

// ---- minimal PNG writer, to produce exact colour types (gray, gray+alpha, palette, tRNS) ----
/** 8-bit PNG from raw samples (row-major, `channels` per pixel), filter 0 on every row. */
function makePng(width: number, height: number, colorType: number, samples: number[], extra: Buffer[] = []): Buffer {
  const channels = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[colorType] as number;
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, colorType, 0, 0, 0], 8);
  const raw: number[] = [];
  for (let y = 0; y < height; y++) raw.push(0, ...samples.slice(y * width * channels, (y + 1) * width * channels));
  const sig = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([sig, pngChunk('IHDR', ihdr), ...extra, pngChunk('IDAT', deflateSync(Buffer.from(raw))), pngChunk('IEND', Buffer.alloc(0))]);
}

describe('image: Pillow-compatible bicubic resampling', () => {
  it('matches hand-computed Keys cubic weights (4 -> 2 horizontal, 2 -> 4 vertical)', () => {
    // 4 -> 2: filter scale 2, support 4; out 0 centre 1.0, taps K(-0.25), K(0.25), K(0.75), K(1.25) =
    // .8671875, .8671875, .2265625, -.0703125 (sum 1.890625) -> [0,100,200,250] gives 60.54 -> 61;
    // out 1 mirrored -> 218.39 -> 218.
    const row = resizeBicubic(rgb(4, 1, [0, 0, 0, 100, 100, 100, 200, 200, 200, 250, 250, 250]), 2, 1);
    expect(Array.from(row.data)).to.deep.equal([61, 61, 61, 218, 218, 218]);
    // 2 -> 4 (upscale, support 2): centres .25 .75 1.25 1.75 over [100, 200] -> 91.18, 120.71, 179.29, 208.82.
    const col = resizeBicubic(rgb(1, 2, [100, 100, 100, 200, 200, 200]), 1, 4);
    expect(Array.from(col.data.filter((_, i) => i % 3 === 0))).to.deep.equal([91, 121, 179, 209]);
  });

  it('agrees with a float64 2-D reference within 1 level (down, up, mixed, odd factors)', () => {
    const cases: [number, number, number, number][] = [
      [37, 23, 11, 7],
      [20, 15, 47, 33],
      [30, 9, 13, 25],
      [64, 48, 64, 17],
      [17, 29, 17, 40],
    ];
    for (const [w, h, ow, oh] of cases) {
      const img = smoothImage(w, h, w % 5);
      const d = maxAbsDiff(resizeBicubic(img, ow, oh).data, referenceBicubic(img, ow, oh).data);
      expect(d, `${w}x${h} -> ${ow}x${oh}`).to.be.at.most(1);
    }
  });

  it('identity returns the same pixels (a copy); a constant image stays constant', () => {
    const img = smoothImage(9, 6, 1);
    const same = resizeBicubic(img, 9, 6);
    expect(same.data).to.deep.equal(img.data);
    expect(same.data).to.not.equal(img.data);
    const flat = rgb(5, 4, Array.from({ length: 60 }, (_, i) => [7, 128, 255][i % 3]));
    for (const [w, h] of [[2, 3], [13, 11], [5, 9], [1, 1]]) {
      const out = resizeBicubic(flat, w, h);
      expect(out.data.every((v, i) => v === [7, 128, 255][i % 3]), `${w}x${h}`).to.equal(true);
    }
  });

  it('other Pillow filters run and keep constants; bad sizes are refused', () => {
    const flat = rgb(3, 3, new Array(27).fill(90));
    for (const f of ['bilinear', 'box', 'hamming', 'lanczos'] as const) {
      expect(resize(flat, 7, 2, f).data.every((v) => v === 90), f).to.equal(true);
    }
    expect(() => resizeBicubic(flat, 0, 3)).to.throw(/positive integers/);
  });
});

describe('image: crop and pad to square', () => {
  const px = (img: RgbImage) => Array.from({ length: img.width * img.height }, (_, i) => img.data[i * 3]);

  it('padToSquare centres with floor((long - short) / 2) offsets (LLaVA expand2square)', () => {
    // 2 wide x 5 tall -> 5x5, left offset (5 - 2) // 2 = 1; red channel = 1..10, fill 0.
    const tall = rgb(2, 5, Array.from({ length: 10 }, (_, i) => [i + 1, 50, 60]).flat());
    const sq = padToSquare(tall, [0, 7, 9]);
    expect([sq.width, sq.height]).to.deep.equal([5, 5]);
    expect(px(sq)).to.deep.equal([0, 1, 2, 0, 0, 0, 3, 4, 0, 0, 0, 5, 6, 0, 0, 0, 7, 8, 0, 0, 0, 9, 10, 0, 0]);
    expect(Array.from(sq.data.subarray(0, 3))).to.deep.equal([0, 7, 9]);
    // 4 wide x 1 tall -> 4x4, top offset (4 - 1) // 2 = 1.
    const wide = padToSquare(rgb(4, 1, [1, 0, 0, 2, 0, 0, 3, 0, 0, 4, 0, 0]), [0, 0, 0]);
    expect(px(wide)).to.deep.equal([0, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('cropImage copies the box and fills outside the image', () => {
    const img = rgb(3, 2, [1, 0, 0, 2, 0, 0, 3, 0, 0, 4, 0, 0, 5, 0, 0, 6, 0, 0]);
    expect(px(cropImage(img, 1, 0, 2, 2))).to.deep.equal([2, 3, 5, 6]);
    expect(px(cropImage(img, -1, 1, 3, 2, [9, 9, 9]))).to.deep.equal([9, 4, 5, 9, 9, 9]);
  });
});

describe('image: CLIPImageProcessor', () => {
  it('reproduces the fixture (451x300 -> 84x56 bicubic -> crop 56): uint8 image and pixel_values', async () => {
    const proc = await ImageProcessor.fromFile(join(TINY_LLAVA_DIR, 'preprocessor_config.json'));
    const out = proc.preprocess(await loadImage(join(TINY_LLAVA_DIR, 'image.png')));
    expect([out.channels, out.height, out.width]).to.deep.equal([3, 56, 56]);
    // Expected PNG decoded with jimp directly (not through our loader).
    const ref = await Jimp.read(join(TINY_LLAVA_DIR, 'preprocessed_uint8.png'));
    const refRgb = Uint8Array.from({ length: 56 * 56 * 3 }, (_, i) => ref.bitmap.data[Math.floor(i / 3) * 4 + (i % 3)]);
    const uint8Diff = maxAbsDiff(out.resized.data, refRgb);
    const pv = expectedArray('pixel_values');
    const pvDiff = maxAbsDiff(out.pixelValues, pv.data);
    console.log(`      fixture preprocessing: max uint8 diff ${uint8Diff}, max pixel_values diff ${pvDiff.toExponential(2)}`);
    expect(uint8Diff).to.equal(0); // Pillow-exact resampler (acceptance bound: 1)
    expect(pvDiff).to.be.at.most(1e-6); // float32-exact rescale/normalize (acceptance bound: 0.02)
    expect(pv.shape).to.deep.equal([3, 56, 56]);
  });

  it('shortest-edge sizes truncate like HF; a small image is zero-padded by the center crop', () => {
    const p = ImageProcessor.fromConfig({ size: { shortest_edge: 56 }, crop_size: { height: 56, width: 56 }, do_center_crop: false });
    expect([p.transform(smoothImage(300, 451, 0)).width, p.transform(smoothImage(300, 451, 0)).height]).to.deep.equal([56, 84]);
    expect(p.transform(smoothImage(100, 33, 0)).width).to.equal(169); // int(56 * 100 / 33) = 169
    // 2 wide x 3 tall, crop 4x4: HF pads to 4x4 with the image at rows 1..3, cols 1..2.
    const c = ImageProcessor.fromConfig({ do_resize: false, crop_size: 4, do_normalize: false, do_rescale: false });
    const img = rgb(2, 3, Array.from({ length: 6 }, (_, i) => [i + 1, i + 1, i + 1]).flat());
    const out = c.preprocess(img);
    expect(Array.from(out.pixelValues.subarray(0, 16))).to.deep.equal([0, 0, 0, 0, 0, 1, 2, 0, 0, 3, 4, 0, 0, 5, 6, 0]);
  });

  it("pad mode fills with int(mean * 255) = (122, 116, 104) and normalizes in float32", () => {
    const p = ImageProcessor.fromConfig({ image_aspect_ratio: 'pad', do_resize: false, do_center_crop: false });
    // 1 wide x 3 tall -> 3x3 with the column at x = (3 - 1) // 2 = 1.
    const out = p.preprocess(rgb(1, 3, [255, 0, 10, 20, 30, 40, 5, 6, 7]));
    const F = [122, 116, 104];
    expect(Array.from(out.resized.data)).to.deep.equal([...F, 255, 0, 10, ...F, ...F, 20, 30, 40, ...F, ...F, 5, 6, 7, ...F]);
    const f = Math.fround;
    const want = f(f(f(255 / 255) - f(0.48145466)) / f(0.26862954));
    expect(out.pixelValues[1]).to.equal(want); // channel 0, row 0, col 1
  });

  it('rejects bad configs naming the field', () => {
    expect(() => ImageProcessor.fromConfig({ size: { shortest_edge: -3 } })).to.throw(/'size\.shortest_edge' must be a positive integer/);
    expect(() => ImageProcessor.fromConfig({ resample: 0 })).to.throw(/'resample'/);
    expect(() => ImageProcessor.fromConfig({ image_mean: [0.5, 0.5] })).to.throw(/'image_mean'/);
    expect(() => ImageProcessor.fromConfig({ image_std: [1, 0, 1] })).to.throw(/'image_std'/);
    expect(() => ImageProcessor.fromConfig({ crop_size: { height: 4 } })).to.throw(/'crop_size'/);
    expect(() => ImageProcessor.fromConfig({ image_aspect_ratio: 'anyres' })).to.throw(/'image_aspect_ratio'/);
    expect(() => ImageProcessor.fromConfig({ do_resize: 'yes' as unknown as boolean })).to.throw(/'do_resize'/);
  });
});

describe('image: loading and RGB conversion', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'illava-img-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, bytes: Buffer | Uint8Array): string => {
    const p = join(dir, name);
    writeFileSync(p, bytes);
    return p;
  };

  it('RGBA drops alpha without compositing (PIL convert("RGB")); LA and gray become R=G=B', async () => {
    const rgba = await loadImage(file('rgba.png', makePng(3, 1, 6, [10, 20, 30, 0, 40, 50, 60, 128, 70, 80, 90, 255])));
    expect(Array.from(rgba.data)).to.deep.equal([10, 20, 30, 40, 50, 60, 70, 80, 90]);
    const gray = await loadImage(makePng(3, 1, 0, [0, 128, 255]));
    expect(Array.from(gray.data)).to.deep.equal([0, 0, 0, 128, 128, 128, 255, 255, 255]);
    const la = await loadImage(makePng(2, 1, 4, [33, 0, 200, 77]));
    expect(Array.from(la.data)).to.deep.equal([33, 33, 33, 200, 200, 200]);
  });

  it('palette PNGs and tRNS colour keys keep the colour of transparent pixels', async () => {
    const plte = pngChunk('PLTE', Buffer.from([255, 0, 0, 0, 0, 255]));
    const trnsP = pngChunk('tRNS', Buffer.from([0])); // palette entry 0 fully transparent
    const pal = await loadImage(makePng(2, 1, 3, [0, 1], [plte, trnsP]));
    expect(Array.from(pal.data)).to.deep.equal([255, 0, 0, 0, 0, 255]);
    const key = pngChunk('tRNS', Buffer.from([0, 5, 0, 6, 0, 7])); // RGB (5, 6, 7) transparent
    const keyed = await loadImage(makePng(2, 1, 2, [5, 6, 7, 8, 9, 10], [key]));
    expect(Array.from(keyed.data)).to.deep.equal([5, 6, 7, 8, 9, 10]);
  });

  it('decodes JPEG, BMP, GIF and TIFF; EXIF orientation ignored unless asked', async () => {
    const src = new Jimp({ width: 16, height: 8, color: 0x000000ff });
    for (let y = 0; y < 8; y++) for (let x = 0; x < 16; x++) src.setPixelColor(((x < 8 ? 0xc83214 : 0x1464c8) * 256 + 255) >>> 0, x, y);
    const want = Array.from({ length: 128 }, (_, i) => (i % 16 < 8 ? [200, 50, 20] : [20, 100, 200])).flat();
    for (const mime of ['image/bmp', 'image/gif', 'image/tiff', 'image/jpeg'] as const) {
      const img = await loadImage(await src.getBuffer(mime));
      expect([img.width, img.height], mime).to.deep.equal([16, 8]);
      // jimp's GIF encoder quantizes (off by 1 here) and JPEG is lossy.
      expect(maxAbsDiff(img.data, want), mime).to.be.at.most({ 'image/jpeg': 12, 'image/gif': 1 }[mime as string] ?? 0);
    }
    // JPEG with an EXIF APP1 segment saying "rotate 90 CW" (orientation 6): ignored by default,
    // as PIL.Image.open does; applied on request.
    const tiffIfd = Buffer.from([0x4d, 0x4d, 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0]);
    const exifBody = Buffer.concat([Buffer.from('Exif\0\0', 'latin1'), tiffIfd]);
    const app1 = Buffer.concat([Buffer.from([0xff, 0xe1, 0, exifBody.length + 2]), exifBody]);
    const jpeg = await src.getBuffer('image/jpeg');
    const withExif = Buffer.concat([jpeg.subarray(0, 2), app1, jpeg.subarray(2)]);
    const plain = await loadImage(withExif);
    expect([plain.width, plain.height]).to.deep.equal([16, 8]);
    const rotated = await loadImage(withExif, { applyExifOrientation: true });
    expect([rotated.width, rotated.height]).to.deep.equal([8, 16]);
  });

  it('gives clear errors for missing, empty, corrupt, truncated and zero-size images', async () => {
    const fails = async (input: string | Uint8Array, re: RegExp) => {
      let err: Error | undefined;
      try {
        await loadImage(input);
      } catch (e) {
        err = e as Error;
      }
      expect(err, String(re)).to.be.instanceOf(Error);
      expect(err!.message).to.match(re);
    };
    await fails(join(dir, 'nope.png'), /^image '.*nope\.png': file not found$/);
    mkdirSync(join(dir, 'sub'));
    await fails(join(dir, 'sub'), /is a directory/);
    await fails(file('empty.png', Buffer.alloc(0)), /cannot decode \(empty file\)/);
    let s = 7;
    const noise = Buffer.from(Array.from({ length: 512 }, () => (s = (s * 1103515245 + 12345) % 2 ** 31) & 255));
    await fails(file('noise.png', noise), /^image '.*noise\.png': cannot decode \(unrecognised format/);
    const png = makePng(4, 4, 2, new Array(48).fill(100));
    await fails(file('trunc.png', png.subarray(0, png.length - 30)), /^image '.*trunc\.png': cannot decode \(PNG: /);
    await fails(Buffer.concat([png.subarray(0, 33), noise]), /^image <\d+ bytes>: cannot decode \(PNG: /);
    const jpeg = await new Jimp({ width: 8, height: 8, color: 0x336699ff }).getBuffer('image/jpeg');
    await fails(file('trunc.jpg', jpeg.subarray(0, 100)), /cannot decode \(JPEG: /);
    await fails(makePng(0, 3, 2, []), /zero size \(0x3\)/);
    await loadImage({ width: 0, height: 2, data: new Uint8Array(0) }).then(
      () => expect.fail('zero-size RgbImage accepted'),
      (e: Error) => expect(e.message).to.match(/zero size/),
    );
  });

  it('passes a valid RgbImage through and rejects a malformed one', async () => {
    const img = rgb(1, 1, [1, 2, 3]);
    expect(await loadImage(img)).to.equal(img);
    await loadImage({ width: 2, height: 2, data: new Uint8Array(5) }).then(
      () => expect.fail('accepted'),
      (e: Error) => expect(e.message).to.match(/length width\*height\*3/),
    );
  });
});
