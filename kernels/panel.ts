// Prefill matmul for every packed format: float32 activations times weight columns dequantized to
// float32 a few at a time ("panels"), in 2-row x 4-column register tiles.
//
// Why a second path next to matmul.ts's integer one: with many rows (prefill, the vision tower)
// the integer kernel is bound by its per-block work (widening int8, 4 dots, 3 adds and a float
// rescale per 32 values and output), not by memory. Dequantizing a column once and reusing it for
// every row costs ~1 instruction per weight; what is left per multiply-add is a float32 fma. With
// relaxed SIMD (`f32x4.relaxed_madd`: one fused instruction on x86 with FMA3) the tile runs ~1.5x
// the integer kernel's speed; without it (mul + add) ~1.2x. The module is built twice (asconfig's
// "relaxed" target defines ASC_FEATURE_RELAXED_SIMD) and the loader picks what the engine runs.
// Activations stay float32 (no 16-bit quantization), so this path is also the more exact one.
//
// Formats (the `format` argument; layers/packed/packed-linear.ts PANEL_FORMAT): 0 q8_0, 1 q4_0, 2 f16.
// Layout: x f32 [M][Kp] (zero-padded to Kp), weights as matmul.ts describes, out f32 [M][ldo]
// columns n0..n1-1, out = dot * colScale[n] + bias[n] (pointer 0 = none). `panel`: f32 [4][Kp]
// scratch of the calling thread.
//
// Loop order: rows in equal chunks whose activations fit ~4 MB (stay in cache while every panel of the
// column range goes by; measured: unchunked, a K = 11008 prefill ran at 3/4 speed, reading the
// whole [612, 11008] activation from memory for every 4 columns); in a chunk, per 4 columns:
// dequantize them into the panel, then every row pair against it.

import { halves } from './f16';

const PANEL_Q8: i32 = 0;
const PANEL_Q4: i32 = 1;
const PANEL_F16: i32 = 2;

const CHUNK_FLOATS = 1 << 20; // at most 4 MB of activations per row chunk

@inline function mad(acc: v128, a: v128, b: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, acc);
  return f32x4.add(acc, f32x4.mul(a, b));
}

@inline function hsum(v: v128): f32 {
  return (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

/** Four int8 lanes (i16 lanes `half` of v, widened) as float32 times d. */
@inline function lowQuad(v: v128, d: v128): v128 {
  return f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(v)), d);
}
@inline function highQuad(v: v128, d: v128): v128 {
  return f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(v)), d);
}

/** 16 int8 values as float32 times d, stored at dst (64 bytes). */
@inline function store16(v: v128, d: v128, dst: usize): void {
  const lo = i16x8.extend_low_i8x16_s(v), hi = i16x8.extend_high_i8x16_s(v);
  v128.store(dst, lowQuad(lo, d));
  v128.store(dst, highQuad(lo, d), 16);
  v128.store(dst, lowQuad(hi, d), 32);
  v128.store(dst, highQuad(hi, d), 48);
}

/** Column n of the packed weight as float32 [Kp] at dst. */
function dequantizeColumn(format: i32, w: usize, ws: usize, Kp: i32, n: i32, dst: usize): void {
  const blocks = Kp >> 5;
  if (format == PANEL_F16) {
    const col = w + ((<usize>n * Kp) << 1);
    for (let k = 0; k < Kp; k += 4) v128.store(dst + (<usize>k << 2), halves(col + (<usize>k << 1)));
    return;
  }
  const q4 = format == PANEL_Q4;
  const col = w + <usize>n * (q4 ? <usize>(Kp >> 1) : <usize>Kp);
  const sc = ws + ((<usize>n * blocks) << 2);
  for (let b = 0; b < blocks; b++) {
    const d = f32x4.splat(load<f32>(sc + (<usize>b << 2)));
    const o = dst + (<usize>b << 7);
    if (q4) {
      // byte j = q[j] | q[j + 16] << 4, value (q - 8) * d (matmul.ts)
      const v = v128.load(col + (<usize>b << 4));
      store16(i8x16.sub(v128.and(v, i8x16.splat(0x0f)), i8x16.splat(8)), d, o);
      store16(i8x16.sub(i8x16.shr_u(v, 4), i8x16.splat(8)), d, o + 64);
    } else {
      const src = col + (<usize>b << 5);
      store16(v128.load(src), d, o);
      store16(v128.load(src, 16), d, o + 64);
    }
  }
}

@inline function put(out: usize, ldo: i32, m: i32, n: i32, y: f32, colScale: usize, bias: usize): void {
  if (colScale != 0) y *= load<f32>(colScale + (<usize>n << 2));
  if (bias != 0) y += load<f32>(bias + (<usize>n << 2));
  store<f32>(out + ((<usize>m * ldo + n) << 2), y);
}

/**
 * Rows m, m + 1 against the panel's 4 columns (output columns n..n+3). Lanes hold k mod 4; the
 * horizontal sums come once per output. Written out for this one shape: with rows/columns as
 * parameters Binaryen merges the specializations back into one loop that tests them (2/3 speed).
 */
@inline function tile2x4(x: usize, Kp: i32, panel: usize, m: i32, n: i32, out: usize, ldo: i32, colScale: usize, bias: usize): void {
  const cs = <usize>Kp << 2;
  let x0 = x + <usize>m * cs;
  let x1 = x0 + cs;
  let p0 = panel, p1 = panel + cs, p2 = panel + 2 * cs, p3 = panel + 3 * cs;
  let a00 = f32x4.splat(0), a01 = f32x4.splat(0), a02 = f32x4.splat(0), a03 = f32x4.splat(0);
  let a10 = f32x4.splat(0), a11 = f32x4.splat(0), a12 = f32x4.splat(0), a13 = f32x4.splat(0);
  const end = x0 + cs;
  while (x0 < end) {
    const w0 = v128.load(p0), w1 = v128.load(p1), w2 = v128.load(p2), w3 = v128.load(p3);
    let a = v128.load(x0);
    a00 = mad(a00, a, w0); a01 = mad(a01, a, w1); a02 = mad(a02, a, w2); a03 = mad(a03, a, w3);
    a = v128.load(x1);
    a10 = mad(a10, a, w0); a11 = mad(a11, a, w1); a12 = mad(a12, a, w2); a13 = mad(a13, a, w3);
    x0 += 16; x1 += 16; p0 += 16; p1 += 16; p2 += 16; p3 += 16;
  }
  put(out, ldo, m, n, hsum(a00), colScale, bias);
  put(out, ldo, m, n + 1, hsum(a01), colScale, bias);
  put(out, ldo, m, n + 2, hsum(a02), colScale, bias);
  put(out, ldo, m, n + 3, hsum(a03), colScale, bias);
  put(out, ldo, m + 1, n, hsum(a10), colScale, bias);
  put(out, ldo, m + 1, n + 1, hsum(a11), colScale, bias);
  put(out, ldo, m + 1, n + 2, hsum(a12), colScale, bias);
  put(out, ldo, m + 1, n + 3, hsum(a13), colScale, bias);
}

/** Row m against panel column j (output column n + j): the edges (an odd last row, the last 1-3 columns). */
function edge(x: usize, Kp: i32, panel: usize, m: i32, j: i32, n: i32, out: usize, ldo: i32, colScale: usize, bias: usize): void {
  const cs = <usize>Kp << 2;
  const xr = x + <usize>m * cs;
  const p = panel + <usize>j * cs;
  let a = f32x4.splat(0);
  for (let k: usize = 0; k < cs; k += 16) a = mad(a, v128.load(xr + k), v128.load(p + k));
  put(out, ldo, m, n + j, hsum(a), colScale, bias);
}

/** out[m][n] for m < M, n in [n0, n1): the prefill path of every format (format: PANEL_*). */
export function matmulPanel(format: i32, x: usize, M: i32, Kp: i32, w: usize, ws: usize, n0: i32, n1: i32, out: usize, ldo: i32, colScale: usize, bias: usize, panel: usize): void {
  // equal chunks (577 rows at K = 1024: one chunk, not 512 + 65 with every column dequantized twice)
  const chunks = (M + max(16, CHUNK_FLOATS / Kp) - 1) / max(16, CHUNK_FLOATS / Kp);
  const chunk = ((M + chunks - 1) / chunks + 1) & ~1;
  const cs = <usize>Kp << 2;
  for (let mc = 0; mc < M; mc += chunk) {
    const mEnd = min(M, mc + chunk);
    for (let n = n0; n < n1; n += 4) {
      const cols = min(4, n1 - n);
      for (let j = 0; j < cols; j++) dequantizeColumn(format, w, ws, Kp, n + j, panel + <usize>j * cs);
      let m = mc;
      if (cols == 4) for (; m + 1 < mEnd; m += 2) tile2x4(x, Kp, panel, m, n, out, ldo, colScale, bias);
      // rows the tiles left (an odd last row; every row when fewer than 4 columns are left)
      for (; m < mEnd; m++) for (let j = 0; j < cols; j++) edge(x, Kp, panel, m, j, n, out, ldo, colScale, bias);
    }
  }
}
