// Rotary position embedding driven by explicit position ids, Hugging Face "rotate-half" layout:
// out = x * cos + rotate_half(x) * sin, rotate_half([x1, x2]) = [-x2, x1] over each head's halves.
//
// Positions are explicit because merged sequences keep their original ids (gaps stay): the
// survivors of a language-stage merge are rotated as where they were, not where they end up.
import * as tf from '@tensorflow/tfjs-core';

export class RotaryEmbedding {
  /** inv_freq[i] = theta^(-2i/d), i < d/2, in float64. */
  private readonly invFreq: Float64Array;

  constructor(readonly headDim: number, readonly theta: number) {
    if (headDim % 2 !== 0) throw new Error(`rotary embedding needs an even head dim, got ${headDim}`);
    this.invFreq = new Float64Array(headDim / 2);
    for (let i = 0; i < headDim / 2; i++) this.invFreq[i] = 1 / Math.pow(theta, (2 * i) / headDim);
  }

  /**
   * cos and sin tables [T, 1, d] for the given positions, computed in float64 on the host and
   * rounded once (the reference computes them in float64 too).
   */
  tables(positions: readonly number[]): { cos: tf.Tensor3D; sin: tf.Tensor3D } {
    const d = this.headDim;
    const half = d / 2;
    const cos = new Float32Array(positions.length * d);
    const sin = new Float32Array(positions.length * d);
    positions.forEach((p, t) => {
      for (let i = 0; i < half; i++) {
        const angle = p * this.invFreq[i];
        const c = Math.cos(angle);
        const s = Math.sin(angle);
        cos[t * d + i] = c;
        cos[t * d + half + i] = c;
        sin[t * d + i] = s;
        sin[t * d + half + i] = s;
      }
    });
    return { cos: tf.tensor3d(cos, [positions.length, 1, d]), sin: tf.tensor3d(sin, [positions.length, 1, d]) };
  }

  /**
   * Rotates heads given one by one, each [T, d] (as Linear.applyBlocks makes them):
   * rotate_half(x) = x @ R with R the signed permutation [[0, I], [-I, 0]] (d x d), one small
   * XNNPACK matmul per head (R is packed once per call and shared by all heads). Measured against
   * tfjs-wasm's reverse kernel on [T, 2, d/2] (3.6 ms per 620 x 128 head) and split/concat (whose
   * wasm slice copies the whole input per piece). Returns new tensors.
   */
  applyHeads(heads: readonly tf.Tensor2D[], tables: { cos: tf.Tensor3D; sin: tf.Tensor3D }): tf.Tensor2D[] {
    if (heads.length === 0) return [];
    return tf.tidy(() => {
      const T = heads[0].shape[0];
      const d = this.headDim;
      const half = d / 2;
      const cos = tf.reshape(tables.cos, [T, d]);
      const sin = tf.reshape(tables.sin, [T, d]);
      // (x R)[:, i] = -x[:, i + d/2] for i < d/2, x[:, i - d/2] otherwise.
      const r = new Float32Array(d * d);
      for (let i = 0; i < half; i++) {
        r[(i + half) * d + i] = -1;
        r[i * d + i + half] = 1;
      }
      const rotate = tf.tensor2d(r, [d, d]);
      const rope = (x: tf.Tensor2D) => tf.add(tf.mul(x, cos), tf.mul(tf.matMul(x, rotate), sin)) as tf.Tensor2D;
      if (T > 1 || heads.length === 1) return heads.map(rope);
      // One token (decode): the heads stacked as rows [H, d] take 6 kernel calls instead of 4 per
      // head (what costs at decode is dispatch, ~30 us a call); [H, d] is tiny, so split is cheap.
      return tf.split(rope(tf.concat(heads as tf.Tensor2D[], 0) as tf.Tensor2D), heads.length, 0) as tf.Tensor2D[];
    });
  }

  /** x [T, H*d] -> rotated [T, H*d], with tables from `tables()` for the same T positions. */
  apply(x: tf.Tensor2D, tables: { cos: tf.Tensor3D; sin: tf.Tensor3D }): tf.Tensor2D {
    return tf.tidy(() => {
      const [T, width] = x.shape;
      const d = this.headDim;
      const heads = width / d;
      const x3 = tf.reshape(x, [T, heads, d]);
      const [x1, x2] = tf.split(x3, 2, 2);
      const rotated = tf.concat([tf.neg(x2), x1], 2);
      const out = tf.add(tf.mul(x3, tables.cos), tf.mul(rotated, tables.sin));
      return tf.reshape(out, [T, width]);
    });
  }
}
