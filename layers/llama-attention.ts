// LLaMA self-attention: causal, rotary positions, grouped-query heads, with a KV cache.
import * as tf from '@tensorflow/tfjs-core';
import { attendHeads } from './attention.js';
import type { LayerKVCache } from './kv-cache.js';
import { Linear, headBlocks } from './linear.js';
import { attendRows } from './packed/attention-prefill.js';
import { PackedLinear } from './packed/packed-linear.js';
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
  /** [D, (H + 2 Hkv) d] in one column block per head: q heads (scaled by 1/sqrt(d)), k heads, v heads. */
  readonly qkv: Linear | PackedLinear;

  /**
   * @param qkv [D, (H + 2 Hkv) d]: q, k, v projections side by side. Re-laid out here (once, at
   *   load) into one block per head with 1/sqrt(d) folded into the q columns (RoPE is linear, so
   *   scaling before it is the same): every head comes out of its own 2-D matmul, nothing is split.
   *   A PackedLinear must already have that layout (built with headBlocks()).
   * @param outProj [H d, D]
   */
  constructor(
    qkv: Linear | PackedLinear,
    readonly outProj: Linear | PackedLinear,
    readonly numHeads: number,
    readonly numKvHeads: number,
    readonly rotary: RotaryEmbedding,
  ) {
    const d = rotary.headDim;
    if (qkv.outFeatures !== (numHeads + 2 * numKvHeads) * d) {
      throw new Error(`LlamaAttention: q/k/v projection has ${qkv.outFeatures} outputs, expected (${numHeads} + 2 x ${numKvHeads}) x ${d}`);
    }
    const layout = headBlocks(numHeads, 2 * numKvHeads, d);
    // A packed projection is laid out by its builder (PackedLinear.fromTorch with this layout).
    this.qkv = qkv instanceof PackedLinear ? checkHeadBlocks(qkv, layout.widths) : qkv.reblock(layout.widths, layout.columnScale);
  }

  apply(input: LlamaAttentionInput): { out: tf.Tensor2D; row?: tf.Tensor2D } {
    const T = input.x.shape[0];
    if (input.returnRow === undefined && this.hostDecodes) {
      const x = input.x.dataSync() as Float32Array;
      const out = T === 1 ? this.decodeHost(x, input.rope, input.cache) : this.prefillHost(x, T, input.rope, input.cache, input.mask);
      return { out: tf.tensor2d(out, [T, out.length / T]) };
    }
    const H = this.numHeads;
    const Hkv = this.numKvHeads;
    const fresh = tf.tidy(() => {
      const heads = this.qkv.applyBlocks(input.x); // (H + 2 Hkv) x [T, d]
      return {
        q: this.rotary.applyHeads(heads.slice(0, H), input.rope),
        keys: this.rotary.applyHeads(heads.slice(H, H + Hkv), input.rope),
        values: heads.slice(H + Hkv),
      };
    });
    // Outside any tidy: the cache owns what it concatenates.
    input.cache.append(fresh.keys, fresh.values);
    let row: tf.Tensor2D | undefined;
    const out = tf.tidy(() => {
      const attention = attendHeads(fresh.q, input.cache.keys, input.cache.values, { mask: input.mask, returnRow: input.returnRow });
      if (attention.row) row = tf.keep(attention.row);
      return this.outProj.apply(attention.out);
    });
    fresh.q.forEach((t) => t.dispose());
    // Packed layers keep their cache in arena memory (decode reads it there): moved right after
    // the prefill's attention, so the tensor heap holds one layer's keys and values, not all.
    if (this.hostDecodes) input.cache.toArena((this.qkv as PackedLinear).runtime, this.numKvHeads, this.rotary.headDim);
    return { out, row };
  }

  /**
   * One token with packed projections, off the tensor path: the q/k/v row comes back on the host,
   * RoPE is applied there (rotateRows), k and v join the cache in arena memory, and our
   * decode-attention kernel reads the whole cache once over all heads on every kernel thread.
   * The tfjs path costs ~6 ops per head plus a cache concat per head per token (bench/README.md).
   * Normalised x [D] -> the output projection's [D] (see hostDecodes).
   */
  decodeHost(x: Float32Array, rope: LlamaAttentionInput['rope'], cache: LayerKVCache): Float32Array {
    const { y, kv, H, d } = this.projectToCache(x, 1, rope, cache);
    return (this.outProj as PackedLinear).computeFlat(kv.attend(y.subarray(0, H * d), H), 1);
  }

  /**
   * T > 1 new tokens (a prefill) with packed projections: as decodeHost, with our prefill-attention
   * kernel (causal, the new rows see the cache and each other) instead of one transpose, two
   * matmuls, a mask add and a softmax per head in tfjs. x [T, D] -> [T, D].
   */
  prefillHost(x: Float32Array, T: number, rope: LlamaAttentionInput['rope'], cache: LayerKVCache, mask: tf.Tensor2D | null): Float32Array {
    const past = cache.length;
    if (mask && (mask.shape[0] !== T || mask.shape[1] !== past + T)) throw new Error(`LlamaAttention: a [${mask.shape.join(', ')}] mask for ${T} new tokens after ${past}: only the causal mask is supported on packed weights`);
    const { y, kv, H, d, width } = this.projectToCache(x, T, rope, cache);
    const attention = attendRows(kv.runtime, kv.rows, y, width, 0, T, H, d, true);
    return (this.outProj as PackedLinear).computeFlat(attention, T);
  }

  /** q/k/v rows [T][(H + 2 Hkv) d] on the host, q and k rotated; k and v appended to the arena cache. */
  private projectToCache(x: Float32Array, T: number, rope: LlamaAttentionInput['rope'], cache: LayerKVCache) {
    const qkv = this.qkv as PackedLinear;
    const H = this.numHeads;
    const Hkv = this.numKvHeads;
    const d = this.rotary.headDim;
    const width = (H + 2 * Hkv) * d;
    const y = qkv.computeFlat(x, T); // q (scaled), k, v heads side by side in each row
    rotateRows(y, width, T, H + Hkv, d, rope.cos.dataSync() as Float32Array, rope.sin.dataSync() as Float32Array);
    const kv = cache.toArena(qkv.runtime, Hkv, d);
    kv.append(y.subarray(H * d), y.subarray((H + Hkv) * d), T, width);
    return { y, kv, H, d, width };
  }

  /** True when the host path can be taken: packed projections, head dim a multiple of 4 up to 256 (the kernels' limits). */
  get hostDecodes(): boolean {
    return this.qkv instanceof PackedLinear && this.outProj instanceof PackedLinear && this.rotary.headDim % 4 === 0 && this.rotary.headDim <= 256;
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

/**
 * RoPE on the host, in place, for the first `heads` heads of T rows of y [T][rowStride]: the same
 * float32 arithmetic as RotaryEmbedding.applyHeads (x cos + rotate_half(x) sin, each product and
 * the sum rounded). cos, sin [T][d] (RotaryEmbedding.tables()).
 */
export function rotateRows(y: Float32Array, rowStride: number, T: number, heads: number, d: number, cos: Float32Array, sin: Float32Array): void {
  const half = d / 2;
  const f = Math.fround;
  const rotated = new Float32Array(d);
  for (let t = 0; t < T; t++) {
    const c = t * d;
    for (let h = 0; h < heads; h++) {
      const at = t * rowStride + h * d;
      for (let i = 0; i < half; i++) {
        rotated[i] = f(f(y[at + i] * cos[c + i]) + f(-y[at + half + i] * sin[c + i]));
        rotated[half + i] = f(f(y[at + half + i] * cos[c + half + i]) + f(y[at + i] * sin[c + half + i]));
      }
      y.set(rotated, at);
    }
  }
}

/** A packed q/k/v projection whose output blocks are the heads (headBlocks()). */
export function checkHeadBlocks(qkv: PackedLinear, widths: readonly number[]): PackedLinear {
  if (qkv.widths.length !== widths.length || qkv.widths.some((w, i) => w !== widths[i])) {
    throw new Error(`attention: a packed q/k/v projection must have one output block per head (${widths.length} of ${widths[0]}), got ${qkv.widths.length} blocks`);
  }
  return qkv;
}
