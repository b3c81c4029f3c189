// Linear layer y = x W + b with W stored pre-transposed as [in, out].
//
// Why [in, out]: tfjs-backend-wasm runs a matmul on XNNPACK only when both operands are 2-D and
// neither is transposed; PyTorch's [out, in] layout with transposeB falls back to a scalar loop
// (~3x slower at decode, ~10x at prefill). So weights are transposed once, at load.
import * as tf from '@tensorflow/tfjs-core';

export class Linear {
  /** @param weight [in, out] @param bias [out] or null */
  constructor(readonly weight: tf.Tensor2D, readonly bias: tf.Tensor1D | null) {}

  get inFeatures(): number {
    return this.weight.shape[0];
  }

  get outFeatures(): number {
    return this.weight.shape[1];
  }

  /** x [T, in] -> [T, out]. Bias is fused into the matmul where the backend supports it. */
  apply(x: tf.Tensor2D): tf.Tensor2D {
    return tf.fused.matMul({ a: x, b: this.weight, bias: this.bias ?? undefined }) as tf.Tensor2D;
  }

  dispose(): void {
    this.weight.dispose();
    this.bias?.dispose();
  }
}

/**
 * Transposes a row-major PyTorch weight [out, in] into [in, out] on the host, before it
 * becomes a tensor (a host copy costs no tensor memory and no kernel call).
 */
export function transposeToInOut(weight: Float32Array, outFeatures: number, inFeatures: number): Float32Array {
  if (weight.length !== outFeatures * inFeatures) {
    throw new Error(`transposeToInOut: ${weight.length} values cannot be [${outFeatures}, ${inFeatures}]`);
  }
  const result = new Float32Array(weight.length);
  // Blocked transpose: keeps both the reads and the writes within cache lines.
  const B = 64;
  for (let o0 = 0; o0 < outFeatures; o0 += B) {
    const o1 = Math.min(o0 + B, outFeatures);
    for (let i0 = 0; i0 < inFeatures; i0 += B) {
      const i1 = Math.min(i0 + B, inFeatures);
      for (let o = o0; o < o1; o++) {
        const row = o * inFeatures;
        for (let i = i0; i < i1; i++) result[i * outFeatures + o] = weight[row + i];
      }
    }
  }
  return result;
}

/** Builds a Linear from PyTorch-layout arrays ([out, in] weight, [out] bias). */
export function linearFromTorch(weight: Float32Array, outFeatures: number, inFeatures: number, bias?: Float32Array | null): Linear {
  const w = tf.tensor2d(transposeToInOut(weight, outFeatures, inFeatures), [inFeatures, outFeatures]);
  const b = bias ? tf.tensor1d(bias) : null;
  return new Linear(w, b);
}
