// Linear layer y = x W + b with W stored pre-transposed as [in, out], in column blocks.
//
// Why [in, out]: tfjs-backend-wasm runs a matmul on XNNPACK only when both operands are 2-D and
// neither is transposed; PyTorch's [out, in] layout with transposeB falls back to a scalar loop
// (~3x slower at decode, ~10x at prefill). So weights are transposed once, at load.
//
// Why column blocks: single-threaded XNNPACK computes a few rows of x against *all* of W at a time,
// so a W larger than the L2 cache is streamed from memory again for every few rows: measured on
// this machine (bench/README.md), [577,1024] x [1024,4096] ran at ~17 GFLOP/s as one matmul and at
// ~30 GFLOP/s as four [1024,1024] blocks. Each block is its own tensor (its own XNNPACK packed
// copy, created at the first call); the outputs are concatenated, or handed out per block to
// callers that want them apart (attention heads, MLP chunks), which also avoids splitting the
// output: tfjs-wasm's slice/split copy the whole input tensor on every call.
import * as tf from '@tensorflow/tfjs-core';
import { noteXnnpackCopy, releaseUnpacked, releaseUnpackedWeightsEnabled } from './wasm-memory.js';

let blockBytes = 4 << 20;

/** Largest weight block (bytes, float32) a Linear keeps as one matmul operand. Default 4 MiB. */
export function weightBlockBytes(): number {
  return blockBytes;
}

/** Changes the block size for Linears built from now on (for benchmarks; >= 64 KiB). */
export function setWeightBlockBytes(bytes: number): void {
  if (!Number.isFinite(bytes) || bytes < 1 << 16) throw new Error(`weight block size must be >= 65536 bytes, got ${bytes}`);
  blockBytes = bytes;
}

/**
 * Column widths for an [inF, outF] weight: one block when it fits the block size, else equal
 * blocks of a multiple of 64 columns (the last one shorter).
 */
export function blockWidths(inF: number, outF: number, bytes = blockBytes): number[] {
  if (inF * outF * 4 <= bytes) return [outF];
  const width = Math.max(64, Math.floor(bytes / (4 * inF) / 64) * 64);
  return splitEvenly(outF, width);
}

/** [w, w, ..., rest] summing to total. */
export function splitEvenly(total: number, width: number): number[] {
  const out: number[] = [];
  for (let start = 0; start < total; start += width) out.push(Math.min(width, total - start));
  return out;
}

/** Columns [start, start + width) of a row-major [rows, cols] matrix, as a new [rows, width] array. */
export function hostColumns(data: Float32Array, rows: number, cols: number, start: number, width: number): Float32Array {
  const out = new Float32Array(rows * width);
  for (let r = 0; r < rows; r++) out.set(data.subarray(r * cols + start, r * cols + start + width), r * width);
  return out;
}

const released = new WeakSet<tf.Tensor>();

/**
 * x @ weight (+ bias) on XNNPACK's path. With setReleaseUnpackedWeights(true) (wasm only), the
 * weight's unpacked copy is freed after its first call, once XNNPACK holds its packed copy:
 * the weight must then only ever be used here, always with the same bias.
 */
export function weightMatMul(x: tf.Tensor2D, weight: tf.Tensor2D, bias: tf.Tensor1D | null = null): tf.Tensor2D {
  const y = tf.fused.matMul({ a: x, b: weight, bias: bias ?? undefined }) as tf.Tensor2D;
  if (releaseUnpackedWeightsEnabled() && !released.has(weight)) {
    released.add(weight);
    releaseUnpacked(weight);
  } else noteXnnpackCopy(weight);
  return y;
}

/** True when weightMatMul freed this weight's unpacked data (its values can no longer be read). */
export function isReleased(weight: tf.Tensor): boolean {
  return released.has(weight);
}

/** One column block: weight [in, width], bias [width] or null. */
export interface LinearBlock {
  weight: tf.Tensor2D;
  bias: tf.Tensor1D | null;
  /**
   * Streamed weights (src/streamed.ts): makes this block's weight and bias tensors for one matmul;
   * blockMatMul disposes them right after it, so the heap holds one block at a time. `weight` is
   * then a disposed placeholder of the right shape.
   */
  fetch?: () => { weight: tf.Tensor2D; bias: tf.Tensor1D | null };
}

/** x @ block (+ its bias): weightMatMul, or for a streamed block fetch, multiply, dispose. */
export function blockMatMul(x: tf.Tensor2D, block: LinearBlock): tf.Tensor2D {
  if (!block.fetch) return weightMatMul(x, block.weight, block.bias);
  const { weight, bias } = block.fetch();
  try {
    return tf.fused.matMul({ a: x, b: weight, bias: bias ?? undefined }) as tf.Tensor2D;
  } finally {
    weight.dispose();
    bias?.dispose();
  }
}

/**
 * The output layout attention wants from a q/k/v projection: one block of d columns per head
 * (qHeads query heads, then the key and value heads), with 1/sqrt(d) folded into the q columns
 * (RoPE is linear, so scaling before it is the same): every head comes out of the projection on
 * its own, nothing is split, nothing is scaled per call.
 */
export function headBlocks(qHeads: number, otherHeads: number, d: number): { widths: number[]; columnScale: (col: number) => number } {
  const scale = 1 / Math.sqrt(d);
  return { widths: new Array<number>(qHeads + otherHeads).fill(d), columnScale: (c) => (c < qHeads * d ? scale : 1) };
}

export class Linear {
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** Column blocks, left to right; their widths sum to outFeatures. */
  readonly blocks: readonly LinearBlock[];

  /**
   * @param weight [in, out] @param bias [out] or null. The Linear owns them: a weight larger than
   *   the block size (or given `widths`) is re-laid out into column blocks and the tensors given
   *   here are disposed.
   * @param widths column widths of the blocks (default: blockWidths(in, out))
   */
  constructor(weight: tf.Tensor2D, bias: tf.Tensor1D | null, widths?: readonly number[]) {
    const [inF, outF] = weight.shape;
    if (bias && bias.shape[0] !== outF) throw new Error(`Linear: bias has ${bias.shape[0]} values for ${outF} outputs`);
    const w = widths ?? blockWidths(inF, outF);
    checkWidths(w, outF);
    this.inFeatures = inF;
    this.outFeatures = outF;
    if (w.length === 1) {
      this.blocks = [{ weight, bias }];
    } else {
      this.blocks = makeBlocks(weight.dataSync() as Float32Array, (bias?.dataSync() as Float32Array | undefined) ?? null, inF, outF, w);
      weight.dispose();
      bias?.dispose();
    }
  }

  /** A Linear from host data: weight [in, out] row-major, bias [out] or null (no tensor round trip). */
  static fromHost(weight: Float32Array, inF: number, outF: number, bias: Float32Array | null, widths?: readonly number[]): Linear {
    if (weight.length !== inF * outF) throw new Error(`Linear.fromHost: ${weight.length} values cannot be [${inF}, ${outF}]`);
    const w = widths ?? blockWidths(inF, outF);
    checkWidths(w, outF);
    const linear = Object.create(Linear.prototype) as Linear;
    const blocks = makeBlocks(weight, bias, inF, outF, w);
    Object.assign(linear, { inFeatures: inF, outFeatures: outF, blocks });
    return linear;
  }

  /** Widths of the column blocks. */
  get widths(): number[] {
    return this.blocks.map((b) => b.weight.shape[1]);
  }

  /** The weight [in, out] and bias [out] back on the host (e.g. to re-lay them out). */
  hostWeights(): { weight: Float32Array; bias: Float32Array | null } {
    const weight = new Float32Array(this.inFeatures * this.outFeatures);
    const bias = this.blocks[0].bias ? new Float32Array(this.outFeatures) : null;
    let col = 0;
    for (const block of this.blocks) {
      if (isReleased(block.weight)) throw new Error('Linear.hostWeights: the weights were released to XNNPACK (setReleaseUnpackedWeights)');
      const width = block.weight.shape[1];
      const data = block.weight.dataSync() as Float32Array;
      for (let r = 0; r < this.inFeatures; r++) weight.set(data.subarray(r * width, (r + 1) * width), r * this.outFeatures + col);
      if (bias && block.bias) bias.set(block.bias.dataSync() as Float32Array, col);
      col += width;
    }
    return { weight, bias };
  }

  /**
   * The same layer with other column blocks, each column optionally scaled (e.g. attention's
   * 1/sqrt(d) folded into the q projection). Disposes this Linear's tensors.
   */
  reblock(widths: readonly number[], columnScale?: (col: number) => number): Linear {
    const { weight, bias } = this.hostWeights();
    if (columnScale) {
      const scale = Float32Array.from({ length: this.outFeatures }, (_, c) => columnScale(c));
      for (let i = 0; i < weight.length; i++) weight[i] *= scale[i % this.outFeatures];
      if (bias) for (let c = 0; c < bias.length; c++) bias[c] *= scale[c];
    }
    this.dispose();
    return Linear.fromHost(weight, this.inFeatures, this.outFeatures, bias, widths);
  }

  /** x [T, in] -> [T, out] (bias fused into each block's matmul). */
  apply(x: tf.Tensor2D): tf.Tensor2D {
    if (this.blocks.length === 1) return blockMatMul(x, this.blocks[0]);
    return tf.tidy(() => tf.concat(this.applyBlocks(x), 1) as tf.Tensor2D);
  }

  /** x [T, in] -> one [T, width] output per block, caller-owned. */
  applyBlocks(x: tf.Tensor2D): tf.Tensor2D[] {
    return this.blocks.map((b) => blockMatMul(x, b));
  }

  /** Values of the weights this module holds (on the tensor heap or off it). */
  parameterCount(): number {
    return this.blocks.reduce((n, b) => n + b.weight.size + (b.bias?.size ?? 0), 0);
  }

  dispose(): void {
    for (const b of this.blocks) {
      b.weight.dispose();
      b.bias?.dispose();
    }
  }
}

function checkWidths(widths: readonly number[], outF: number): void {
  const sum = widths.reduce((a, b) => a + b, 0);
  if (widths.length === 0 || sum !== outF || widths.some((w) => !Number.isInteger(w) || w < 1)) {
    throw new Error(`Linear: block widths ${JSON.stringify(widths)} do not split ${outF} outputs`);
  }
}

function makeBlocks(weight: Float32Array, bias: Float32Array | null, inF: number, outF: number, widths: readonly number[]): LinearBlock[] {
  const blocks: LinearBlock[] = [];
  let col = 0;
  try {
    for (const width of widths) {
      const w = widths.length === 1 ? weight : hostColumns(weight, inF, outF, col, width);
      blocks.push({
        weight: tf.tensor2d(w, [inF, width]),
        bias: bias ? tf.tensor1d(bias.subarray(col, col + width)) : null,
      });
      col += width;
    }
  } catch (e) {
    blocks.forEach((b) => {
      b.weight.dispose();
      b.bias?.dispose();
    });
    throw e;
  }
  return blocks;
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
