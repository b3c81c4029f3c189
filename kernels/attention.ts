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
