// LLaMA decoder (HF LlamaForCausalLM) with a per-layer KV cache, explicit position ids, and the
// language-stage token merge applied to the prefill before chosen layers.
import * as tf from '@tensorflow/tfjs-core';
import type { ParallelMlp } from '../layers/parallel.js';
import { PackedGatedMlp, type PackedLinear } from '../layers/packed/index.js';
import type { SequenceHook } from '../merge/index.js';
import { f16WordsToFloat32 } from '../weights/index.js';
import { GatedMlp, KVCache, LlamaAttention, Linear, RMSNorm, RotaryEmbedding, causalMask } from '../layers/index.js';

/** cos/sin tables of the current position ids (RotaryEmbedding.tables). */
export type RopeTables = { cos: tf.Tensor3D; sin: tf.Tensor3D };

/** One decoder layer as LlamaDecoder runs it: resident (LlamaDecoderLayer) or streamed (src/streamed.ts). */
export interface DecoderLayer {
  /**
   * x [T, D] -> out [T, D], appending to the layer's cache; with scoreRow, also the attention row
   * [H, T + past] of that query (softmax probabilities). Tensors returned are owned by the caller.
   */
  apply(x: tf.Tensor2D, rope: RopeTables, cache: KVCache['layers'][number], mask: tf.Tensor2D | null, scoreRow: number | undefined): { out: tf.Tensor2D; row?: tf.Tensor2D };
  /** Values of the layer's weights, wherever they are held. */
  parameterCount(): number;
  dispose(): void;
}

/** Pre-norm LLaMA block: h = x + attn(norm x); out = h + mlp(norm h). */
export class LlamaDecoderLayer implements DecoderLayer {
  constructor(
    readonly inputNorm: RMSNorm,
    readonly attn: LlamaAttention,
    readonly postNorm: RMSNorm,
    readonly mlp: GatedMlp | ParallelMlp | PackedGatedMlp,
  ) {}

  apply(x: tf.Tensor2D, rope: RopeTables, cache: KVCache['layers'][number], mask: tf.Tensor2D | null, scoreRow: number | undefined): { out: tf.Tensor2D; row?: tf.Tensor2D } {
    if (x.shape[0] === 1 && scoreRow === undefined && this.attn.hostDecodes && this.mlp instanceof PackedGatedMlp && this.mlp.hostAct) {
      return { out: this.decodeHost(x, rope, cache, this.mlp) };
    }
    const normed = this.inputNorm.apply(x);
    const attention = this.attn.apply({ x: normed, rope, cache, mask, returnRow: scoreRow });
    normed.dispose();
    const out = tf.tidy(() => {
      const h = tf.add(x, attention.out) as tf.Tensor2D;
      return tf.add(h, this.mlp.apply(this.postNorm.apply(h))) as tf.Tensor2D;
    });
    attention.out.dispose();
    return { out, row: attention.row };
  }

  /**
   * One token through a packed layer on the host: norms, attention (our kernel on the arena KV
   * cache), the residuals and the MLP as plain float32 arrays around the packed kernels, so a
   * decode step makes one tensor per layer instead of ~20 tfjs ops (each ~30 us of dispatch).
   */
  private decodeHost(x: tf.Tensor2D, rope: RopeTables, cache: KVCache['layers'][number], mlp: PackedGatedMlp): tf.Tensor2D {
    const f = Math.fround;
    const input = x.dataSync() as Float32Array;
    const attended = this.attn.decodeHost(this.inputNorm.applyHost(input), rope, cache);
    const h = new Float32Array(input.length);
    for (let i = 0; i < h.length; i++) h[i] = f(input[i] + attended[i]);
    const mlpOut = mlp.applyHost(this.postNorm.applyHost(h));
    for (let i = 0; i < h.length; i++) h[i] = f(h[i] + mlpOut[i]);
    return tf.tensor2d(h, [1, h.length]);
  }

  /** Values of the weights this module holds (on the tensor heap or off it). */
  parameterCount(): number {
    return this.inputNorm.parameterCount() + this.attn.parameterCount() + this.postNorm.parameterCount() + this.mlp.parameterCount();
  }

  dispose(): void {
    this.inputNorm.dispose();
    this.attn.dispose();
    this.postNorm.dispose();
    this.mlp.dispose();
  }
}

export class LlamaDecoder {
  constructor(
    /**
     * [V, D] token embeddings, kept on the host: a lookup is a row copy, and the table (0.5 GB for
     * 7B) stays out of the tensor heap. As fp16 words when that holds every value exactly (an fp16
     * checkpoint): half the memory, the same values.
     */
    readonly embedTable: Float32Array | Uint16Array,
    readonly vocabSize: number,
    readonly hiddenSize: number,
    /** Resident layers, or StreamedDecoderLayers built per call from host bytes (src/streamed.ts). */
    readonly layers: DecoderLayer[],
    readonly finalNorm: RMSNorm,
    /** [D, V] (float32 tensors, or packed) */
    readonly lmHead: Linear | PackedLinear,
    /** The layers' rotary embedding (one instance, shared with their attention). */
    readonly rotary: RotaryEmbedding,
  ) {}

  /** ids -> [T, D] embeddings. */
  embed(ids: readonly number[]): tf.Tensor2D {
    const D = this.hiddenSize;
    const out = new Float32Array(ids.length * D);
    ids.forEach((id, t) => {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) throw new Error(`token id ${id} is outside the vocabulary (0..${this.vocabSize - 1})`);
      const row = this.embedTable.subarray(id * D, (id + 1) * D);
      if (row instanceof Float32Array) out.set(row, t * D);
      else f16WordsToFloat32(row, out.subarray(t * D, (t + 1) * D));
    });
    return tf.tensor2d(out, [ids.length, D]);
  }

  /**
   * Runs new tokens through every layer, appending to the cache.
   * @param x [T, D] embeddings of the new tokens (consumed: disposed here)
   * @param positionIds their position ids
   * @param hook the merge hook of the sequence (prefill only)
   * @returns last-row logits [V] and the hidden state length that went through the last layer
   */
  forward(x: tf.Tensor2D, positionIds: number[], cache: KVCache, hook?: SequenceHook): { logits: Float32Array; finalLength: number } {
    let positions = positionIds;
    let past = cache.layers[0].length;
    let rope = this.rotary.tables(positions);
    let mask = x.shape[0] > 1 ? causalMask(x.shape[0], past) : null;
    let row: tf.Tensor2D | undefined;
    this.layers.forEach((layer, index) => {
      if (hook && x.shape[0] > 1) {
        const merged = hook.mergeBefore(index, x, positions, row);
        if (merged) {
          x.dispose();
          x = merged.hidden;
          positions = merged.positionIds;
          past = cache.layers[index].length;
          rope.cos.dispose();
          rope.sin.dispose();
          mask?.dispose();
          rope = this.rotary.tables(positions);
          mask = x.shape[0] > 1 ? causalMask(x.shape[0], past) : null;
        }
      }
      row?.dispose();
      const result = layer.apply(x, rope, cache.layers[index], mask, x.shape[0] > 1 ? hook?.scoreRow(index) : undefined);
      row = result.row;
      x.dispose();
      x = result.out;
    });
    row?.dispose();
    rope.cos.dispose();
    rope.sin.dispose();
    mask?.dispose();
    const finalLength = x.shape[0];
    const logits = tf.tidy(() => {
      const last = tf.slice(x, [x.shape[0] - 1, 0], [1, -1]) as tf.Tensor2D;
      return this.lmHead.apply(this.finalNorm.apply(last));
    });
    x.dispose();
    const values = logits.dataSync() as Float32Array;
    logits.dispose();
    return { logits: values, finalLength };
  }

  /** Values of the weights: the embedding table (host), the layers, the final norm and lm_head. */
  parameterCount(): number {
    return this.embedTable.length + this.layers.reduce((n, l) => n + l.parameterCount(), 0) + this.finalNorm.parameterCount() + this.lmHead.parameterCount();
  }

  dispose(): void {
    this.layers.forEach((l) => l.dispose());
    this.finalNorm.dispose();
    this.lmHead.dispose();
  }
}
