// Feed-forward blocks on [T, C] activations.
import * as tf from '@tensorflow/tfjs-core';
import { Linear } from './linear.js';

/** fc2(act(fc1(x))): CLIP's MLP and LLaVA's 2-layer projector. */
export class TwoLayerMlp {
  constructor(
    readonly fc1: Linear,
    readonly fc2: Linear,
    readonly act: <T extends tf.Tensor>(x: T) => T,
  ) {}

  apply(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => this.fc2.apply(this.act(this.fc1.apply(x))));
  }

  dispose(): void {
    this.fc1.dispose();
    this.fc2.dispose();
  }
}

/**
 * LLaMA's gated MLP: down(act(gate(x)) * up(x)). gate and up are one [C, 2*I] matmul
 * (one weight pack, one XNNPACK call) split afterwards.
 */
export class GatedMlp {
  /** @param gateUp [C, 2I]: columns [0, I) are gate_proj, [I, 2I) up_proj. */
  constructor(
    readonly gateUp: Linear,
    readonly down: Linear,
    readonly act: <T extends tf.Tensor>(x: T) => T,
  ) {}

  apply(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      const both = this.gateUp.apply(x);
      const inter = this.down.inFeatures;
      const [gate, up] = tf.split(both, [inter, inter], 1);
      return this.down.apply(tf.mul(this.act(gate), up));
    });
  }

  dispose(): void {
    this.gateUp.dispose();
    this.down.dispose();
  }
}
