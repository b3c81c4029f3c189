// Multi-head attention on 2-D activations, formulated for tfjs-backend-wasm's fast path.
//
// Measured on this machine (see bench/README.md): wasm runs XNNPACK only for 2-D matmuls with no
// transpose flag; a batched [H, T, d] matMul or any transposeB takes a scalar loop (~2 GFLOP/s,
// 5-10x slower). So each head is a pair of 2-D matmuls: scores = q_h @ k_h^T, where k_h^T is
// materialised once per key head by a transpose op (a copy, far cheaper than the slow matmul),
// and out_h = softmax(scores) @ v_h. In decode (one query) the score is computed as
// k_h @ q_h^T ([S,d] @ [d,1]) so no transpose is needed at all.
//
// Heads come in as separate [T, d] tensors (attendHeads): the projections produce them directly
// from per-head weight blocks (Linear.applyBlocks). Splitting a [T, H*d] tensor instead costs
// far more than it should on wasm, whose slice kernel copies the whole input once per piece
// (tf.split of a [577, 1024] tensor into 16 heads: ~20 ms, three of them per CLIP layer).
import * as tf from '@tensorflow/tfjs-core';

export interface AttentionExtras {
  /** Additive mask [T, S] (0 or MASKED), or null for none. */
  mask?: tf.Tensor2D | null;
  /** Added to every query's logits, [S]: ToMe's proportional attention passes log(size). */
  keyBias?: tf.Tensor1D | null;
  /** Also return the softmax probabilities [H, T, S] (merge rules score tokens with them). */
  returnProbs?: boolean;
  /**
   * Also return the probabilities of one query row (index into the T queries), [H, S]: the
   * language-stage merge score uses the last prompt token's row. The row is sliced from the
   * per-head probabilities the normal path computes anyway: no second T x T pass, no [H,T,S] stack.
   */
  returnRow?: number;
}

export interface AttentionOutput {
  /** [T, H*d], heads concatenated (before the output projection). */
  out: tf.Tensor2D;
  probs?: tf.Tensor3D;
  /** [H, S], when returnRow was given. */
  row?: tf.Tensor2D;
}

/**
 * softmax(q k^T + mask + keyBias) v over heads.
 * @param q [T, H*d], already multiplied by 1/sqrt(d)
 * @param keys per key/value head, [S, d] each (Hkv heads; query head h reads head floor(h / (H/Hkv)))
 * @param values per key/value head, [S, d] each
 */
export function multiHeadAttention(
  q: tf.Tensor2D,
  keys: readonly tf.Tensor2D[],
  values: readonly tf.Tensor2D[],
  numHeads: number,
  extras: AttentionExtras = {},
): AttentionOutput {
  const qHeads = numHeads === 1 ? [q] : (tf.split(q, numHeads, 1) as tf.Tensor2D[]);
  try {
    return attendHeads(qHeads, keys, values, extras);
  } finally {
    if (numHeads > 1) qHeads.forEach((t) => t.dispose());
  }
}

/**
 * The same over heads given one by one.
 * @param qHeads H tensors [T, d], already multiplied by 1/sqrt(d)
 * @param keys Hkv tensors [S, d]; query head h reads key/value head floor(h / (H / Hkv))
 * @param values Hkv tensors [S, d]
 */
export function attendHeads(
  qHeads: readonly tf.Tensor2D[],
  keys: readonly tf.Tensor2D[],
  values: readonly tf.Tensor2D[],
  extras: AttentionExtras = {},
): AttentionOutput {
  const numHeads = qHeads.length;
  const kvHeads = keys.length;
  if (numHeads % kvHeads !== 0) throw new Error(`${numHeads} query heads cannot share ${kvHeads} key/value heads`);
  const group = numHeads / kvHeads;
  const [T, headDim] = qHeads[0].shape;
  const row = extras.returnRow;
  if (row !== undefined && (!Number.isInteger(row) || row < 0 || row >= T)) throw new Error(`attention row ${row} is outside the ${T} queries`);
  const keep = extras.returnProbs || row !== undefined;
  const probsPerHead: tf.Tensor2D[] = [];
  const result = tf.tidy(() => {
    // k_h^T [d, S], made once per key head and shared by its query group (prefill only).
    const keysT = T > 1 ? keys.map((k) => tf.transpose(k)) : [];
    const outs: tf.Tensor2D[] = [];
    for (let h = 0; h < numHeads; h++) {
      const kv = Math.floor(h / group);
      let scores: tf.Tensor2D =
        T > 1 ? tf.matMul(qHeads[h], keysT[kv]) : tf.reshape(tf.matMul(keys[kv], tf.reshape(qHeads[h], [headDim, 1])), [1, -1]);
      if (extras.mask) scores = tf.add(scores, extras.mask);
      if (extras.keyBias) scores = tf.add(scores, extras.keyBias);
      const probs = tf.softmax(scores);
      if (keep) probsPerHead.push(tf.keep(probs));
      outs.push(tf.matMul(probs, values[kv]));
    }
    return outs.length === 1 ? outs[0] : (tf.concat(outs, 1) as tf.Tensor2D);
  });
  const output: AttentionOutput = { out: result };
  if (probsPerHead.length > 0) {
    if (extras.returnProbs) output.probs = tf.stack(probsPerHead) as tf.Tensor3D;
    if (row !== undefined) output.row = tf.tidy(() => tf.concat(probsPerHead.map((p) => tf.slice(p, [row, 0], [1, -1])), 0) as tf.Tensor2D);
    probsPerHead.forEach((p) => p.dispose());
  }
  return output;
}
