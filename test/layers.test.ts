// layers/ building blocks against plain-array references written here (float64 loops).
import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import { causalMask, multiHeadAttention, RotaryEmbedding, transposeToInOut, LayerNorm, RMSNorm, gelu, quickGelu, silu, KVCache, LlamaAttention, Linear } from '../layers/index.js';
import { selectBackend } from '../src/backend.js';
import { maxAbsDiff } from './helpers/fixture.js';

/** Deterministic pseudo-random values in [-1, 1). */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    out[i] = s / 1073741824 - 1;
  }
  return out;
}

/** Plain attention for one query head: softmax(q k^T / sqrt d + mask) v, causal over `past + T`. */
function referenceAttention(q: Float32Array, k: Float32Array, v: Float32Array, T: number, S: number, H: number, Hkv: number, d: number, causal: boolean) {
  const out = new Float64Array(T * H * d);
  const probs: number[][][] = [];
  for (let h = 0; h < H; h++) {
    const kv = Math.floor(h / (H / Hkv));
    probs.push([]);
    for (let t = 0; t < T; t++) {
      const scores: number[] = [];
      for (let s = 0; s < S; s++) {
        let dot = 0;
        for (let i = 0; i < d; i++) dot += q[t * H * d + h * d + i] * k[s * Hkv * d + kv * d + i];
        scores.push(causal && s > S - T + t ? -Infinity : dot / Math.sqrt(d));
      }
      const max = Math.max(...scores);
      const e = scores.map((x) => Math.exp(x - max));
      const sum = e.reduce((a, b) => a + b, 0);
      const p = e.map((x) => x / sum);
      probs[h].push(p);
      for (let i = 0; i < d; i++) {
        let acc = 0;
        for (let s = 0; s < S; s++) acc += p[s] * v[s * Hkv * d + kv * d + i];
        out[t * H * d + h * d + i] = acc;
      }
    }
  }
  return { out, probs };
}

describe('layers', function () {
  before(() => selectBackend('wasm'));

  it('grouped-query attention with a causal mask matches the plain reference, with probabilities and one row', () => {
    const [T, H, Hkv, d] = [5, 4, 2, 8];
    const q = values(T * H * d, 1);
    const k = values(T * Hkv * d, 2);
    const v = values(T * Hkv * d, 3);
    const ref = referenceAttention(q, k, v, T, T, H, Hkv, d, true);
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      const qt = tf.mul(tf.tensor2d(q, [T, H * d]), 1 / Math.sqrt(d)) as tf.Tensor2D;
      const keys = tf.split(tf.tensor2d(k, [T, Hkv * d]), Hkv, 1) as tf.Tensor2D[];
      const vals = tf.split(tf.tensor2d(v, [T, Hkv * d]), Hkv, 1) as tf.Tensor2D[];
      const mask = causalMask(T);
      const res = multiHeadAttention(qt, keys, vals, H, { mask, returnProbs: true, returnRow: T - 1 });
      expect(maxAbsDiff(res.out.dataSync(), ref.out)).to.be.below(1e-5);
      expect(res.probs?.shape).to.deep.equal([H, T, T]);
      expect(maxAbsDiff(res.probs!.dataSync(), ref.probs.flat(2))).to.be.below(1e-6);
      expect(maxAbsDiff(res.row!.dataSync(), ref.probs.map((p) => p[T - 1]).flat())).to.be.below(1e-6);
    });
    expect(tf.memory().numTensors).to.equal(before);
  });

  it('one-query decode attention (no transpose path) equals the last row of the prefill', () => {
    const [T, H, Hkv, d] = [6, 4, 1, 8];
    const q = values(T * H * d, 4);
    const k = values(T * Hkv * d, 5);
    const v = values(T * Hkv * d, 6);
    const ref = referenceAttention(q, k, v, T, T, H, Hkv, d, true);
    tf.tidy(() => {
      const lastQ = tf.mul(tf.tensor2d(q.subarray((T - 1) * H * d), [1, H * d]), 1 / Math.sqrt(d)) as tf.Tensor2D;
      const res = multiHeadAttention(lastQ, [tf.tensor2d(k, [T, d])], [tf.tensor2d(v, [T, d])], H);
      expect(maxAbsDiff(res.out.dataSync(), ref.out.subarray((T - 1) * H * d))).to.be.below(1e-5);
    });
  });

  it('rotary embedding uses the given (gapped) position ids, rotate-half layout', () => {
    const d = 8;
    const positions = [0, 3, 4, 10];
    const x = values(positions.length * 2 * d, 7);
    const rope = new RotaryEmbedding(d, 10000);
    const expected = new Float64Array(x.length);
    positions.forEach((p, t) => {
      for (let h = 0; h < 2; h++) {
        for (let i = 0; i < d; i++) {
          const j = i % (d / 2);
          const angle = p / Math.pow(10000, (2 * j) / d);
          const base = t * 2 * d + h * d;
          const rotated = i < d / 2 ? -x[base + i + d / 2] : x[base + i - d / 2];
          expected[base + i] = x[base + i] * Math.cos(angle) + rotated * Math.sin(angle);
        }
      }
    });
    tf.tidy(() => {
      const tables = rope.tables(positions);
      const out = rope.apply(tf.tensor2d(x, [positions.length, 2 * d]), tables);
      expect(maxAbsDiff(out.dataSync(), expected)).to.be.below(1e-6);
    });
  });

  it('LlamaAttention: prefill then cached decode equals one prefill over the whole sequence', () => {
    const [D, H, Hkv, d, T] = [16, 4, 2, 4, 5];
    const rope = new RotaryEmbedding(d, 10000);
    const qkv = new Linear(tf.tensor2d(values(D * (H + 2 * Hkv) * d, 8), [D, (H + 2 * Hkv) * d]), null);
    const o = new Linear(tf.tensor2d(values(H * d * D, 9), [H * d, D]), null);
    const attn = new LlamaAttention(qkv, o, H, Hkv, rope);
    const x = tf.tensor2d(values(T * D, 10), [T, D]);
    const full = new KVCache(1);
    const stepwise = new KVCache(1);
    const run = (cache: KVCache, from: number, to: number) =>
      tf.tidy(() => {
        const pos = Array.from({ length: to - from }, (_, i) => from + i);
        const tables = rope.tables(pos);
        const mask = to - from > 1 ? causalMask(to - from, from) : null;
        return attn.apply({ x: tf.slice(x, [from, 0], [to - from, -1]) as tf.Tensor2D, rope: tables, cache: cache.layers[0], mask }).out;
      });
    const a = run(full, 0, T);
    const p = run(stepwise, 0, T - 1);
    const b = run(stepwise, T - 1, T);
    expect(maxAbsDiff(b.dataSync(), a.dataSync().subarray((T - 1) * D))).to.be.below(1e-5);
    expect(stepwise.layers[0].length).to.equal(T);
    [a, p, b, x].forEach((t) => t.dispose());
    full.dispose();
    stepwise.dispose();
    attn.dispose();
  });

  it('norms and activations match their formulas', () => {
    const x = values(12, 11);
    const ln = new LayerNorm(tf.tensor1d([1, 2, 0.5, -1]), tf.tensor1d([0, 0.1, 0.2, 0.3]), 1e-5);
    const rms = new RMSNorm(tf.tensor1d([1, 2, 0.5, -1]), 1e-6);
    const lnRef: number[] = [];
    const rmsRef: number[] = [];
    for (let r = 0; r < 3; r++) {
      const row = Array.from(x.subarray(r * 4, r * 4 + 4));
      const mean = row.reduce((a, b) => a + b, 0) / 4;
      const variance = row.reduce((a, b) => a + (b - mean) ** 2, 0) / 4;
      const ms = row.reduce((a, b) => a + b * b, 0) / 4;
      row.forEach((v, i) => {
        lnRef.push(((v - mean) / Math.sqrt(variance + 1e-5)) * [1, 2, 0.5, -1][i] + [0, 0.1, 0.2, 0.3][i]);
        rmsRef.push((v / Math.sqrt(ms + 1e-6)) * [1, 2, 0.5, -1][i]);
      });
    }
    tf.tidy(() => {
      const t = tf.tensor2d(x, [3, 4]);
      expect(maxAbsDiff(ln.apply(t).dataSync(), lnRef)).to.be.below(1e-5);
      expect(maxAbsDiff(rms.apply(t).dataSync(), rmsRef)).to.be.below(1e-5);
      // erf reference: Abramowitz-Stegun 7.1.26 is too coarse, so compare with known GELU values.
      expect(maxAbsDiff(gelu(tf.tensor1d([-1, 0, 1, 2])).dataSync(), [-0.15865525, 0, 0.84134475, 1.95449974])).to.be.below(1e-6);
      expect(maxAbsDiff(quickGelu(tf.tensor1d([1])).dataSync(), [1 / (1 + Math.exp(-1.702))])).to.be.below(1e-6);
      expect(maxAbsDiff(silu(tf.tensor1d([2])).dataSync(), [2 / (1 + Math.exp(-2))])).to.be.below(1e-6);
    });
    ln.dispose();
    rms.dispose();
  });

  it('transposes PyTorch [out, in] weights to [in, out]', () => {
    const w = Float32Array.from({ length: 6 }, (_, i) => i); // [[0,1,2],[3,4,5]]: out 2, in 3
    expect(Array.from(transposeToInOut(w, 2, 3))).to.deep.equal([0, 3, 1, 4, 2, 5]);
    expect(() => transposeToInOut(w, 4, 3)).to.throw(/cannot be \[4, 3\]/);
  });
});
