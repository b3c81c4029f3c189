// Patch embedding: a stride-p, kernel-p convolution (CLIP: without bias; SigLIP: with bias), done
// as one 2-D matmul over unfolded patches (the fast path on every backend).
import * as tf from '@tensorflow/tfjs-core';

export class PatchEmbedding {
  /**
   * @param weight [3*p*p, C], rows ordered (channel, row, column) like PyTorch's conv weight.
   * @param bias [C] or null
   */
  constructor(
    readonly weight: tf.Tensor2D,
    readonly patchSize: number,
    readonly bias: tf.Tensor1D | null = null,
    /** Ignore trailing rows/columns that fill no whole patch, as PyTorch's stride-p conv does (SigLIP-so400m: 384 px, patch 14 -> 27 x 27); else such an image is an error. */
    readonly dropRemainder = false,
  ) {}

  /** Reorders a PyTorch conv weight [C, 3, p, p] into [3*p*p, C] on the host (and takes the conv bias [C], if any). */
  static fromTorch(convWeight: Float32Array, width: number, channels: number, patchSize: number, bias: Float32Array | null = null, dropRemainder = false): PatchEmbedding {
    const k = channels * patchSize * patchSize;
    const out = new Float32Array(k * width);
    for (let c = 0; c < width; c++) for (let i = 0; i < k; i++) out[i * width + c] = convWeight[c * k + i];
    if (bias && bias.length !== width) throw new Error(`PatchEmbedding: bias has ${bias.length} values, expected ${width}`);
    return new PatchEmbedding(tf.tensor2d(out, [k, width]), patchSize, bias ? tf.tensor1d(bias) : null, dropRemainder);
  }

  /** pixels [3, H, W] -> [N, C] with N = (H/p)*(W/p) in raster order (row-major over the patch grid). */
  apply(pixels: tf.Tensor3D): tf.Tensor2D {
    return tf.tidy((): tf.Tensor2D => {
      const [ch, H, W] = pixels.shape;
      const p = this.patchSize;
      if (!this.dropRemainder && (H % p !== 0 || W % p !== 0)) throw new Error(`image ${W}x${H} is not a multiple of the patch size ${p}`);
      const gh = Math.floor(H / p);
      const gw = Math.floor(W / p);
      const whole = gh * p === H && gw * p === W ? pixels : tf.slice(pixels, [0, 0, 0], [ch, gh * p, gw * p]);
      const unfolded = tf.reshape(tf.transpose(tf.reshape(whole, [ch, gh, p, gw, p]), [1, 3, 0, 2, 4]), [gh * gw, ch * p * p]);
      const projected = tf.matMul(unfolded, this.weight) as tf.Tensor2D;
      return this.bias ? (tf.add(projected, this.bias) as tf.Tensor2D) : projected;
    });
  }

  /** Values of the weights this module holds (on the tensor heap or off it). */
  parameterCount(): number {
    return this.weight.size + (this.bias?.size ?? 0);
  }

  dispose(): void {
    this.weight.dispose();
    this.bias?.dispose();
  }
}
