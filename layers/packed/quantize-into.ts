// q8_0 / q4_0 quantization of a PyTorch-layout weight [rows][K] straight into its arena slices by
// the kernels (kernels/quantize.ts), through the memory's io region in chunks of rows padded to Kp.
// The bytes are those of weights/quantizeMatrix (the TypeScript reference, 5-6x slower); on a
// non-finite value or a scale beyond fp16 the kernel stops and the reference is run for its error.
import { packedBytes, paddedCols, quantizeMatrix, QK, type PackedFormat } from '../../weights/index.js';
import type { ArenaSlice, WeightArena } from './arena.js';

/** Rows r0..r0+n of `src` [*][K] into `view` [n][Kp], each row zero-padded from K to Kp. */
export function copyRowsPadded(view: Float32Array, src: Float32Array, r0: number, n: number, K: number, Kp: number): void {
  if (Kp === K) {
    view.set(src.subarray(r0 * K, (r0 + n) * K));
    return;
  }
  for (let r = 0; r < n; r++) {
    view.set(src.subarray((r0 + r) * K, (r0 + r + 1) * K), r * Kp);
    view.fill(0, r * Kp + K, (r + 1) * Kp);
  }
}

/** Quantizes `weight` [rows][K] into rows r0.. of the slices (data [N][row bytes], scales [N][Kp/32]). */
export function quantizeIntoArena(arena: WeightArena, format: Exclude<PackedFormat, 'f16'>, weight: Float32Array, rows: number, K: number, data: ArenaSlice, scales: ArenaSlice, r0: number): void {
  if (!(weight instanceof Float32Array) || weight.length !== rows * K) throw new Error(`quantizeMatrix: weight has ${weight?.length} values, expected rows*cols = ${rows}*${K} = ${rows * K}`);
  const Kp = paddedCols(K);
  const rowBytes = packedBytes(format, 1, K).data;
  const rowScales = (Kp / QK) * 4;
  const chunk = Math.floor(arena.ioBytes / (Kp * 4));
  if (chunk < 1) throw new Error(`quantizing [${rows}, ${K}]: one row needs ${Kp * 4} bytes, the arena's io region has ${arena.ioBytes}`);
  const mem = data.memory;
  const kernel = arena.kernels[mem];
  const run = format === 'q8_0' ? kernel.quantizeQ8Matrix : kernel.quantizeQ4Matrix;
  const io = arena.ioOffset;
  for (let c0 = 0; c0 < rows; c0 += chunk) {
    const n = Math.min(chunk, rows - c0);
    copyRowsPadded(arena.floatView(mem, io, n * Kp), weight, c0, n, K, Kp);
    const bad = run(io, n, Kp, data.offset + (r0 + c0) * rowBytes, scales.offset + (r0 + c0) * rowScales);
    if (bad >= 0) {
      quantizeMatrix(weight, rows, K, format); // throws the reference's message (row and block named)
      throw new Error(`quantizing [${rows}, ${K}]: the kernel refused row ${c0 + bad}, the reference did not`);
    }
  }
}
