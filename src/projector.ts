// LLaVA's multi-modal projector: linear_1 -> GELU -> linear_2, vision width -> text width.
import type * as tf from '@tensorflow/tfjs-core';
import type { TwoLayerMlp } from '../layers/index.js';
import type { PackedTwoLayerMlp } from '../layers/packed/index.js';

export class Projector {
  constructor(readonly mlp: TwoLayerMlp | PackedTwoLayerMlp) {}

  /** features [N, Cv] -> [N, D] */
  apply(features: tf.Tensor2D): tf.Tensor2D {
    return this.mlp.apply(features);
  }

  /** Values of the weights this module holds (on the tensor heap or off it). */
  parameterCount(): number {
    return this.mlp.parameterCount();
  }

  dispose(): void {
    this.mlp.dispose();
  }
}
