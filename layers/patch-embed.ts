// CLIP patch embedding: a stride-p, kernel-p convolution without bias, done as one 2-D matmul
// over unfolded patches (the fast path on every backend).
import * as tf from '@tensorflow/tfjs-core';

export class PatchEmbedding {
  /** @param weight [3*p*p, C], rows ordered (channel, row, column) like PyTorch's conv weight. */
  constructor(readonly weight: tf.Tensor2D, readonly patchSize: number) {}

  /** Reorders a PyTorch conv weight [C, 3, p, p] into [3*p*p, C] on the host. */
  static fromTorch(convWeight: Float32Array, width: number, channels: number, patchSize: number): PatchEmbedding {
    const k = channels * patchSize * patchSize;
    const out = new Float32Array(k * width);
    for (let c = 0; c < width; c++) for (let i = 0; i < k; i++) out[i * width + c] = convWeight[c * k + i];
    return new PatchEmbedding(tf.tensor2d(out, [k, width]), patchSize);
  }

  /** pixels [3, H, W] -> [N, C] with N = (H/p)*(W/p) in raster order (row-major over the patch grid). */
  apply(pixels: tf.Tensor3D): tf.Tensor2D {
    return tf.tidy(() => {
      const [ch, H, W] = pixels.shape;
      const p = this.patchSize;
      if (H % p !== 0 || W % p !== 0) throw new Error(`image ${W}x${H} is not a multiple of the patch size ${p}`);
      const gh = H / p;
      const gw = W / p;
      const unfolded = tf.reshape(tf.transpose(tf.reshape(pixels, [ch, gh, p, gw, p]), [1, 3, 0, 2, 4]), [gh * gw, ch * p * p]);
      return tf.matMul(unfolded, this.weight);
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
