// CLIP vision tower (HF CLIPVisionModel) up to LLaVA's feature layer, one image at a time,
// with token merging plugged in between the attention residual and the MLP of chosen blocks.
import * as tf from '@tensorflow/tfjs-core';
import { ClipAttention, LayerNorm, PatchEmbedding, TwoLayerMlp } from '../layers/index.js';
import type { ParallelMlp } from '../layers/parallel.js';
import type { PackedTwoLayerMlp } from '../layers/packed/index.js';
import type { TokenMerger, VisionMergeState } from '../merge/index.js';

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
   * @param merge the merge step of this block, if any: receives the post-attention residual
   *   and the attention statistics it asked for, returns fewer tokens.
   */
  apply(x: tf.Tensor2D, merge?: BlockMerge): tf.Tensor2D {
    const needs = merge?.needs ?? { attn: false, keys: false };
    const normed = this.ln1.apply(x);
    const attention = this.attn.apply(normed, { keyBias: merge?.keyBias ?? null, returnProbs: needs.attn, returnKeys: needs.keys });
    normed.dispose();
    let h = tf.tidy(() => tf.add(x, attention.out) as tf.Tensor2D);
    attention.out.dispose();
    if (merge?.run) {
      const merged = merge.run(h, attention.probs, attention.keys);
      h.dispose();
      h = merged;
    }
    attention.probs?.dispose();
    attention.keys?.dispose();
    const out = tf.tidy(() => tf.add(h, this.mlp.apply(this.ln2.apply(h))) as tf.Tensor2D);
    h.dispose();
    return out;
  }

  dispose(): void {
    this.ln1.dispose();
    this.attn.dispose();
    this.ln2.dispose();
    this.mlp.dispose();
  }
}

/** What a block needs to merge: built per block by the tower from the TokenMerger. */
interface BlockMerge {
  needs: { attn: boolean; keys: boolean };
  keyBias: tf.Tensor1D | null;
  run?: (hidden: tf.Tensor2D, probs?: tf.Tensor3D, keys?: tf.Tensor2D) => tf.Tensor2D;
}

export interface VisionOutput {
  /** [N', C] image features (CLS dropped with the 'default' strategy). */
  features: tf.Tensor2D;
  /** Merge bookkeeping of this image (token counts, source map), when a merger ran. */
  mergeState?: VisionMergeState;
}

export class VisionTower {
  constructor(
    readonly patchEmbedding: PatchEmbedding,
    /** [1, C] */
    readonly classEmbedding: tf.Tensor2D,
    /** [N + 1, C] */
    readonly positionEmbedding: tf.Tensor2D,
    readonly preLayerNorm: LayerNorm,
    /** Only the blocks up to the feature layer: the rest never run, so they are never loaded. */
    readonly layers: ClipEncoderLayer[],
    readonly numHeads: number,
    readonly dropCls: boolean,
  ) {}

  /** pixels [3, H, W] -> features; merging per the merger's vision config. */
  forward(pixels: tf.Tensor3D, merger?: TokenMerger): VisionOutput {
    let x = tf.tidy(() => {
      const patches = this.patchEmbedding.apply(pixels);
      const tokens = tf.concat([this.classEmbedding, patches], 0);
      return this.preLayerNorm.apply(tf.add(tokens, this.positionEmbedding) as tf.Tensor2D);
    });
    let state = merger?.createVisionState(x.shape[0], true);
    this.layers.forEach((layer, index) => {
      let blockMerge: BlockMerge | undefined;
      if (merger && state) {
        const needs = merger.visionNeeds(index);
        const current = state;
        blockMerge = {
          needs,
          keyBias: merger.attentionBias(current),
          run: needs.merge
            ? (hidden, probs, keys) => {
                const result = merger.mergeVision({ layer: index, hidden, attn: probs, keys, numHeads: this.numHeads, state: current });
                state = result.state;
                return result.hidden;
              }
            : undefined,
        };
      }
      const next = layer.apply(x, blockMerge);
      blockMerge?.keyBias?.dispose();
      x.dispose();
      x = next;
    });
    if (!this.dropCls) return { features: x, mergeState: state };
    const features = tf.tidy(() => tf.slice(x, [1, 0], [-1, -1]) as tf.Tensor2D);
    x.dispose();
    return { features, mergeState: state };
  }

  dispose(): void {
    this.patchEmbedding.dispose();
    this.classEmbedding.dispose();
    this.positionEmbedding.dispose();
    this.preLayerNorm.dispose();
    this.layers.forEach((l) => l.dispose());
  }
}
