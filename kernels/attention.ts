// Decode attention on a KV cache in arena memory (layers/packed/kv-cache-arena.ts): one query
// token, every head, softmax(q k^T) v with float32 SIMD. Threads split the heads [h0, h1).
//
// Why a kernel: in tfjs, one token's attention is ~6 ops per head plus a cache concat per head
// (each op ~20-40 us of dispatch, each concat a copy of the whole cache): ~20 ms per LLaMA-7B
// layer at 612 cached tokens, more than its weights take. Here it is one call per layer that
// reads the cache once.
//
// Layouts: q f32 [H][d] (already scaled by 1/sqrt(d), rotated); keys and values f32
// [Hkv][cap][d] (rows 0..S-1 valid); query head h reads kv head floor(h / group); scores: f32 [S]
// scratch for this thread; out f32 [H][d]. d must be a multiple of 4.

@inline function hsum4(v: v128): f32 {
  return (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

export function attendDecode(q: usize, keys: usize, values: usize, S: i32, cap: i32, d: i32, group: i32, h0: i32, h1: i32, scores: usize, out: usize): void {
  const rowBytes = <usize>d << 2;
  for (let h = h0; h < h1; h++) {
    const kv = h / group;
    const qh = q + <usize>h * rowBytes;
    const kh = keys + <usize>kv * <usize>cap * rowBytes;
    const vh = values + <usize>kv * <usize>cap * rowBytes;
    let top: f32 = -Infinity;
    for (let j = 0; j < S; j++) {
      const kj = kh + <usize>j * rowBytes;
      let acc = f32x4.splat(0);
      for (let i = 0; i < d; i += 4) acc = f32x4.add(acc, f32x4.mul(v128.load(qh + (<usize>i << 2)), v128.load(kj + (<usize>i << 2))));
      const s = hsum4(acc);
      store<f32>(scores + (<usize>j << 2), s);
      top = max(top, s);
    }
    let sum: f32 = 0;
    for (let j = 0; j < S; j++) {
      const p = scores + (<usize>j << 2);
      const e = Mathf.exp(load<f32>(p) - top);
      store<f32>(p, e);
      sum += e;
    }
    const oh = out + <usize>h * rowBytes;
    for (let i = 0; i < d; i += 4) v128.store(oh + (<usize>i << 2), f32x4.splat(0));
    for (let j = 0; j < S; j++) {
      const pj = f32x4.splat(load<f32>(scores + (<usize>j << 2)) / sum);
      const vj = vh + <usize>j * rowBytes;
      for (let i = 0; i < d; i += 4) {
        const o = oh + (<usize>i << 2);
        v128.store(o, f32x4.add(v128.load(o), f32x4.mul(pj, v128.load(vj + (<usize>i << 2)))));
      }
    }
  }
}

// ---- prefill attention: T query rows against S keys (causal or not), heads split over threads ----
//
// Why a kernel: in tfjs each head is a transpose, two matmuls, a mask add and a softmax on one
// thread (~0.6 s per LLaMA-7B layer at 612 tokens, ~20 s of a 7B prefill); here every head reads
// its rows once, masked keys are skipped instead of added as -1e9, and the heads are split over
// every kernel thread.
//
// Layouts are strided so the projection's output can be read in place: query head h row i at
// q + i*qRow + h*d*4 (bytes), key/value head g row j at keys/values + g*kvHead + j*kvRow, output
// head h row i at out + i*outRow + h*d*4. q is already scaled by 1/sqrt(d) (and rotated).
// Causal: query i is sequence position S - T + i and sees keys 0..S-T+i. scratch: this thread's
// (see attendPrefill). d must be a multiple of 4 and at most 256.

/**
 * e^x for x <= 0 (scores minus their row maximum), 4 lanes: x = n ln2 + r with |r| <= ln2/2
 * (Cody-Waite split of ln2), e^r by its degree-6 Taylor polynomial (truncation < 1.3e-7
 * relative), 2^n put into the exponent bits. x < -87 (e^x < 2^-125) gives 0.
 */
@inline function expNonPositive(x: v128): v128 {
  const tiny = f32x4.lt(x, f32x4.splat(-87));
  const xc = f32x4.max(x, f32x4.splat(-87));
  const n = f32x4.nearest(f32x4.mul(xc, f32x4.splat(1.4426950408889634)));
  let r = f32x4.sub(xc, f32x4.mul(n, f32x4.splat(0.693145751953125)));
  r = f32x4.sub(r, f32x4.mul(n, f32x4.splat(1.4286067653302226e-6)));
  let p = f32x4.splat(1.0 / 720);
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.0 / 120));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.0 / 24));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.0 / 6));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(0.5));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1));
  const scale = i32x4.shl(i32x4.add(i32x4.trunc_sat_f32x4_s(n), i32x4.splat(127)), 23);
  return v128.andnot(f32x4.mul(p, scale), tiny);
}

/** Keys [0, S) of one head ([S] rows of d at `kvRow` bytes apart) transposed into kt [d][S8], zero-padded. */
@inline function transposeKeys(kh: usize, kvRow: usize, S: i32, S8: i32, d: i32, kt: usize): void {
  for (let c = 0; c < d; c++) {
    const row = kt + ((<usize>c * S8) << 2);
    for (let j = 0; j < S; j++) store<f32>(row + (<usize>j << 2), load<f32>(kh + <usize>j * kvRow + (<usize>c << 2)));
    for (let j = S; j < S8; j++) store<f32>(row + (<usize>j << 2), 0);
  }
}

/**
 * Scores of 4 query rows (q0..q3) against keys [0, n8) (n8 a multiple of 8) from kt [d][S8]: a
 * 4 x 8 register tile per step (each q value splat once, each kt vector used by 4 rows), the
 * microkernel of a GEMM. Writes sc[r][j] (rows S8 apart).
 */
@inline function scoreTile(q0: usize, q1: usize, q2: usize, q3: usize, kt: usize, S8: i32, n8: i32, d: i32, sc: usize): void {
  const rowBytes = <usize>S8 << 2;
  for (let j = 0; j < n8; j += 8) {
    let a0 = f32x4.splat(0), b0 = f32x4.splat(0), a1 = f32x4.splat(0), b1 = f32x4.splat(0);
    let a2 = f32x4.splat(0), b2 = f32x4.splat(0), a3 = f32x4.splat(0), b3 = f32x4.splat(0);
    let k = kt + (<usize>j << 2);
    for (let c = 0; c < d; c++) {
      const o = <usize>c << 2;
      const lo = v128.load(k), hi = v128.load(k, 16);
      let x = v128.load32_splat(q0 + o);
      a0 = f32x4.add(a0, f32x4.mul(x, lo)); b0 = f32x4.add(b0, f32x4.mul(x, hi));
      x = v128.load32_splat(q1 + o);
      a1 = f32x4.add(a1, f32x4.mul(x, lo)); b1 = f32x4.add(b1, f32x4.mul(x, hi));
      x = v128.load32_splat(q2 + o);
      a2 = f32x4.add(a2, f32x4.mul(x, lo)); b2 = f32x4.add(b2, f32x4.mul(x, hi));
      x = v128.load32_splat(q3 + o);
      a3 = f32x4.add(a3, f32x4.mul(x, lo)); b3 = f32x4.add(b3, f32x4.mul(x, hi));
      k += rowBytes;
    }
    const at = sc + (<usize>j << 2);
    v128.store(at, a0); v128.store(at, b0, 16);
    v128.store(at + rowBytes, a1); v128.store(at + rowBytes, b1, 16);
    v128.store(at + 2 * rowBytes, a2); v128.store(at + 2 * rowBytes, b2, 16);
    v128.store(at + 3 * rowBytes, a3); v128.store(at + 3 * rowBytes, b3, 16);
  }
}

/** One row of scores: keys >= seen set to 0 weight, the rest e^(s - max) over [0, n8); returns 1 / their sum. */
@inline function softmaxRow(sc: usize, seen: i32, n8: i32): f32 {
  for (let j = seen; j < n8; j++) store<f32>(sc + (<usize>j << 2), -Infinity);
  let top = f32x4.splat(-Infinity);
  for (let j = 0; j < n8; j += 4) top = f32x4.max(top, v128.load(sc + (<usize>j << 2)));
  const t = f32x4.splat(max(max(f32x4.extract_lane(top, 0), f32x4.extract_lane(top, 1)), max(f32x4.extract_lane(top, 2), f32x4.extract_lane(top, 3))));
  let sum = f32x4.splat(0);
  for (let j = 0; j < n8; j += 4) {
    const at = sc + (<usize>j << 2);
    const e = expNonPositive(f32x4.sub(v128.load(at), t));
    v128.store(at, e);
    sum = f32x4.add(sum, e);
  }
  return 1 / hsum4(sum);
}

/**
 * out[r] = inv[r] * sum_j p[r][j] v_j for 4 rows, 8 columns of the head at a time (4 x 8 register
 * tile: each v vector used by 4 rows, each p value splat once); d a multiple of 4 (a last chunk of 4).
 */
@inline function valueTile(sc: usize, S8: i32, n: i32, vh: usize, kvRow: usize, d: i32, o0: usize, o1: usize, o2: usize, o3: usize, i0: f32, i1: f32, i2: f32, i3: f32): void {
  const rowBytes = <usize>S8 << 2;
  for (let c = 0; c < d; c += 8) {
    const wide = c + 8 <= d;
    const co = <usize>c << 2;
    let a0 = f32x4.splat(0), b0 = f32x4.splat(0), a1 = f32x4.splat(0), b1 = f32x4.splat(0);
    let a2 = f32x4.splat(0), b2 = f32x4.splat(0), a3 = f32x4.splat(0), b3 = f32x4.splat(0);
    for (let j = 0; j < n; j++) {
      const v = vh + <usize>j * kvRow + co;
      const lo = v128.load(v);
      const hi = wide ? v128.load(v, 16) : f32x4.splat(0);
      const p = sc + (<usize>j << 2);
      let x = v128.load32_splat(p);
      a0 = f32x4.add(a0, f32x4.mul(x, lo)); b0 = f32x4.add(b0, f32x4.mul(x, hi));
      x = v128.load32_splat(p + rowBytes);
      a1 = f32x4.add(a1, f32x4.mul(x, lo)); b1 = f32x4.add(b1, f32x4.mul(x, hi));
      x = v128.load32_splat(p + 2 * rowBytes);
      a2 = f32x4.add(a2, f32x4.mul(x, lo)); b2 = f32x4.add(b2, f32x4.mul(x, hi));
      x = v128.load32_splat(p + 3 * rowBytes);
      a3 = f32x4.add(a3, f32x4.mul(x, lo)); b3 = f32x4.add(b3, f32x4.mul(x, hi));
    }
    storeRow(o0 + co, a0, b0, i0, wide);
    storeRow(o1 + co, a1, b1, i1, wide);
    storeRow(o2 + co, a2, b2, i2, wide);
    storeRow(o3 + co, a3, b3, i3, wide);
  }
}

@inline function storeRow(dst: usize, lo: v128, hi: v128, inv: f32, wide: bool): void {
  const s = f32x4.splat(inv);
  v128.store(dst, f32x4.mul(lo, s));
  if (wide) v128.store(dst, f32x4.mul(hi, s), 16);
}

/**
 * Query rows go 4 at a time (a block past the last row repeats the last row: computed, not
 * stored); scores of a block cover the keys its last row sees, earlier rows mask the rest.
 * scratch: this thread's f32 [d + 4][S8], S8 = S rounded up to 8 (transposed keys, 4 score rows).
 */
export function attendPrefill(
  q: usize, qRow: i32, keys: usize, values: usize, kvRow: i32, kvHead: i32,
  T: i32, S: i32, d: i32, group: i32, causal: i32, h0: i32, h1: i32, scratch: usize, out: usize, outRow: i32,
): void {
  const past = S - T;
  const S8 = (S + 7) & ~7;
  const kt = scratch;
  const sc = scratch + ((<usize>d * S8) << 2);
  const scRow = <usize>S8 << 2;
  let transposed = -1; // the kv head whose keys kt holds: a thread's heads are consecutive, so a group transposes once
  for (let h = h0; h < h1; h++) {
    const g = h / group;
    const vh = values + <usize>g * <usize>kvHead;
    if (g != transposed) {
      transposeKeys(keys + <usize>g * <usize>kvHead, <usize>kvRow, S, S8, d, kt);
      transposed = g;
    }
    const head = (<usize>h * d) << 2;
    for (let i = 0; i < T; i += 4) {
      const r1 = min(i + 1, T - 1), r2 = min(i + 2, T - 1), r3 = min(i + 3, T - 1);
      const n = causal != 0 ? past + r3 + 1 : S; // keys the block's last row sees
      const n8 = (n + 7) & ~7;
      scoreTile(q + <usize>i * qRow + head, q + <usize>r1 * qRow + head, q + <usize>r2 * qRow + head, q + <usize>r3 * qRow + head, kt, S8, n8, d, sc);
      const s0 = causal != 0 ? past + i + 1 : S;
      const s1 = causal != 0 ? past + r1 + 1 : S;
      const s2 = causal != 0 ? past + r2 + 1 : S;
      const i0 = softmaxRow(sc, s0, n8), i1 = softmaxRow(sc + scRow, s1, n8), i2 = softmaxRow(sc + 2 * scRow, s2, n8), i3 = softmaxRow(sc + 3 * scRow, n, n8);
      const o = out + head;
      // rows past T write into row T - 1's place first and are overwritten by it last (r3 >= r2 >= r1)
      valueTile(sc, S8, n, vh, <usize>kvRow, d, o + <usize>i * outRow, o + <usize>r1 * outRow, o + <usize>r2 * outRow, o + <usize>r3 * outRow, i0, i1, i2, i3);
    }
  }
}
