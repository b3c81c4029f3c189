// Normalisation layers over the last axis of [T, C] activations, in float32 like HF.
import * as tf from '@tensorflow/tfjs-core';

/** LayerNorm: (x - mean) / sqrt(var + eps) * weight + bias, biased variance as in PyTorch. */
export class LayerNorm {
  /** @param weight [C] @param bias [C] */
  constructor(readonly weight: tf.Tensor1D, readonly bias: tf.Tensor1D, readonly eps: number) {}

  apply(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      const mean = tf.mean(x, -1, true);
      const centered = tf.sub(x, mean);
      const variance = tf.mean(tf.square(centered), -1, true);
      const normed = tf.mul(centered, tf.rsqrt(tf.add(variance, this.eps)));
      return tf.add(tf.mul(normed, this.weight), this.bias);
    });
  }

  /** Values of the weights this module holds (on the tensor heap or off it). */
  parameterCount(): number {
    return this.weight.size + this.bias.size;
  }

  dispose(): void {
    this.weight.dispose();
    this.bias.dispose();
  }
}

/** RMSNorm (LLaMA): x / sqrt(mean(x^2) + eps) * weight. */
export class RMSNorm {
  #host: { of: tf.Tensor1D; values: Float32Array } | null = null;

  /** @param weight [C] */
  constructor(readonly weight: tf.Tensor1D, readonly eps: number) {}

  /** One row on the host (the packed decode path): the same float32 steps as apply(). */
  applyHost(x: Float32Array): Float32Array {
    if (this.#host?.of !== this.weight) this.#host = { of: this.weight, values: this.weight.dataSync() as Float32Array };
    const w = this.#host.values;
    const f = Math.fround;
    let sum = 0;
    for (let i = 0; i < x.length; i++) sum += f(x[i] * x[i]);
    const scale = f(1 / Math.sqrt(f(f(sum / x.length) + this.eps)));
    const out = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) out[i] = f(f(x[i] * scale) * w[i]);
    return out;
  }

  apply(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      const meanSquare = tf.mean(tf.square(x), -1, true);
      return tf.mul(tf.mul(x, tf.rsqrt(tf.add(meanSquare, this.eps))), this.weight);
    });
  }

  /** Values of the weights this module holds (on the tensor heap or off it). */
  parameterCount(): number {
    return this.weight.size;
  }

  dispose(): void {
    this.weight.dispose();
  }
}
