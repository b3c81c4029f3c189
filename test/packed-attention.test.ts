// The prefill-attention kernel (kernels/attention.ts attendPrefill) against a plain float64
// TypeScript softmax(q k^T) v: causal rows after a cached past, grouped key/value heads, row
// counts and key counts that are not multiples of 4, head dims below, at and above the kernel's
// 32-wide value chunk (16, 36, 128), one and two threads; and the vision tower's bidirectional
// form reading q/k/v side by side in one row (attendPacked).
import { expect } from 'chai';
import { ArenaKV, PackedRuntime } from '../layers/packed/index.js';
import { attendPacked, attendRows, packedAttentionFits } from '../layers/packed/attention-prefill.js';
import { randomUniform } from '../scripts/random-model.js';

/** softmax over keys 0..limit(i) of q_i . k_j, times v; q [T][qStride] at column qOffset + h d; k, v [S][Hkv d]. */
function reference(q: Float32Array, qStride: number, qOffset: number, k: Float32Array, v: Float32Array, kvStride: number, T: number, S: number, H: number, Hkv: number, d: number, causal: boolean): Float64Array {
  const out = new Float64Array(T * H * d);
  const group = H / Hkv;
  for (let h = 0; h < H; h++) {
    const g = Math.floor(h / group);
    for (let i = 0; i < T; i++) {
      const seen = causal ? S - T + i + 1 : S;
      const s = new Float64Array(seen);
      for (let j = 0; j < seen; j++) {
        let dot = 0;
        for (let c = 0; c < d; c++) dot += q[i * qStride + qOffset + h * d + c] * k[j * kvStride + g * d + c];
        s[j] = dot;
      }
      const top = Math.max(...s);
      let sum = 0;
      for (let j = 0; j < seen; j++) sum += (s[j] = Math.exp(s[j] - top));
      for (let c = 0; c < d; c++) {
        let acc = 0;
        for (let j = 0; j < seen; j++) acc += s[j] * v[j * kvStride + g * d + c];
        out[(i * H + h) * d + c] = acc / sum;
      }
    }
  }
  return out;
}

// Outputs are of magnitude ~1; float32 scores of up to 128 products (|q k| up to ~2) and float32
// sums over up to 17 keys leave a few 1e-6 (measured: at most 2.3e-6); the exp polynomial adds < 1.3e-7 relative.
const TOLERANCE = 1e-5;

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('packed prefill attention: our kernel against a float64 reference', function () {
  this.timeout(60000);
  const runtimes: PackedRuntime[] = [];
  const runtime = (threads: number, ioBytes = 1 << 20) => {
    const r = new PackedRuntime(threads, ioBytes);
    runtimes.push(r);
    return r;
  };
  after(async () => {
    await Promise.all(runtimes.map((r) => r.dispose()));
  });

  for (const threads of [1, 2]) {
    for (const [T, past, H, Hkv, d] of [[5, 0, 4, 4, 16], [7, 6, 4, 2, 36], [9, 3, 2, 1, 128], [1, 10, 4, 2, 32]]) {
      it(`causal, ${threads} thread(s): ${T} rows after ${past} cached, ${H} heads on ${Hkv} kv heads, d ${d}`, () => {
        const S = past + T;
        const kvWidth = Hkv * d;
        const k = randomUniform(S * kvWidth, 1, 3 + T);
        const v = randomUniform(S * kvWidth, 1, 5 + T);
        const qStride = H * d + 8; // a projection row with more columns than the queries
        const q = randomUniform(T * qStride, 1.5, 7 + d);
        const rt = runtime(threads);
        const kv = new ArenaKV(rt, Hkv, d, 4); // grows while appending
        kv.append(k, v, past);
        kv.append(k.subarray(past * kvWidth), v.subarray(past * kvWidth), T);
        const got = attendRows(rt, kv.rows, q, qStride, 8, T, H, d, true);
        const want = reference(q, qStride, 8, k, v, kvWidth, T, S, H, Hkv, d, true);
        expect(maxAbsDiff(got, want)).to.be.below(TOLERANCE);
        kv.dispose();
      });
    }
    it(`bidirectional from one q/k/v row, ${threads} thread(s): 17 tokens, 4 heads, d 16`, () => {
      const [N, H, d] = [17, 4, 16];
      const W = H * d;
      const qkv = randomUniform(N * 3 * W, 1.5, 21);
      const rt = runtime(threads);
      expect(packedAttentionFits(rt, N, H, d)).to.equal(true);
      const got = attendPacked(rt, rt.arena.allocate(64).memory, qkv, N, H, d);
      // k and v as their own [N][W] arrays for the reference
      const k = new Float32Array(N * W);
      const v = new Float32Array(N * W);
      for (let t = 0; t < N; t++) {
        k.set(qkv.subarray(t * 3 * W + W, t * 3 * W + 2 * W), t * W);
        v.set(qkv.subarray(t * 3 * W + 2 * W, t * 3 * W + 3 * W), t * W);
      }
      expect(maxAbsDiff(got, reference(qkv, 3 * W, 0, k, v, W, N, N, H, H, d, false))).to.be.below(TOLERANCE);
    });
  }

  it('splits the query rows into chunks when they do not fit the io region at once, with the same result', () => {
    const [T, H, d] = [40, 2, 32];
    const W = H * d;
    const k = randomUniform(T * W, 1, 31);
    const v = randomUniform(T * W, 1, 32);
    const q = randomUniform(T * W, 1, 33);
    const small = runtime(2, 64 << 10); // 64 KiB: chunks of 30 rows
    const kv = new ArenaKV(small, H, d, T);
    kv.append(k, v, T);
    const got = attendRows(small, kv.rows, q, W, 0, T, H, d, true);
    expect(maxAbsDiff(got, reference(q, W, 0, k, v, W, T, T, H, H, d, true))).to.be.below(TOLERANCE);
    kv.dispose();
  });

  it('refuses a head dim it cannot run and a bidirectional block that does not fit', () => {
    const rt = runtime(1, 64 << 10);
    const kv = new ArenaKV(rt, 1, 20, 4);
    kv.append(new Float32Array(20), new Float32Array(20), 1);
    expect(() => attendRows(rt, { ...kv.rows, heads: 3 }, new Float32Array(40), 40, 0, 1, 2, 20, true)).to.throw(/2 query heads cannot share 3/);
    expect(packedAttentionFits(rt, 1000, 4, 16)).to.equal(false);
    expect(() => attendPacked(rt, 0, new Float32Array(1000 * 192), 1000, 4, 16)).to.throw(/do not fit the arena's io region/);
    kv.dispose();
  });
});
