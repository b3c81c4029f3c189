// fp16 -> float32 in SIMD (shared by matmul.ts and panel.ts; not exported from the module).
// (h & 0x7fff) << 13 is the float32 with the right mantissa and the exponent off by 112, fixed by
// one multiply by 2^112 (exact, subnormals included); the sign is or-ed back.

/** Four fp16 values at p as float32. */
@inline export function halves(p: usize): v128 {
  const h = v128.load64_zero(p);
  const w = i32x4.extend_low_i16x8_u(h);
  const mag = f32x4.mul(i32x4.shl(v128.and(w, i32x4.splat(0x7fff)), 13), f32x4.splat(5.192296858534828e33));
  return v128.or(mag, i32x4.shl(v128.and(w, i32x4.splat(0x8000)), 16));
}

