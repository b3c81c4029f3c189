// The feed-forward blocks on packed weights. Unlike layers/mlp.ts (which cuts the intermediate
// width into chunks so XNNPACK's float32 weight blocks stay in cache), each layer here is one
// kernel call: the kernels tile for the cache themselves, and one call means one thread
// synchronisation.
import * as tf from '@tensorflow/tfjs-core';
import type { PackedLinear } from './packed-linear.js';

type Activation = <T extends tf.Tensor>(x: T) => T;

/** LLaMA's gated MLP: down(act(gate x) * up x), gate and up as the two output blocks of one layer. */
export class PackedGatedMlp {
  /**
   * @param gateUp [2I, C] packed with output blocks [I, I] (gate rows, then up rows)
   * @param down [C, I]
   */
  /** @param hostAct the activation on one value (hostActivation), for applyHost; without it applyHost is unavailable */
  constructor(readonly gateUp: PackedLinear, readonly down: PackedLinear, readonly act: Activation, readonly hostAct?: (x: number) => number) {
    const I = down.inFeatures;
    if (gateUp.widths.length !== 2 || gateUp.widths[0] !== I || gateUp.widths[1] !== I) {
      throw new Error(`PackedGatedMlp: gate/up must have output blocks [${I}, ${I}], got [${gateUp.widths.join(', ')}]`);
    }
  }

  /** x [T, C] -> [T, C] (on the host around the kernels when there is a host activation: no [T, I] tensors in the heap). */
  apply(x: tf.Tensor2D): tf.Tensor2D {
    if (this.hostAct) return tf.tensor2d(this.applyHost(x.dataSync() as Float32Array, x.shape[0]), [x.shape[0], this.down.outFeatures]);
    return tf.tidy(() => {
      const [gate, up] = this.gateUp.applyBlocks(x);
      return this.down.apply(tf.mul(this.act(gate), up) as tf.Tensor2D);
    });
  }

  /** Rows on the host: x [M][C] -> [M][C], no tensors. */
  applyHost(x: Float32Array, M = 1): Float32Array {
    const act = this.hostAct;
    if (!act) throw new Error('PackedGatedMlp.applyHost: built without a host activation');
    const I = this.down.inFeatures;
    const gu = this.gateUp.computeFlat(x, M); // [M][gate (I) | up (I)]
    const h = new Float32Array(M * I);
    for (let m = 0; m < M; m++) {
      const g = m * 2 * I;
      for (let i = 0; i < I; i++) h[m * I + i] = Math.fround(act(gu[g + i]) * gu[g + I + i]);
    }
    return this.down.computeFlat(h, M);
  }

  /** Values of the weights this module holds (on the tensor heap or off it). */
  parameterCount(): number {
    return this.gateUp.parameterCount() + this.down.parameterCount();
  }

  dispose(): void {
    this.gateUp.dispose();
    this.down.dispose();
  }
}

/** fc2(act(fc1 x)): CLIP's MLP and LLaVA's projector. */
export class PackedTwoLayerMlp {
  constructor(readonly fc1: PackedLinear, readonly fc2: PackedLinear, readonly act: Activation) {
    if (fc2.inFeatures !== fc1.outFeatures) throw new Error(`PackedTwoLayerMlp: fc1 gives ${fc1.outFeatures} features, fc2 takes ${fc2.inFeatures}`);
  }

  get inFeatures(): number {
    return this.fc1.inFeatures;
  }

  get outFeatures(): number {
    return this.fc2.outFeatures;
  }

  apply(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => this.fc2.apply(this.act(this.fc1.apply(x))));
  }

  /** Values of the weights this module holds (on the tensor heap or off it). */
  parameterCount(): number {
    return this.fc1.parameterCount() + this.fc2.parameterCount();
  }

  dispose(): void {
    this.fc1.dispose();
    this.fc2.dispose();
  }
}
