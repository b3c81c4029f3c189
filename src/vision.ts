// CLIP vision tower (HF CLIPVisionModel) or SigLIP vision tower (HF SiglipVisionModel: no CLS, no
// pre-LN, patch conv with bias; same pre-norm encoder blocks) up to LLaVA's feature layer, one
// image (tile) at a time, with token merging plugged in between the attention residual and the MLP
// of chosen blocks (with or without a CLS: the hook is told which).
import * as tf from '@tensorflow/tfjs-core';
import { ClipAttention, LayerNorm, PatchEmbedding, TwoLayerMlp } from '../layers/index.js';
import type { ParallelMlp } from '../layers/parallel.js';
import type { PackedTwoLayerMlp } from '../layers/packed/index.js';
import type { BlockMerge, VisionHook } from '../merge/index.js';

/** One pre-norm CLIP encoder block: x + attn(ln1 x), [merge], then h + mlp(ln2 h). */
export class ClipEncoderLayer {
  constructor(
    readonly ln1: LayerNorm,
    readonly attn: ClipAttention,
    readonly ln2: LayerNorm,
    readonly mlp: TwoLayerMlp | ParallelMlp | PackedTwoLayerMlp,
  ) {}

  /**
   * @param x [N, C] tokens of one image
   * @param merge what this block computes for the merge hook, if anything: the key bias, the
   *   attention statistics, and the merge of the post-attention residual (fewer tokens).
   */
  apply(x: tf.Tensor2D, merge?: BlockMerge): tf.Tensor2D {
    const normed = this.ln1.apply(x);
    const attention = this.attn.apply(normed, { keyBias: merge?.keyBias ?? null, returnProbs: merge?.attn ?? false, returnKeys: merge?.keys ?? false });
    normed.dispose();
    let h = tf.tidy(() => tf.add(x, attention.out) as tf.Tensor2D);
    attention.out.dispose();
    if (merge?.merge) {
      const merged = merge.merge(h, attention.probs, attention.keys);
      h.dispose();
      h = merged;
    }
    attention.probs?.dispose();
    attention.keys?.dispose();
    const out = tf.tidy(() => tf.add(h, this.mlp.apply(this.ln2.apply(h))) as tf.Tensor2D);
    h.dispose();
    return out;
  }

  /** Values of the weights this module holds (on the tensor heap or off it). */
  parameterCount(): number {
    return this.ln1.parameterCount() + this.attn.parameterCount() + this.ln2.parameterCount() + this.mlp.parameterCount();
  }

  dispose(): void {
    this.ln1.dispose();
    this.attn.dispose();
    this.ln2.dispose();
    this.mlp.dispose();
  }
}

export class VisionTower {
  constructor(
    readonly patchEmbedding: PatchEmbedding,
    /** [1, C]; null for SigLIP (no CLS). */
    readonly classEmbedding: tf.Tensor2D | null,
    /** [N + 1, C] with a CLS, else [N, C] */
    readonly positionEmbedding: tf.Tensor2D,
    /** CLIP's pre_layrnorm; null for SigLIP. */
    readonly preLayerNorm: LayerNorm | null,
    /** Only the blocks up to the feature layer: the rest never run, so they are never loaded. */
    readonly layers: ClipEncoderLayer[],
    readonly numHeads: number,
    readonly dropCls: boolean,
  ) {}

  /** Tokens entering the encoder: the CLS (if any), then the patches. */
  get tokens(): number {
    return this.positionEmbedding.shape[0];
  }

  /** The first token is a CLS (CLIP); SigLIP has none. A merge hook must be made with this (MergeSession.visionHook / TiledImage.tile). */
  get clsToken(): boolean {
    return this.classEmbedding !== null;
  }

  /**
   * pixels [3, H, W] (one image, or one anyres tile) -> features [N', C] (CLS dropped with the
   * 'default' strategy); each block does what the merge hook asks.
   */
  forward(pixels: tf.Tensor3D, hook?: VisionHook): tf.Tensor2D {
    let x = tf.tidy(() => {
      const patches = this.patchEmbedding.apply(pixels);
      const tokens = this.classEmbedding ? tf.concat([this.classEmbedding, patches], 0) : patches;
      if (tokens.shape[0] !== this.positionEmbedding.shape[0]) {
        throw new Error(`vision tower: ${tokens.shape[0]} tokens but ${this.positionEmbedding.shape[0]} position embeddings (image ${pixels.shape[2]}x${pixels.shape[1]})`);
      }
      const embedded = tf.add(tokens, this.positionEmbedding) as tf.Tensor2D;
      return this.preLayerNorm ? this.preLayerNorm.apply(embedded) : embedded;
    });
    this.layers.forEach((layer, index) => {
      const block = hook?.block(index);
      const next = layer.apply(x, block);
      block?.keyBias?.dispose();
      x.dispose();
      x = next;
    });
    if (!this.dropCls) return x;
    const features = tf.tidy(() => tf.slice(x, [1, 0], [-1, -1]) as tf.Tensor2D);
    x.dispose();
    return features;
  }

  /** Values of the weights this module holds (on the tensor heap or off it). */
  parameterCount(): number {
    return this.patchEmbedding.parameterCount() + (this.classEmbedding?.size ?? 0) + this.positionEmbedding.size + (this.preLayerNorm?.parameterCount() ?? 0) + this.layers.reduce((n, l) => n + l.parameterCount(), 0);
  }

  dispose(): void {
    this.patchEmbedding.dispose();
    this.classEmbedding?.dispose();
    this.positionEmbedding.dispose();
    this.preLayerNorm?.dispose();
    this.layers.forEach((l) => l.dispose());
  }
}
