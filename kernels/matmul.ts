// WebAssembly SIMD kernels for packed weights (AssemblyScript; built by `npm run build:kernels`
// into dist/kernels/kernels.wasm with attention.ts).
//
// Why our own kernels: tfjs has only float32 tensors, so its matmul reads 4 bytes per weight and
// needs every weight inside its 4 GB heap; these read the packed bytes directly (2 for f16,
// 1.0625 for q8_0, 0.5625 for q4_0 per weight) from memories of their own.
//
// The module imports one shared memory (env.memory) and keeps no state: every argument is a byte
// offset into that memory, laid out by layers/quant/ (arena.ts). The same module is instantiated
// once per memory and per thread; threads split the output columns [n0, n1) of one call.
//
// Layouts (weights in PyTorch order: one row of K values per output feature n; K padded to Kp, a
// multiple of 32, with zeros):
//   q8_0 weights: wq int8 [N][Kp], ws f32 [N][Kp/32] (each the value of llama.cpp's fp16 block scale)
//   q4_0 weights: wq u8 [N][Kp/32][16] (byte j = q[j] | q[j+16] << 4, value (q - 8) * d), ws as q8_0
//   f16 weights:  w u16 [N][Kp]
//   activations for q formats: xq int16 [M][Kp] (16-bit block quantization: quantize.ts, quantizeRows16)
//     instead of once per output column), xs f32 [M][Kp/32]; for f16: x f32 [M][Kp]
//   out f32 [M][ldo], columns n0..n1-1 written: out = dot * colScale[n] + bias[n] (either pointer 0 = none)

import { halves } from './f16';

// ---- epilogue ----

@inline function hsum(v: v128): f32 {
  return (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

@inline function put(out: usize, ldo: i32, m: i32, n: i32, acc: v128, colScale: usize, bias: usize): void {
  let y = hsum(acc);
  if (colScale != 0) y *= load<f32>(colScale + (<usize>n << 2));
  if (bias != 0) y += load<f32>(bias + (<usize>n << 2));
  store<f32>(out + ((<usize>m * ldo + n) << 2), y);
}

// ---- q8_0 / q4_0 x q8_0 activations ----
//
// One block of 32: the weight's 32 int8 as four i16x8 (w0..w3), the activation's four i16x8, four
// i32x4.dot_i16x8_s (8 multiply-adds each), the int32 sum converted once and scaled by d_x * d_w.
// Tiles of 4 rows x 2 columns reuse each extended weight block for 4 rows and each activation
// block for 2 columns; rows are taken in chunks of ROW_CHUNK so the activations stay in L2 while
// every column of the range goes by.

const ROW_CHUNK = 64;

@inline function dot4(x0: v128, x1: v128, x2: v128, x3: v128, w0: v128, w1: v128, w2: v128, w3: v128): v128 {
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(x0, w0), i32x4.dot_i16x8_s(x1, w1)),
    i32x4.add(i32x4.dot_i16x8_s(x2, w2), i32x4.dot_i16x8_s(x3, w3)),
  );
}

@inline function fma(acc: v128, isum: v128, s: f32): v128 {
  return f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), f32x4.splat(s)));
}

// Weight block b of one column as four i16x8 (values 0-7, 8-15, 16-23, 24-31).
@inline function wLo(q4: bool, col: usize, b: i32): v128 {
  if (q4) return v128.load(col + (<usize>b << 4));
  return v128.load(col + (<usize>b << 5));
}
@inline function wHi(q4: bool, col: usize, b: i32): v128 {
  return q4 ? v128.load(col + (<usize>b << 4)) : v128.load(col + (<usize>b << 5), 16);
}
@inline function unpackLo(q4: bool, v: v128): v128 {
  // q4_0: low nibbles are values 0-15; q8_0: the first 16 bytes are values 0-15
  return q4 ? i8x16.sub(v128.and(v, i8x16.splat(0x0f)), i8x16.splat(8)) : v;
}
@inline function unpackHi(q4: bool, v: v128): v128 {
  return q4 ? i8x16.sub(i8x16.shr_u(v, 4), i8x16.splat(8)) : v;
}

/** int32 dot of activation block (x0..x3) with block b of the column at `col`. */
@inline function colDot(q4: bool, col: usize, b: i32, x0: v128, x1: v128, x2: v128, x3: v128): v128 {
  const lo = unpackLo(q4, wLo(q4, col, b));
  const hi = unpackHi(q4, wHi(q4, col, b));
  return dot4(x0, x1, x2, x3, i16x8.extend_low_i8x16_s(lo), i16x8.extend_high_i8x16_s(lo), i16x8.extend_low_i8x16_s(hi), i16x8.extend_high_i8x16_s(hi));
}

/** One activation row m against four columns n..n+3 (decode: each activation block is loaded once for 4 columns). */
@inline function tileRow(q4: bool, cols: i32, xq: usize, xs: usize, m: i32, Kp: i32, wq: usize, ws: usize, n: i32, out: usize, ldo: i32, colScale: usize, bias: usize): void {
  const blocks = Kp >> 5;
  const rowBytes: usize = q4 ? <usize>(Kp >> 1) : <usize>Kp;
  const c0 = wq + <usize>n * rowBytes;
  const s0 = ws + ((<usize>n * blocks) << 2);
  const sRow = <usize>blocks << 2;
  const xr = xq + ((<usize>m * Kp) << 1);
  const sx = xs + ((<usize>m * blocks) << 2);
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  for (let b = 0; b < blocks; b++) {
    const xb = xr + (<usize>b << 6);
    const x0 = v128.load(xb), x1 = v128.load(xb, 16), x2 = v128.load(xb, 32), x3 = v128.load(xb, 48);
    const d = load<f32>(sx + (<usize>b << 2));
    a0 = fma(a0, colDot(q4, c0, b, x0, x1, x2, x3), d * load<f32>(s0 + (<usize>b << 2)));
    if (cols > 1) a1 = fma(a1, colDot(q4, c0 + rowBytes, b, x0, x1, x2, x3), d * load<f32>(s0 + sRow + (<usize>b << 2)));
    if (cols > 2) a2 = fma(a2, colDot(q4, c0 + 2 * rowBytes, b, x0, x1, x2, x3), d * load<f32>(s0 + 2 * sRow + (<usize>b << 2)));
    if (cols > 3) a3 = fma(a3, colDot(q4, c0 + 3 * rowBytes, b, x0, x1, x2, x3), d * load<f32>(s0 + 3 * sRow + (<usize>b << 2)));
  }
  put(out, ldo, m, n, a0, colScale, bias);
  if (cols > 1) put(out, ldo, m, n + 1, a1, colScale, bias);
  if (cols > 2) put(out, ldo, m, n + 2, a2, colScale, bias);
  if (cols > 3) put(out, ldo, m, n + 3, a3, colScale, bias);
}

/** Four activation rows m..m+3 against two columns n, n+1 (prefill: each unpacked weight block serves 4 rows). */
@inline function tile4x2(q4: bool, xq: usize, xs: usize, m: i32, Kp: i32, wq: usize, ws: usize, n: i32, out: usize, ldo: i32, colScale: usize, bias: usize): void {
  const blocks = Kp >> 5;
  const rowBytes: usize = q4 ? <usize>(Kp >> 1) : <usize>Kp;
  const ca = wq + <usize>n * rowBytes;
  const cb = ca + rowBytes;
  const sa = ws + ((<usize>n * blocks) << 2);
  const sb = sa + (<usize>blocks << 2);
  const xRow = <usize>Kp << 1;
  const sRow = <usize>blocks << 2;
  const xm = xq + <usize>m * xRow;
  const sm = xs + ((<usize>m * blocks) << 2);
  let a00 = f32x4.splat(0), a01 = f32x4.splat(0), a10 = f32x4.splat(0), a11 = f32x4.splat(0);
  let a20 = f32x4.splat(0), a21 = f32x4.splat(0), a30 = f32x4.splat(0), a31 = f32x4.splat(0);
  for (let b = 0; b < blocks; b++) {
    const la = unpackLo(q4, wLo(q4, ca, b)), ha = unpackHi(q4, wHi(q4, ca, b));
    const lb = unpackLo(q4, wLo(q4, cb, b)), hb = unpackHi(q4, wHi(q4, cb, b));
    const p0 = i16x8.extend_low_i8x16_s(la), p1 = i16x8.extend_high_i8x16_s(la), p2 = i16x8.extend_low_i8x16_s(ha), p3 = i16x8.extend_high_i8x16_s(ha);
    const r0 = i16x8.extend_low_i8x16_s(lb), r1 = i16x8.extend_high_i8x16_s(lb), r2 = i16x8.extend_low_i8x16_s(hb), r3 = i16x8.extend_high_i8x16_s(hb);
    const da = load<f32>(sa + (<usize>b << 2));
    const db = load<f32>(sb + (<usize>b << 2));
    const xb = xm + (<usize>b << 6);
    const sb0 = sm + (<usize>b << 2);
    let x0 = v128.load(xb), x1 = v128.load(xb, 16), x2 = v128.load(xb, 32), x3 = v128.load(xb, 48);
    let d = load<f32>(sb0);
    a00 = fma(a00, dot4(x0, x1, x2, x3, p0, p1, p2, p3), d * da);
    a01 = fma(a01, dot4(x0, x1, x2, x3, r0, r1, r2, r3), d * db);
    x0 = v128.load(xb + xRow); x1 = v128.load(xb + xRow, 16); x2 = v128.load(xb + xRow, 32); x3 = v128.load(xb + xRow, 48);
    d = load<f32>(sb0 + sRow);
    a10 = fma(a10, dot4(x0, x1, x2, x3, p0, p1, p2, p3), d * da);
    a11 = fma(a11, dot4(x0, x1, x2, x3, r0, r1, r2, r3), d * db);
    x0 = v128.load(xb + 2 * xRow); x1 = v128.load(xb + 2 * xRow, 16); x2 = v128.load(xb + 2 * xRow, 32); x3 = v128.load(xb + 2 * xRow, 48);
    d = load<f32>(sb0 + 2 * sRow);
    a20 = fma(a20, dot4(x0, x1, x2, x3, p0, p1, p2, p3), d * da);
    a21 = fma(a21, dot4(x0, x1, x2, x3, r0, r1, r2, r3), d * db);
    x0 = v128.load(xb + 3 * xRow); x1 = v128.load(xb + 3 * xRow, 16); x2 = v128.load(xb + 3 * xRow, 32); x3 = v128.load(xb + 3 * xRow, 48);
    d = load<f32>(sb0 + 3 * sRow);
    a30 = fma(a30, dot4(x0, x1, x2, x3, p0, p1, p2, p3), d * da);
    a31 = fma(a31, dot4(x0, x1, x2, x3, r0, r1, r2, r3), d * db);
  }
  put(out, ldo, m, n, a00, colScale, bias);
  put(out, ldo, m, n + 1, a01, colScale, bias);
  put(out, ldo, m + 1, n, a10, colScale, bias);
  put(out, ldo, m + 1, n + 1, a11, colScale, bias);
  put(out, ldo, m + 2, n, a20, colScale, bias);
  put(out, ldo, m + 2, n + 1, a21, colScale, bias);
  put(out, ldo, m + 3, n, a30, colScale, bias);
  put(out, ldo, m + 3, n + 1, a31, colScale, bias);
}

@inline function matmulQ(q4: bool, xq: usize, xs: usize, M: i32, Kp: i32, wq: usize, ws: usize, n0: i32, n1: i32, out: usize, ldo: i32, colScale: usize, bias: usize): void {
  for (let mc = 0; mc < M; mc += ROW_CHUNK) {
    const mEnd = min(M, mc + ROW_CHUNK);
    const quadEnd = mc + ((mEnd - mc) & ~3);
    let n = n0;
    for (; n + 1 < n1; n += 2) {
      for (let m = mc; m < quadEnd; m += 4) tile4x2(q4, xq, xs, m, Kp, wq, ws, n, out, ldo, colScale, bias);
    }
    if (n < n1) for (let m = mc; m < quadEnd; m++) tileRow(q4, 1, xq, xs, m, Kp, wq, ws, n, out, ldo, colScale, bias);
    // rows left over (all of them for decode): one row against 4 columns at a time
    for (let m = quadEnd; m < mEnd; m++) {
      let c = n0;
      for (; c + 3 < n1; c += 4) tileRow(q4, 4, xq, xs, m, Kp, wq, ws, c, out, ldo, colScale, bias);
      for (; c < n1; c++) tileRow(q4, 1, xq, xs, m, Kp, wq, ws, c, out, ldo, colScale, bias);
    }
  }
}

export function matmulQ8(xq: usize, xs: usize, M: i32, Kp: i32, wq: usize, ws: usize, n0: i32, n1: i32, out: usize, ldo: i32, colScale: usize, bias: usize): void {
  matmulQ(false, xq, xs, M, Kp, wq, ws, n0, n1, out, ldo, colScale, bias);
}

export function matmulQ4(xq: usize, xs: usize, M: i32, Kp: i32, wq: usize, ws: usize, n0: i32, n1: i32, out: usize, ldo: i32, colScale: usize, bias: usize): void {
  matmulQ(true, xq, xs, M, Kp, wq, ws, n0, n1, out, ldo, colScale, bias);
}

// ---- f16 weights x f32 activations ----
//
// Each row converts the fp16 weights inline (f16.ts), reading every weight byte once: the decode
// path. From 2 rows on, packed-linear.ts runs panel.ts instead (each column converted once per row
// chunk), so this loop has no multi-row tiling of its own.

export function matmulF16(x: usize, M: i32, Kp: i32, w: usize, n0: i32, n1: i32, out: usize, ldo: i32, colScale: usize, bias: usize): void {
  const xrow = <usize>Kp << 2;
  for (let m = 0; m < M; m++) {
    const xr = x + <usize>m * xrow;
    for (let n = n0; n < n1; n++) {
      const col = w + ((<usize>n * Kp) << 1);
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
      for (let k = 0; k < Kp; k += 8) {
        a0 = f32x4.add(a0, f32x4.mul(v128.load(xr + (<usize>k << 2)), halves(col + (<usize>k << 1))));
        a1 = f32x4.add(a1, f32x4.mul(v128.load(xr + (<usize>k << 2), 16), halves(col + (<usize>k << 1) + 8)));
      }
      put(out, ldo, m, n, f32x4.add(a0, a1), colScale, bias);
    }
  }
}

/** Bytes [0, n) of a v128 read loop from p (sums the words so the reads cannot be elided): the bench's bandwidth probe. */
export function readLoop(p: usize, n: usize): i32 {
  let a = i32x4.splat(0), b = i32x4.splat(0), c = i32x4.splat(0), d = i32x4.splat(0);
  for (let i: usize = 0; i + 64 <= n; i += 64) {
    a = i32x4.add(a, v128.load(p + i));
    b = i32x4.add(b, v128.load(p + i, 16));
    c = i32x4.add(c, v128.load(p + i, 32));
    d = i32x4.add(d, v128.load(p + i, 48));
  }
  const s = i32x4.add(i32x4.add(a, b), i32x4.add(c, d));
  return i32x4.extract_lane(s, 0) + i32x4.extract_lane(s, 1) + i32x4.extract_lane(s, 2) + i32x4.extract_lane(s, 3);
}
