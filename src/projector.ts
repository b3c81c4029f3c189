// LLaVA's multi-modal projector: linear_1 -> GELU -> linear_2, vision width -> text width; for
// anyres models (LLaVA-OneVision) also the learned image_newline appended to each packed row.
import type * as tf from '@tensorflow/tfjs-core';
import type { TwoLayerMlp } from '../layers/index.js';
import type { PackedTwoLayerMlp } from '../layers/packed/index.js';

export class Projector {
  constructor(
    readonly mlp: TwoLayerMlp | PackedTwoLayerMlp,
    /** [D] image_newline (anyres models), else null. */
    readonly imageNewline: tf.Tensor1D | null = null,
  ) {}

  /** features [N, Cv] -> [N, D] */
  apply(features: tf.Tensor2D): tf.Tensor2D {
    return this.mlp.apply(features);
  }

  /** Values of the weights this module holds (on the tensor heap or off it). */
  parameterCount(): number {
    return this.mlp.parameterCount() + (this.imageNewline?.size ?? 0);
  }

  dispose(): void {
    this.mlp.dispose();
    this.imageNewline?.dispose();
  }
}
