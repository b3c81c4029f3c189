// CLIP self-attention (bidirectional, q/k/v/out with biases) on [N, C] tokens of one image.
import * as tf from '@tensorflow/tfjs-core';
import { multiHeadAttention, splitHeads, type AttentionExtras } from './attention.js';
import { Linear } from './linear.js';

export interface ClipAttentionOutput {
  /** [N, C] after out_proj. */
  out: tf.Tensor2D;
  /** [H, N, N] softmax probabilities, when asked for. */
  probs?: tf.Tensor3D;
  /** [N, C] keys (heads side by side, before scaling), when asked for: ToMe's metric. */
  keys?: tf.Tensor2D;
}

export class ClipAttention {
  /**
   * @param qkv [C, 3C]: q, k, v projections side by side (one matmul instead of three)
   * @param outProj [C, C]
   */
  constructor(
    readonly qkv: Linear,
    readonly outProj: Linear,
    readonly numHeads: number,
  ) {}

  apply(x: tf.Tensor2D, extras: Omit<AttentionExtras, 'mask' | 'returnRow'> & { returnKeys?: boolean } = {}): ClipAttentionOutput {
    const width = this.outProj.inFeatures;
    const headDim = width / this.numHeads;
    let probs: tf.Tensor3D | undefined;
    let keys: tf.Tensor2D | undefined;
    const out = tf.tidy(() => {
      const [q, k, v] = tf.split(this.qkv.apply(x), 3, 1) as tf.Tensor2D[];
      const attention = multiHeadAttention(
        tf.mul(q, 1 / Math.sqrt(headDim)),
        splitHeads(k, this.numHeads),
        splitHeads(v, this.numHeads),
        this.numHeads,
        { keyBias: extras.keyBias, returnProbs: extras.returnProbs },
      );
      if (attention.probs) probs = tf.keep(attention.probs);
      if (extras.returnKeys) keys = tf.keep(k);
      return this.outProj.apply(attention.out);
    });
    return { out, probs, keys };
  }

  dispose(): void {
    this.qkv.dispose();
    this.outProj.dispose();
  }
}
