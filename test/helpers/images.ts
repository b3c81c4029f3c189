// Hand-built image files for the hardening tests and the fuzz harness (written byte by byte, not
// with the code under test, so that headers can lie on purpose).
import { deflateSync } from 'node:zlib';

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(b: Buffer): number {
  let c = 0xffffffff;
  for (const x of b) c = CRC_TABLE[(c ^ x) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export function pngChunk(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(body.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), body])));
  return Buffer.concat([head, body, crc]);
}

/**
 * An 8-bit RGB PNG whose header says `width` x `height`; its image data holds `rows` rows of
 * grey (default: all of them), so `rows < height` gives a truncated-data PNG.
 */
export function greyPng(width: number, height: number, rows = height): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const row = Buffer.alloc(1 + width * 3, 128);
  row[0] = 0;
  const raw = Buffer.alloc(row.length * rows);
  for (let y = 0; y < rows; y++) row.copy(raw, y * row.length);
  const sig = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([sig, pngChunk('IHDR', ihdr), pngChunk('IDAT', deflateSync(raw)), pngChunk('IEND', Buffer.alloc(0))]);
}

/** A GIF whose logical screen is `sw` x `sh` and whose single frame is `fw` x `fh` (1-colour). */
export function gifWithFrame(sw: number, sh: number, fw: number, fh: number): Buffer {
  const u16 = (n: number) => [n & 0xff, n >> 8];
  const head = [...Buffer.from('GIF89a'), ...u16(sw), ...u16(sh), 0x80, 0, 0, 0, 0, 0, 255, 255, 255];
  const desc = [0x2c, ...u16(0), ...u16(0), ...u16(fw), ...u16(fh), 0];
  // LZW min code size 2, one sub-block: clear, 0, end (enough for the probe).
  return Buffer.from([...head, ...desc, 2, 2, 0x44, 0x01, 0, 0x3b]);
}

/** A little-endian TIFF header declaring `w` x `h` 8-bit RGB with one strip of `stripBytes` bytes. */
export function tiffHeader(w: number, h: number, stripBytes: number): Buffer {
  const entries: Array<[number, number, number, number]> = [
    [256, 4, 1, w],
    [257, 4, 1, h],
    [258, 3, 1, 8],
    [259, 3, 1, 1],
    [262, 3, 1, 2],
    [273, 4, 1, 0], // patched below
    [277, 3, 1, 3],
    [279, 4, 1, stripBytes],
  ];
  const ifdSize = 2 + entries.length * 12 + 4;
  const dataAt = 8 + ifdSize;
  const b = Buffer.alloc(dataAt + stripBytes);
  b.write('II', 0, 'latin1');
  b.writeUInt16LE(42, 2);
  b.writeUInt32LE(8, 4);
  b.writeUInt16LE(entries.length, 8);
  entries.forEach(([tag, type, count, value], i) => {
    const e = 10 + i * 12;
    b.writeUInt16LE(tag, e);
    b.writeUInt16LE(type, e + 2);
    b.writeUInt32LE(count, e + 4);
    if (type === 3) b.writeUInt16LE(tag === 273 ? 0 : value, e + 8);
    else b.writeUInt32LE(tag === 273 ? dataAt : value, e + 8);
  });
  return b;
}
