// Conversions between the storage dtypes (F32, F16, BF16) and float32.
//
// Weight files are little-endian (safetensors spec, tfjs weight shards). On a little-endian host
// (every platform Node runs on in practice) typed-array views read them directly; a big-endian
// host takes the DataView path. Typed-array views need aligned byte offsets (2 for 16-bit, 4 for
// 32-bit): an unaligned Uint8Array (e.g. a subarray at an odd offset) is copied first.
import type { StorageDtype } from './types.js';

/** Bytes per element of each storage dtype. */
export const DTYPE_BYTES: Readonly<Record<StorageDtype, number>> = { F32: 4, F16: 2, BF16: 2 };

/** True when the host stores multi-byte numbers little-endian (typed arrays then match the files). */
export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** `bytes` as an aligned copy when its byteOffset is not a multiple of `align`, else itself. */
function aligned(bytes: Uint8Array, align: number): Uint8Array {
  return bytes.byteOffset % align === 0 ? bytes : bytes.slice();
}

function checkLength(bytes: Uint8Array, size: number, what: string): number {
  if (bytes.byteLength % size !== 0) {
    throw new Error(`${what}: byte length ${bytes.byteLength} is not a multiple of ${size}`);
  }
  return bytes.byteLength / size;
}

/** Little-endian 16-bit words of `bytes` (a view when possible, else a copy). */
export function uint16FromBytesLE(bytes: Uint8Array): Uint16Array {
  const n = checkLength(bytes, 2, '16-bit data');
  if (HOST_LITTLE_ENDIAN) {
    const a = aligned(bytes, 2);
    return new Uint16Array(a.buffer, a.byteOffset, n);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) out[i] = view.getUint16(2 * i, true);
  return out;
}

/** Little-endian bytes of 16-bit words (a view on a little-endian host). */
export function uint16ToBytesLE(words: Uint16Array): Uint8Array {
  if (HOST_LITTLE_ENDIAN) return new Uint8Array(words.buffer, words.byteOffset, words.byteLength);
  const out = new Uint8Array(words.length * 2);
  const view = new DataView(out.buffer);
  for (let i = 0; i < words.length; i++) view.setUint16(2 * i, words[i], true);
  return out;
}

/** Little-endian bytes of float32 values (a view on a little-endian host). */
export function float32ToBytesLE(values: Float32Array): Uint8Array {
  if (HOST_LITTLE_ENDIAN) return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const out = new Uint8Array(values.length * 4);
  const view = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) view.setFloat32(4 * i, values[i], true);
  return out;
}

/** F32 little-endian bytes -> a fresh Float32Array. */
export function f32BytesToFloat32(bytes: Uint8Array): Float32Array {
  const n = checkLength(bytes, 4, 'F32 data');
  const out = new Float32Array(n);
  if (HOST_LITTLE_ENDIAN) {
    new Uint8Array(out.buffer).set(bytes); // byte copy: no alignment needed
  } else {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
  }
  return out;
}

// ---- F16 -> F32: a 65536-entry table, built once on first use (256 KiB). ----

let f16Table: Float32Array | undefined;

/** Exact float value of IEEE binary16 bits `h` (sign 1, exponent 5 (bias 15), mantissa 10). */
export function f16BitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24; // zero / subnormal: mant x 2^-24
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

function f16ToF32Table(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToNumber(h);
  }
  return f16Table;
}

/** F16 little-endian bytes -> a fresh Float32Array. */
export function f16BytesToFloat32(bytes: Uint8Array): Float32Array {
  const words = uint16FromBytesLE(bytes);
  const table = f16ToF32Table();
  const out = new Float32Array(words.length);
  for (let i = 0; i < words.length; i++) out[i] = table[words[i]];
  return out;
}

/**
 * F16 bits -> float32 values written into `out` (default: a fresh array): out[i] = fround(f16(words[i]) * scale).
 * With scale 1 the conversion is exact.
 */
export function f16WordsToFloat32(words: Uint16Array, out: Float32Array = new Float32Array(words.length), scale = 1): Float32Array {
  if (out.length < words.length) throw new Error(`f16WordsToFloat32: ${out.length} outputs for ${words.length} values`);
  const table = f16ToF32Table();
  if (scale === 1) for (let i = 0; i < words.length; i++) out[i] = table[words[i]];
  else for (let i = 0; i < words.length; i++) out[i] = table[words[i]] * scale;
  return out;
}

/** BF16 little-endian bytes -> a fresh Float32Array (bf16 = the high 16 bits of a float32). */
export function bf16BytesToFloat32(bytes: Uint8Array): Float32Array {
  const words = uint16FromBytesLE(bytes);
  const bits = new Uint32Array(words.length);
  for (let i = 0; i < words.length; i++) bits[i] = words[i] << 16;
  return new Float32Array(bits.buffer);
}

/** Stored bytes of `dtype` -> a fresh Float32Array. */
export function bytesToFloat32(dtype: StorageDtype, bytes: Uint8Array): Float32Array {
  switch (dtype) {
    case 'F32': return f32BytesToFloat32(bytes);
    case 'F16': return f16BytesToFloat32(bytes);
    case 'BF16': return bf16BytesToFloat32(bytes);
  }
}

// ---- F32 -> F16, round to nearest, ties to even (numpy's npy_floatbits_to_halfbits). ----

/** Binary16 bits of float32 bits `f` (unsigned 32-bit). Overflow gives +-Infinity; NaN stays NaN. */
export function f32BitsToF16Bits(f: number): number {
  const sign = (f >>> 16) & 0x8000;
  const fExp = f & 0x7f800000;
  const fSig = f & 0x007fffff;
  if (fExp >= 0x47800000) {
    // |x| >= 65536, Infinity or NaN.
    if (fExp === 0x7f800000 && fSig !== 0) {
      const h = 0x7c00 | (fSig >>> 13);
      return sign | (h === 0x7c00 ? 0x7e00 : h); // keep payload; never turn a NaN into Infinity
    }
    return sign | 0x7c00;
  }
  if (fExp <= 0x38000000) {
    // |x| < 2^-14: half subnormal or zero. Below 2^-25 everything rounds to 0.
    if (fExp < 0x33000000) return sign;
    const e = fExp >>> 23;
    let sig = (0x00800000 + fSig) >>> (113 - e); // shift 1..11 more than a normal
    // Ties to even: skip the +half when the kept part is even and the dropped part is exactly half
    // (the shift above may have dropped up to 11 low bits, so they are checked in `f`).
    if ((sig & 0x3fff) !== 0x1000 || (f & 0x7ff) !== 0) sig += 0x1000;
    return sign | (sig >>> 13); // a carry into the exponent gives the smallest normal: correct
  }
  const hExp = (fExp - 0x38000000) >>> 13;
  let sig = fSig;
  if ((sig & 0x3fff) !== 0x1000) sig += 0x1000;
  // A carry out of the mantissa increments the exponent (up to 31 = Infinity): correct rounding.
  return sign | (hExp + (sig >>> 13));
}

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** Binary16 bits of a number (first rounded to float32, then to half, ties to even). */
export function numberToF16Bits(x: number): number {
  scratchF32[0] = x;
  return f32BitsToF16Bits(scratchU32[0]);
}

/** Float32 values -> binary16 bits (round to nearest even). */
export function float32ToF16Bits(values: Float32Array): Uint16Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length); // Float32Array is 4-aligned
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f32BitsToF16Bits(bits[i]);
  return out;
}

/**
 * fp16 words w with fround(fp16(w[i]) x scale) === values[i] for every i (Object.is, so -0 and
 * 0 differ), or null as soon as one value is not exactly representable: a lossless fp16 copy of
 * values that came from an fp16 checkpoint (optionally times a float32 column scale).
 */
export function exactF16Words(values: Float32Array, scale = 1): Uint16Array | null {
  const s = Math.fround(scale);
  const table = f16ToF32Table();
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    const w = numberToF16Bits(s === 1 ? v : Math.fround(v / s));
    if (!Object.is(Math.fround(table[w] * s), v)) return null;
    out[i] = w;
  }
  return out;
}
