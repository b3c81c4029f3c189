// A linear layer y = x W^T (* colScale) + b whose weight W [N, K] is packed (f16, q8_0 or q4_0)
// in a WeightArena, run as a tfjs op.
//
// The op ('IllavaPackedMatMul') is registered with tf.registerKernel for the wasm and cpu
// backends, so tf.tidy, dispose and tf.memory() see its outputs like any other op's: the kernel
// reads x from the backend, runs our WebAssembly kernels over the arena (split by columns over the
// pool's threads) and hands back one float32 tensor per output block. On a backend without the
// kernel (tensorflow, webgl, webgpu) apply() dequantizes the weight a block of columns at a time
// into float32 tensors and uses tf.matMul (correct everywhere, fast nowhere: a fallback).
import * as tf from '@tensorflow/tfjs-core';
import { dequantizeMatrix, packedBytes, paddedCols, quantizeMatrix, type PackedFormat, type QuantizedMatrix } from '../../weights/index.js';
import type { ArenaSlice } from './arena.js';
import type { PackedRuntime } from './runtime.js';
import { transposeToInOut } from '../linear.js';
import { copyRowsPadded, quantizeIntoArena } from './quantize-into.js';

export const PACKED_MATMUL = 'IllavaPackedMatMul';
/** Backends the op is registered for. */
export const PACKED_BACKENDS = ['wasm', 'cpu'] as const;

/** kernels/panel.ts's format codes. */
const PANEL_FORMAT: Record<PackedFormat, number> = { q8_0: 0, q4_0: 1, f16: 2 };

const layers = new Map<number, PackedLinear>();
let nextId = 1;

/** A layer's arena slices (one memory). */
interface Slices {
  data: ArenaSlice;
  scales: ArenaSlice | null;
  colScale: ArenaSlice | null;
  bias: ArenaSlice | null;
}

export interface PackedLinearOptions {
  /** Widths of the output blocks applyBlocks() returns (default: one block of N). */
  widths?: readonly number[];
  /** A factor per output column applied after the dot product (e.g. attention's 1/sqrt(d) on q). */
  columnScale?: (col: number) => number;
  /** The name this matrix has in a packed cache file (the loader's key: its source tensors' prefixes). */
  cacheKey?: string;
}

export class PackedLinear {
  readonly id = nextId++;
  readonly paddedCols: number;
  readonly widths: readonly number[];
  readonly cacheKey: string | undefined;
  #disposed = false;

  /** #private: reflective walkers over a model (parameter counts) must not descend into the arena. */
  readonly #runtime: PackedRuntime;

  private constructor(
    runtime: PackedRuntime,
    readonly format: PackedFormat,
    /** K */
    readonly inFeatures: number,
    /** N */
    readonly outFeatures: number,
    private readonly data: ArenaSlice,
    private readonly scales: ArenaSlice | null,
    private readonly colScale: ArenaSlice | null,
    private readonly bias: ArenaSlice | null,
    options: PackedLinearOptions,
  ) {
    const widths = options.widths;
    this.cacheKey = options.cacheKey;
    this.#runtime = runtime;
    this.paddedCols = paddedCols(inFeatures);
    this.widths = widths ?? [outFeatures];
    if (this.widths.reduce((a, b) => a + b, 0) !== outFeatures || this.widths.some((w) => !Number.isInteger(w) || w < 1)) {
      throw new Error(`PackedLinear: block widths ${JSON.stringify(this.widths)} do not split ${outFeatures} outputs`);
    }
    layers.set(this.id, this);
  }

  /**
   * Packs a PyTorch-layout weight [N][K] (float32, row-major) into the runtime's arena.
   * @param bias [N] or null
   */
  static fromTorch(runtime: PackedRuntime, format: PackedFormat, weight: Float32Array, N: number, K: number, bias: Float32Array | null, options: PackedLinearOptions = {}): PackedLinear {
    return PackedLinear.fromTorchParts(runtime, format, [{ rows: N, weight: () => weight }], K, bias, options);
  }

  /**
   * Several PyTorch-layout weights [rows_i][K] stacked as the rows of one packed [sum rows_i, K]
   * layer (q/k/v, gate/up), each quantized straight into its rows of the arena: the stacked float32
   * matrix never exists. `weight()` is called once per part, in order.
   */
  static fromTorchParts(runtime: PackedRuntime, format: PackedFormat, parts: ReadonlyArray<{ rows: number; weight: () => Float32Array }>, K: number, bias: Float32Array | null, options: PackedLinearOptions = {}): PackedLinear {
    const arena = runtime.arena;
    const N = parts.reduce((n, p) => n + p.rows, 0);
    const slices = PackedLinear.reserve(runtime, format, N, K, bias !== null, options);
    const row = packedBytes(format, 1, K);
    const data = arena.bytes(slices.data);
    let r0 = 0;
    for (const part of parts) {
      if (format !== 'f16' && slices.scales) {
        quantizeIntoArena(arena, format, part.weight(), part.rows, K, slices.data, slices.scales, r0); // the kernels
      } else {
        const out = { data: data.subarray(r0 * row.data, (r0 + part.rows) * row.data), scales: null }; // f16: no scales
        quantizeMatrix(part.weight(), part.rows, K, format, out);
      }
      r0 += part.rows;
    }
    return PackedLinear.place(runtime, format, N, K, slices, bias, options);
  }

  /**
   * Allocates the arena slices of an [N, K] matrix and calls `fill` with views of them (to read a
   * file straight into the arena), then builds the layer.
   */
  static fill(runtime: PackedRuntime, format: PackedFormat, N: number, K: number, bias: Float32Array | null, fill: (data: Uint8Array, scales: Float32Array | null) => void, options: PackedLinearOptions = {}): PackedLinear {
    const arena = runtime.arena;
    const slices = PackedLinear.reserve(runtime, format, N, K, bias !== null, options);
    fill(arena.bytes(slices.data), slices.scales ? arena.floats(slices.scales) : null);
    return PackedLinear.place(runtime, format, N, K, slices, bias, options);
  }

  /** The slices of one layer, all in one memory: weight, scales, column scales, bias. */
  private static reserve(runtime: PackedRuntime, format: PackedFormat, N: number, K: number, withBias: boolean, options: PackedLinearOptions): Slices {
    const size = packedBytes(format, N, K);
    const [data, scales, colScale, bias] = runtime.arena.allocateTogether([size.data, size.scales, options.columnScale ? 4 * N : 0, withBias ? 4 * N : 0]);
    return { data, scales: size.scales > 0 ? scales : null, colScale: options.columnScale ? colScale : null, bias: withBias ? bias : null };
  }

  private static place(runtime: PackedRuntime, format: PackedFormat, N: number, K: number, slices: Slices, bias: Float32Array | null, options: PackedLinearOptions): PackedLinear {
    const arena = runtime.arena;
    const { data, scales, colScale } = slices;
    const b = slices.bias;
    if (bias && bias.length !== N) throw new Error(`PackedLinear: bias has ${bias.length} values for ${N} outputs`);
    const scale = colScale && options.columnScale ? arena.floats(colScale) : null;
    if (scale && options.columnScale) for (let c = 0; c < N; c++) scale[c] = options.columnScale(c);
    if (b && bias) {
      // y = dot * s + b * s: the bias is scaled with its column, as a folded float32 weight would be.
      arena.floats(b).set(scale ? bias.map((v, c) => v * scale[c]) : bias);
    }
    return new PackedLinear(runtime, format, K, N, data, scales, colScale, b, options);
  }

  get runtime(): PackedRuntime {
    return this.#runtime;
  }

  /** Values held outside the tensor heap (weights and biases; counted by parameterCount). */
  get offHeapParameters(): number {
    return this.inFeatures * this.outFeatures + (this.bias ? this.outFeatures : 0);
  }

  /** Bytes the packed weight holds in the arena. */
  get packedBytes(): number {
    return this.data.bytes + (this.scales?.bytes ?? 0);
  }

  /** The packed weight as a QuantizedMatrix viewing the arena (rows [r0, r1)). */
  matrix(r0 = 0, r1 = this.outFeatures): QuantizedMatrix {
    const arena = this.runtime.arena;
    const rowBytes = this.data.bytes / this.outFeatures;
    const blocks = this.paddedCols / 32;
    const data = arena.bytes(this.data).subarray(r0 * rowBytes, r1 * rowBytes);
    const scales = this.scales ? arena.floats(this.scales).subarray(r0 * blocks, r1 * blocks) : null;
    return { format: this.format, rows: r1 - r0, cols: this.inFeatures, paddedCols: this.paddedCols, data, scales };
  }

  /** x [T, K] -> [T, N] */
  apply(x: tf.Tensor2D): tf.Tensor2D {
    const parts = this.applyBlocks(x);
    if (parts.length === 1) return parts[0];
    const y = tf.concat(parts, 1) as tf.Tensor2D;
    parts.forEach((p) => p.dispose());
    return y;
  }

  /** x [T, K] -> one [T, width] tensor per block (caller-owned). */
  applyBlocks(x: tf.Tensor2D): tf.Tensor2D[] {
    if (this.#disposed) throw new Error('PackedLinear: used after dispose()');
    if (x.rank !== 2 || x.shape[1] !== this.inFeatures) throw new Error(`PackedLinear: input must be [T, ${this.inFeatures}], got [${x.shape.join(', ')}]`);
    if (tf.getKernel(PACKED_MATMUL, tf.getBackend())) {
      const out = tf.engine().runKernel(PACKED_MATMUL, { x }, { layer: this.id }) as tf.Tensor2D | tf.Tensor2D[];
      return Array.isArray(out) ? out : [out];
    }
    return this.applyDequantized(x);
  }

  /** The fallback: each block's weight dequantized to a float32 [K, width] tensor, then tf.matMul. */
  private applyDequantized(x: tf.Tensor2D): tf.Tensor2D[] {
    const out: tf.Tensor2D[] = [];
    let col = 0;
    for (const width of this.widths) {
      const w = transposeToInOut(dequantizeMatrix(this.matrix(col, col + width)), width, this.inFeatures);
      const arena = this.runtime.arena;
      const scale = this.colScale ? arena.floats(this.colScale).slice(col, col + width) : null;
      const bias = this.bias ? arena.floats(this.bias).slice(col, col + width) : null;
      out.push(tf.tidy(() => {
        let y = tf.matMul(x, tf.tensor2d(w, [this.inFeatures, width])) as tf.Tensor2D;
        if (scale) y = tf.mul(y, tf.tensor1d(scale));
        if (bias) y = tf.add(y, tf.tensor1d(bias));
        return y;
      }));
      col += width;
    }
    return out;
  }

  /** The arena memory holding this layer's bytes (its kernel runs on that memory's instance). */
  get memory(): number {
    return this.data.memory;
  }

  /**
   * x [M][K] row-major -> y [M][N] (blocks side by side). Rows go through the memory's io region in
   * chunks that fit it. From runtime.panelMinRows rows on (PANEL_MIN_ROWS: 8, f16 2) (prefill, vision tower) every format runs the
   * float32-panel kernel (kernels/panel.ts: float32 activations, each weight column dequantized once
   * per row chunk); fewer rows (decode) run the integer q8_0/q4_0 kernels on 16-bit activations, or
   * the f16 kernel, which read each weight byte once without a dequantized copy.
   */
  computeFlat(x: Float32Array, M: number): Float32Array {
    if (this.#disposed) throw new Error('PackedLinear: used after dispose()');
    const { arena, pool } = this.runtime;
    const K = this.inFeatures;
    const Kp = this.paddedCols;
    const N = this.outFeatures;
    if (x.length < M * K) throw new Error(`PackedLinear: ${x.length} input values cannot be [${M}, ${K}]`);
    const panel = M >= this.runtime.panelMinRows[this.format];
    const q = this.format !== 'f16' && !panel; // activations quantized to 16 bits
    const mem = this.data.memory;
    const scratchBytes = panel ? pool.threads * Kp * 16 : 0;
    const perRow = Kp * 4 + (q ? Kp * 2 + (Kp / 32) * 4 : 0) + N * 4;
    const chunk = Math.floor((arena.ioBytes - scratchBytes - 4 * 64) / perRow);
    if (chunk < 1) throw new Error(`PackedLinear [${N}, ${K}]: one row needs ${perRow + scratchBytes} bytes, the arena's io region has ${arena.ioBytes}`);
    const y = new Float32Array(M * N);
    const align = (n: number) => Math.ceil(n / 64) * 64;
    const kernels = arena.kernels[mem];
    const cs = this.colScale ? this.colScale.offset : 0;
    const bias = this.bias ? this.bias.offset : 0;
    const w = this.data.offset;
    const ws = this.scales ? this.scales.offset : 0;
    for (let m0 = 0; m0 < M; m0 += chunk) {
      const rows = Math.min(chunk, M - m0);
      const xf = arena.ioOffset;
      const xq = xf + align(rows * Kp * 4);
      const xs = xq + (q ? align(rows * Kp * 2) : 0);
      const out = xs + (q ? align(rows * (Kp / 32) * 4) : 0);
      const scratch = out + align(rows * N * 4);
      copyRowsPadded(arena.floatView(mem, xf, rows * Kp), x, m0, rows, K, Kp);
      if (panel) {
        const format = PANEL_FORMAT[this.format];
        pool.run('matmulPanel', mem, N, (t, n0, n1) => [format, xf, rows, Kp, w, ws, n0, n1, out, N, cs, bias, scratch + t * Kp * 16]);
      } else if (q) {
        kernels.quantizeRows16(xf, rows, Kp, xq, xs);
        pool.run(this.format === 'q8_0' ? 'matmulQ8' : 'matmulQ4', mem, N, (_t, n0, n1) => [xq, xs, rows, Kp, w, ws, n0, n1, out, N, cs, bias]);
      } else {
        pool.run('matmulF16', mem, N, (_t, n0, n1) => [xf, rows, Kp, w, n0, n1, out, N, cs, bias]);
      }
      y.set(arena.floatView(mem, out, rows * N), m0 * N);
    }
    return y;
  }

  /** Values of the weights this module holds (on the tensor heap or off it). */
  parameterCount(): number {
    return this.offHeapParameters;
  }

  /** Frees nothing in the arena (its memory lives as long as the model's runtime), but makes the layer unusable. */
  dispose(): void {
    this.#disposed = true;
    layers.delete(this.id);
  }
}

// ---- the tfjs op ----

interface WasmLikeBackend {
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array;
  makeOutput(shape: number[], dtype: 'float32'): tf.TensorInfo;
}
interface CpuLikeBackend {
  readSync(dataId: tf.DataId): tf.backend_util.BackendValues;
  makeTensorInfo(shape: number[], dtype: 'float32', values: Float32Array): tf.TensorInfo;
}

function isWasmLike(b: object): b is WasmLikeBackend {
  return typeof (b as Partial<WasmLikeBackend>).typedArrayFromHeap === 'function' && typeof (b as Partial<WasmLikeBackend>).makeOutput === 'function';
}

const packedMatMul: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const x = (inputs as { x: tf.TensorInfo }).x;
  const layer = layers.get(Number((attrs as { layer: number }).layer));
  if (!layer) throw new Error(`${PACKED_MATMUL}: no packed layer ${String((attrs as { layer: number }).layer)} (disposed?)`);
  const [M] = x.shape;
  const values = isWasmLike(backend) ? backend.typedArrayFromHeap(x) : ((backend as unknown as CpuLikeBackend).readSync(x.dataId) as Float32Array);
  const y = layer.computeFlat(values, M); // reads x completely before any output is allocated (the wasm heap may grow)
  const N = layer.outFeatures;
  let col = 0;
  return layer.widths.map((width) => {
    const shape = [M, width];
    const block = (dst: Float32Array) => {
      if (width === N) dst.set(y);
      else for (let r = 0; r < M; r++) dst.set(y.subarray(r * N + col, r * N + col + width), r * width);
      col += width;
      return dst;
    };
    if (isWasmLike(backend)) {
      const info = backend.makeOutput(shape, 'float32');
      block(backend.typedArrayFromHeap(info)); // columns straight into the output's heap memory
      return info;
    }
    return (backend as unknown as CpuLikeBackend).makeTensorInfo(shape, 'float32', block(new Float32Array(M * width)));
  });
};

for (const backendName of PACKED_BACKENDS) {
  if (!tf.getKernel(PACKED_MATMUL, backendName)) tf.registerKernel({ kernelName: PACKED_MATMUL, backendName, kernelFunc: packedMatMul });
}
