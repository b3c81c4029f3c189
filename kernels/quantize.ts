// Quantization in the kernels: activations at every call (quantizeRows16, for matmul.ts, at the
// end), and weights at load time: float32 rows -> llama.cpp's q8_0 / q4_0 blocks, written straight
// into a layer's arena slices. Bit-identical to weights/quantized.ts (itself checked
// against llama.cpp's quantize_row_q8_0_ref / quantize_row_q4_0_ref) and 5-6x faster than it on
// one thread (`node dist/scripts/bench-kernels.js --only quantize`: [11008, 4096] q8_0 954 -> 139
// ms): the TypeScript quantizer was most of a 7B's first load.
//
// src: f32 [rows][Kp] (rows zero-padded to Kp, a multiple of 32); q8_0: dst int8 [rows][Kp];
// q4_0: dst u8 [rows][Kp/32][16] (byte j = q[j] | q[j+16] << 4); scales f32 [rows][Kp/32], each
// the float32 value of the block's fp16 scale. Returns -1, or the first row with a non-finite
// value or a scale beyond fp16 (the caller reruns the TypeScript quantizer for its message).

// ---- fp16 <-> f32 (scalar, round to nearest even) ----
@inline function f32ToF16(f: f32): u32 {
  const x = reinterpret<u32>(f);
  const sign = (x >> 16) & 0x8000;
  const abs = x & 0x7fffffff;
  if (abs >= 0x7f800000) return sign | 0x7c00 | (abs > 0x7f800000 ? 0x200 : 0);
  if (abs >= 0x477ff000) return sign | 0x7c00; // rounds to >= 65520: infinity
  if (abs < 0x38800000) {
    // subnormal half (or zero): value / 2^-24, rounded to nearest even
    if (abs < 0x33000000) return sign; // < 2^-25: rounds to 0
    const e = abs >> 23;
    const m = (abs & 0x7fffff) | 0x800000;
    const shift = 126 - e; // 14 + (113 - e) - ... : shifts m (2^23 scale) down to 2^-24 units
    const q = m >> shift;
    const rem: u32 = m & (((<u32>1) << shift) - 1);
    const half: u32 = (<u32>1) << (shift - 1);
    return sign | (q + (rem > half || (rem == half && (q & 1) != 0) ? 1 : 0));
  }
  // normal: rebias the exponent (127 -> 15), keep 10 mantissa bits, round to nearest even
  const base = abs - 0x38000000;
  const q = base >> 13;
  const rem = base & 0x1fff;
  return sign | (q + (rem > 0x1000 || (rem == 0x1000 && (q & 1) != 0) ? 1 : 0));
}

@inline function f16ToF32(h: u32): f32 {
  const sign = (h & 0x8000) << 16;
  const magnitude = reinterpret<f32>((h & 0x7fff) << 13) * 5.192296858534828e33; // 2^112 folds the exponent bias
  return reinterpret<f32>(reinterpret<u32>(magnitude) | sign);
}


/** max |x| of 32 values at p; NaN if any is NaN (f32x4.max propagates it). */
@inline function blockAmax(p: usize): f32 {
  let m = f32x4.abs(v128.load(p));
  for (let i = 1; i < 8; i++) m = f32x4.max(m, f32x4.abs(v128.load(p + (i << 4))));
  return max(max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)), max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)));
}

/** C roundf (half away from zero) of 4 lanes, as int32. */
@inline function roundAway(v: v128): v128 {
  const t = f32x4.trunc(v);
  const up = v128.and(f32x4.ge(f32x4.abs(f32x4.sub(v, t)), f32x4.splat(0.5)), v128.or(v128.and(v, i32x4.splat(0x80000000)), i32x4.splat(0x3f800000)));
  return i32x4.trunc_sat_f32x4_s(f32x4.add(t, up));
}

/** q8_0: d = fp16(amax/127), q = roundf(x * (1/d)) (quantize_row_q8_0_ref). */
export function quantizeQ8Matrix(src: usize, rows: i32, Kp: i32, dst: usize, scales: usize): i32 {
  const blocks = Kp >> 5;
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < blocks; b++) {
      const p = src + ((<usize>r * Kp + (b << 5)) << 2);
      const amax = blockAmax(p);
      if (!(amax < Infinity)) return r; // NaN or infinity
      const d: f32 = amax / 127;
      const id: f32 = d != 0 ? 1 / d : 0;
      const h = f32ToF16(d);
      if ((h & 0x7c00) == 0x7c00) return r;
      store<f32>(scales + ((<usize>r * blocks + b) << 2), f16ToF32(h));
      const ids = f32x4.splat(id);
      const q = dst + <usize>r * Kp + (b << 5);
      for (let i = 0; i < 2; i++) {
        const o = p + (i << 6);
        const a = i16x8.narrow_i32x4_s(roundAway(f32x4.mul(v128.load(o), ids)), roundAway(f32x4.mul(v128.load(o, 16), ids)));
        const c = i16x8.narrow_i32x4_s(roundAway(f32x4.mul(v128.load(o, 32), ids)), roundAway(f32x4.mul(v128.load(o, 48), ids)));
        v128.store(q + (i << 4), i8x16.narrow_i16x8_s(a, c));
      }
    }
  }
  return -1;
}

/** q4_0: max = the first value of largest magnitude, d = fp16(max / -8), q = min(15, trunc(x * (1/d) + 8.5)) (quantize_row_q4_0_ref). */
export function quantizeQ4Matrix(src: usize, rows: i32, Kp: i32, dst: usize, scales: usize): i32 {
  const blocks = Kp >> 5;
  const half = f32x4.splat(8.5);
  const fifteen = i32x4.splat(15);
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < blocks; b++) {
      const p = src + ((<usize>r * Kp + (b << 5)) << 2);
      const amax = blockAmax(p);
      if (!(amax < Infinity)) return r;
      let maxv: f32 = 0; // an all-zero block keeps +0 (even if it holds -0), so d = -0 as in C
      if (amax > 0) for (let j = 0; j < 32; j++) {
        const v = load<f32>(p + (<usize>j << 2));
        if (abs(v) == amax) { maxv = v; break; }
      }
      const d: f32 = maxv / -8;
      const id: f32 = d != 0 ? 1 / d : 0;
      const h = f32ToF16(d);
      if ((h & 0x7c00) == 0x7c00) return r;
      store<f32>(scales + ((<usize>r * blocks + b) << 2), f16ToF32(h));
      const ids = f32x4.splat(id);
      // values 0-15 in the low nibbles, 16-31 in the high ones
      const lo0 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.add(f32x4.mul(v128.load(p), ids), half)), fifteen);
      const lo1 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.add(f32x4.mul(v128.load(p, 16), ids), half)), fifteen);
      const lo2 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.add(f32x4.mul(v128.load(p, 32), ids), half)), fifteen);
      const lo3 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.add(f32x4.mul(v128.load(p, 48), ids), half)), fifteen);
      const hi0 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.add(f32x4.mul(v128.load(p, 64), ids), half)), fifteen);
      const hi1 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.add(f32x4.mul(v128.load(p, 80), ids), half)), fifteen);
      const hi2 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.add(f32x4.mul(v128.load(p, 96), ids), half)), fifteen);
      const hi3 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.add(f32x4.mul(v128.load(p, 112), ids), half)), fifteen);
      const lo = i8x16.narrow_i16x8_u(i16x8.narrow_i32x4_s(lo0, lo1), i16x8.narrow_i32x4_s(lo2, lo3));
      const hi = i8x16.narrow_i16x8_u(i16x8.narrow_i32x4_s(hi0, hi1), i16x8.narrow_i32x4_s(hi2, hi3));
      v128.store(dst + ((<usize>r * blocks + b) << 4), v128.or(lo, i8x16.shl(hi, 4)));
    }
  }
  return -1;
}

// ---- activation quantization (16-bit blocks) ----
//
// llama.cpp quantizes activations to q8_0 for its q8_0/q4_0 dot products. Here the dot product
// multiplies int16 lanes anyway (i32x4.dot_i16x8_s; the weights' int8 are sign-extended), so
// activations take the full int16 range at no cost in instructions or bandwidth: per 32-block
// d = amax/32767 (float32), q = roundf(x/d). That removes the activations' share of the error
// (on tiny-llava, q8_0 logits vs float32 3.3e-2 -> 2.3e-2, which is the weights' rounding alone).
// No int32 overflow in matmul.ts: a lane sums 8 products per block, |q_x| <= 32767, |q_w| <= 127.

/** x f32 [M][Kp] -> xq int16 [M][Kp], xs f32 [M][Kp/32]: d = amax/32767, q = roundf(x * (1/d)). */
export function quantizeRows16(x: usize, M: i32, Kp: i32, xq: usize, xs: usize): void {
  const blocks = Kp >> 5;
  for (let m = 0; m < M; m++) {
    for (let b = 0; b < blocks; b++) {
      const src = x + ((<usize>m * Kp + (b << 5)) << 2);
      const d: f32 = blockAmax(src) / 32767;
      const ids = f32x4.splat(d != 0 ? 1 / d : 0);
      store<f32>(xs + ((<usize>m * blocks + b) << 2), d);
      const dst = xq + ((<usize>m * Kp + (b << 5)) << 1);
      // x*(1/d) may round to 32767.5 at amax: narrow saturates it to 32767 (the TS reference clamps)
      for (let i = 0; i < 8; i += 2) {
        v128.store(dst + (i << 3), i16x8.narrow_i32x4_s(roundAway(f32x4.mul(v128.load(src + (i << 4)), ids)), roundAway(f32x4.mul(v128.load(src + ((i + 1) << 4)), ids))));
      }
    }
  }
}
