// CLIP self-attention (bidirectional, q/k/v/out with biases) on [N, C] tokens of one image.
import * as tf from '@tensorflow/tfjs-core';
import { attendHeads, type AttentionExtras } from './attention.js';
import { Linear, headBlocks } from './linear.js';
import { checkHeadBlocks } from './llama-attention.js';
import { attendPacked, packedAttentionFits } from './packed/attention-prefill.js';
import { PackedLinear } from './packed/packed-linear.js';

export interface ClipAttentionOutput {
  /** [N, C] after out_proj. */
  out: tf.Tensor2D;
  /** [H, N, N] softmax probabilities, when asked for. */
  probs?: tf.Tensor3D;
  /** [N, C] keys (heads side by side, before scaling), when asked for: ToMe's metric. */
  keys?: tf.Tensor2D;
}

export class ClipAttention {
  /** [C, 3C] in 3H column blocks of one head each: q heads (scaled by 1/sqrt(d)), k heads, v heads. */
  readonly qkv: Linear | PackedLinear;

  /**
   * @param qkv [C, 3C]: q, k, v projections side by side. Re-laid out here (once, at load) into
   *   one block per head, with the attention scale 1/sqrt(d) folded into the q columns, so each
   *   head's q_h, k_h, v_h [N, d] come straight out of a 2-D matmul: no split, no scaling op.
   * @param outProj [C, C]
   */
  constructor(
    qkv: Linear | PackedLinear,
    readonly outProj: Linear | PackedLinear,
    readonly numHeads: number,
  ) {
    const width = outProj.inFeatures;
    const headDim = width / numHeads;
    if (qkv.outFeatures !== 3 * width || !Number.isInteger(headDim)) {
      throw new Error(`ClipAttention: q/k/v projection has ${qkv.outFeatures} outputs, expected 3 x ${width} split into ${numHeads} heads`);
    }
    const layout = headBlocks(numHeads, 2 * numHeads, headDim);
    this.qkv = qkv instanceof PackedLinear ? checkHeadBlocks(qkv, layout.widths) : qkv.reblock(layout.widths, layout.columnScale);
  }

  apply(x: tf.Tensor2D, extras: Omit<AttentionExtras, 'mask' | 'returnRow'> & { returnKeys?: boolean } = {}): ClipAttentionOutput {
    const H = this.numHeads;
    if (!extras.keyBias && !extras.returnProbs && !extras.returnKeys) {
      const out = this.applyHost(x);
      if (out) return { out };
    }
    let probs: tf.Tensor3D | undefined;
    let keys: tf.Tensor2D | undefined;
    const out = tf.tidy(() => {
      const heads = this.qkv.applyBlocks(x); // 3H x [N, d]
      const k = heads.slice(H, 2 * H);
      const attention = attendHeads(heads.slice(0, H), k, heads.slice(2 * H), { keyBias: extras.keyBias, returnProbs: extras.returnProbs });
      if (attention.probs) probs = tf.keep(attention.probs);
      if (extras.returnKeys) keys = tf.keep(tf.concat(k, 1) as tf.Tensor2D);
      return this.outProj.apply(attention.out);
    });
    return { out, probs, keys };
  }

  /**
   * Packed projections and nothing extra asked for: q/k/v come back on the host and our
   * prefill-attention kernel runs every head on every kernel thread (tfjs would take one
   * transpose, two matmuls and a softmax per head on this thread). Null when it cannot.
   */
  private applyHost(x: tf.Tensor2D): tf.Tensor2D | null {
    const { qkv, outProj } = this;
    const N = x.shape[0];
    const d = outProj.inFeatures / this.numHeads;
    if (!(qkv instanceof PackedLinear) || !(outProj instanceof PackedLinear) || !packedAttentionFits(qkv.runtime, N, this.numHeads, d)) return null;
    const heads = qkv.computeFlat(x.dataSync() as Float32Array, N); // [N][3 H d]: q heads (scaled), k heads, v heads
    const attention = attendPacked(qkv.runtime, qkv.memory, heads, N, this.numHeads, d);
    return tf.tensor2d(outProj.computeFlat(attention, N), [N, outProj.outFeatures]);
  }

  /** Values of the weights this module holds (on the tensor heap or off it). */
  parameterCount(): number {
    return this.qkv.parameterCount() + this.outProj.parameterCount();
  }

  dispose(): void {
    this.qkv.dispose();
    this.outProj.dispose();
  }
}
