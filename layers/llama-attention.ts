// LLaMA self-attention: causal, rotary positions, grouped-query heads, with a KV cache.
import * as tf from '@tensorflow/tfjs-core';
import { multiHeadAttention, splitHeads } from './attention.js';
import type { LayerKVCache } from './kv-cache.js';
import { Linear } from './linear.js';
import { RotaryEmbedding } from './rope.js';

export interface LlamaAttentionInput {
  /** [T, D] normalised hidden states of the new tokens. */
  x: tf.Tensor2D;
  /** RoPE tables for the new tokens' position ids. */
  rope: { cos: tf.Tensor3D; sin: tf.Tensor3D };
  /** Keys/values of earlier tokens; the new ones are appended to it. */
  cache: LayerKVCache;
  /** [T, past + T] additive causal mask, or null when T = 1 (one query sees everything cached). */
  mask: tf.Tensor2D | null;
  /** Return this query's attention probabilities [H, past + T] (the language-stage merge score reads the last prompt token's). */
  returnRow?: number;
}

export class LlamaAttention {
  /**
   * @param qkv [D, (H + 2 Hkv) d]: q, k, v projections side by side
   * @param outProj [H d, D]
   */
  constructor(
    readonly qkv: Linear,
    readonly outProj: Linear,
    readonly numHeads: number,
    readonly numKvHeads: number,
    readonly rotary: RotaryEmbedding,
  ) {}

  apply(input: LlamaAttentionInput): { out: tf.Tensor2D; row?: tf.Tensor2D } {
    const d = this.rotary.headDim;
    const fresh = tf.tidy(() => {
      const [q, k, v] = tf.split(this.qkv.apply(input.x), [this.numHeads * d, this.numKvHeads * d, this.numKvHeads * d], 1) as tf.Tensor2D[];
      return {
        q: tf.mul(this.rotary.apply(q, input.rope), 1 / Math.sqrt(d)) as tf.Tensor2D,
        keys: splitHeads(this.rotary.apply(k, input.rope), this.numKvHeads),
        values: splitHeads(v, this.numKvHeads),
      };
    });
    // Outside any tidy: the cache owns what it concatenates.
    input.cache.append(fresh.keys, fresh.values);
    let row: tf.Tensor2D | undefined;
    const out = tf.tidy(() => {
      const attention = multiHeadAttention(fresh.q, input.cache.keys, input.cache.values, this.numHeads, {
        mask: input.mask,
        returnRow: input.returnRow,
      });
      if (attention.row) row = tf.keep(attention.row);
      return this.outProj.apply(attention.out);
    });
    fresh.q.dispose();
    return { out, row };
  }

  dispose(): void {
    this.qkv.dispose();
    this.outProj.dispose();
  }
}
