// Host-side quantized weight formats, bit-compatible with llama.cpp (ggml-quants.c):
//
//   f16   fp16 words, round to nearest even;
//   q8_0  blocks of 32 values: fp16 scale d = amax/127, int8 q = roundf(x/d)        (block_q8_0);
//   q4_0  blocks of 32 values: fp16 scale d = max/-8, 4-bit q = min(15, (int8)(x/d + 8.5)),
//         value = (q - 8) * d, two values per byte in llama.cpp's qs order        (block_q4_0).
//
// Matrices are in PyTorch layout [rows = N out features][cols = K in features]; every row is
// padded with zeros to Kp = K rounded up to 32 (for f16 too, so all formats share one geometry).
// All quantization arithmetic is float32 (Math.fround at each step), so the bytes are identical to
// what the C reference functions produce.
import { f16BitsToNumber, f16WordsToFloat32, f32BitsToF16Bits, numberToF16Bits, uint16FromBytesLE } from './dtype.js';

export type WeightFormat = 'f32' | 'f16' | 'q8_0' | 'q4_0';
export type PackedFormat = Exclude<WeightFormat, 'f32'>;
export const QK = 32; // block size of q8_0 / q4_0

/** The packed formats, for validation of untrusted strings. */
export const PACKED_FORMATS: readonly PackedFormat[] = ['f16', 'q8_0', 'q4_0'];

/** A weight matrix in PyTorch layout [rows = N out features][cols = K in features], packed. */
export interface QuantizedMatrix {
  readonly format: PackedFormat;
  readonly rows: number;        // N
  readonly cols: number;        // K
  readonly paddedCols: number;  // Kp = K rounded up to a multiple of 32 (for every format, f16 too); padding values are 0
  /** f16: little-endian fp16 words [N][Kp] as bytes (2*N*Kp bytes);
   *  q8_0: int8 [N][Kp] (N*Kp bytes);
   *  q4_0: [N][Kp/32 blocks][16 bytes], byte j of a block = q[j] | (q[j+16] << 4), q in 0..15 (llama.cpp block_q4_0 qs order) (N*Kp/2 bytes). */
  readonly data: Uint8Array;
  /** q8_0/q4_0: [N][Kp/32], each the float32 value of the block's fp16 scale `d` (exactly representable in fp16); f16: null. */
  readonly scales: Float32Array | null;
}

const fround = Math.fround;

function checkDim(fn: string, what: string, n: number): void {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n <= 0) throw new Error(`${fn}: ${what} must be a positive integer, got ${String(n)}`);
}

function checkFormat(fn: string, format: string): asserts format is PackedFormat {
  if (!(PACKED_FORMATS as readonly string[]).includes(format)) throw new Error(`${fn}: unknown format '${String(format)}' (expected f16, q8_0 or q4_0)`);
}

/** Kp: `cols` rounded up to a multiple of QK. */
export function paddedCols(cols: number): number {
  checkDim('paddedCols', 'cols', cols);
  return Math.ceil(cols / QK) * QK;
}

/** Byte sizes of `data` and of `scales` (float32 in memory; 0 for f16). */
export function packedBytes(format: PackedFormat, rows: number, cols: number): { data: number; scales: number } {
  checkFormat('packedBytes', format);
  checkDim('packedBytes', 'rows', rows);
  const kp = paddedCols(cols);
  switch (format) {
    case 'f16': return { data: 2 * rows * kp, scales: 0 };
    case 'q8_0': return { data: rows * kp, scales: 4 * rows * (kp / QK) };
    case 'q4_0': return { data: (rows * kp) / 2, scales: 4 * rows * (kp / QK) };
  }
}

/** Checks a matrix's geometry and array sizes (it may come from untrusted code or a file). */
export function checkQuantizedMatrix(m: QuantizedMatrix, fn: string): void {
  checkFormat(fn, m.format);
  checkDim(fn, 'rows', m.rows);
  checkDim(fn, 'cols', m.cols);
  if (m.paddedCols !== paddedCols(m.cols)) throw new Error(`${fn}: paddedCols ${m.paddedCols} != ${paddedCols(m.cols)} for cols ${m.cols}`);
  const size = packedBytes(m.format, m.rows, m.cols);
  if (!(m.data instanceof Uint8Array) || m.data.length !== size.data) {
    throw new Error(`${fn}: ${m.format} data must be a Uint8Array of ${size.data} bytes for [${m.rows}, ${m.cols}], got ${m.data instanceof Uint8Array ? m.data.length : typeof m.data}`);
  }
  if (m.format === 'f16') {
    if (m.scales !== null) throw new Error(`${fn}: f16 matrices have no scales (scales must be null)`);
  } else if (!(m.scales instanceof Float32Array) || m.scales.length * 4 !== size.scales) {
    throw new Error(`${fn}: ${m.format} scales must be a Float32Array of ${size.scales / 4} values for [${m.rows}, ${m.cols}]`);
  }
}

/** C roundf: round half away from zero. Exact: |v| < 2^24 so v + 0.5 is exact in float64. */
function roundf(v: number): number {
  return v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5);
}

/** fp16 bits of the float32 scale d; throws when it overflows fp16 (|x| far beyond any real weight). */
function scaleBits(fn: string, d: number, where: string): number {
  const h = numberToF16Bits(d);
  if ((h & 0x7c00) === 0x7c00) throw new Error(`${fn}: block scale ${d} overflows fp16 at ${where}`);
  return h;
}

/**
 * q8_0 of one block of `src` (32 values from `off`, of which the first `len` are real and the rest
 * are padding zeros) into q[qOff..qOff+32) (int8 values, any integer array); returns fp16(d) bits.
 * This is quantize_row_q8_0_ref for one block.
 */
function quantizeBlockQ8(fn: string, src: Float32Array, off: number, len: number, q: Int8Array, qOff: number, row: number, block: number): number {
  let amax = 0;
  for (let j = 0; j < len; j++) {
    const a = Math.abs(src[off + j]);
    if (a > amax) amax = a;
  }
  const d = fround(amax / 127);
  const id = d !== 0 ? fround(1 / d) : 0;
  const h = d === 0 ? 0 : scaleBits(fn, d, `row ${row}, block ${block}`);
  for (let j = 0; j < len; j++) q[qOff + j] = roundf(fround(src[off + j] * id));
  for (let j = len; j < QK; j++) q[qOff + j] = 0; // padding: roundf(0 * id) = 0
  return h;
}

/** Throws at the first NaN/Infinity of a [rows][cols] array. */
function checkFinite(fn: string, what: string, x: Float32Array, cols: number): void {
  for (let i = 0; i < x.length; i++) {
    if (!Number.isFinite(x[i])) throw new Error(`${fn}: ${what} has a non-finite value at row ${Math.floor(i / cols)}, col ${i % cols}`);
  }
}

/** Quantizes a float32 [rows][cols] weight (PyTorch layout); see the file comment for the formats. */
export function quantizeMatrix(weight: Float32Array, rows: number, cols: number, format: PackedFormat, out?: { data: Uint8Array; scales: Float32Array | null }): QuantizedMatrix {
  const fn = 'quantizeMatrix';
  checkFormat(fn, format);
  checkDim(fn, 'rows', rows);
  checkDim(fn, 'cols', cols);
  if (!(weight instanceof Float32Array)) throw new Error(`${fn}: weight must be a Float32Array`);
  if (weight.length !== rows * cols) throw new Error(`${fn}: weight has ${weight.length} values, expected rows*cols = ${rows}*${cols} = ${rows * cols}`);
  checkFinite(fn, 'weight', weight, cols);
  const kp = paddedCols(cols);
  const nb = kp / QK; // blocks per row
  const size = packedBytes(format, rows, cols);
  let data: Uint8Array;
  let scales: Float32Array | null;
  if (out) {
    if (!(out.data instanceof Uint8Array) || out.data.length !== size.data) throw new Error(`${fn}: out.data must be a Uint8Array of exactly ${size.data} bytes, got ${out.data instanceof Uint8Array ? out.data.length : typeof out.data}`);
    if (format === 'f16') {
      if (out.scales !== null && !(out.scales instanceof Float32Array && out.scales.length === 0)) throw new Error(`${fn}: out.scales must be null for f16`);
    } else if (!(out.scales instanceof Float32Array) || out.scales.length !== size.scales / 4) {
      throw new Error(`${fn}: out.scales must be a Float32Array of exactly ${size.scales / 4} values, got ${out.scales instanceof Float32Array ? out.scales.length : String(out.scales)}`);
    }
    data = out.data;
    scales = format === 'f16' ? null : out.scales;
  } else {
    data = new Uint8Array(size.data);
    scales = format === 'f16' ? null : new Float32Array(size.scales / 4);
  }

  if (format === 'f16') {
    const bits = new Uint32Array(weight.buffer, weight.byteOffset, weight.length); // a Float32Array is 4-aligned
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < kp; c++) {
        const h = c < cols ? f32BitsToF16Bits(bits[r * cols + c]) : 0;
        if ((h & 0x7c00) === 0x7c00) throw new Error(`${fn}: weight value ${weight[r * cols + c]} at row ${r}, col ${c} overflows fp16`);
        const p = 2 * (r * kp + c);
        data[p] = h & 0xff; // little-endian, whatever the host
        data[p + 1] = h >>> 8;
      }
    }
    return { format, rows, cols, paddedCols: kp, data, scales: null };
  }

  const sc = scales as Float32Array;
  if (format === 'q8_0') {
    const q = new Int8Array(data.buffer, data.byteOffset, data.length); // int8 view of the same bytes
    for (let r = 0; r < rows; r++) {
      for (let b = 0; b < nb; b++) {
        const c0 = b * QK;
        const h = quantizeBlockQ8(fn, weight, r * cols + c0, Math.min(QK, cols - c0), q, r * kp + c0, r, b);
        sc[r * nb + b] = f16BitsToNumber(h);
      }
    }
    return { format, rows, cols, paddedCols: kp, data, scales: sc };
  }

  // q4_0 (quantize_row_q4_0_ref), one block at a time through a zero-padded scratch block.
  const x = new Float32Array(QK);
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < nb; b++) {
      const c0 = b * QK;
      const len = Math.min(QK, cols - c0);
      for (let j = 0; j < QK; j++) x[j] = j < len ? weight[r * cols + c0 + j] : 0;
      let amax = 0;
      let max = 0;
      for (let j = 0; j < QK; j++) {
        const a = Math.abs(x[j]);
        if (amax < a) { amax = a; max = x[j]; } // strict <: the first value of largest magnitude wins
      }
      const d = fround(max / -8);
      const id = d !== 0 ? fround(1 / d) : 0;
      const h = amax === 0 ? numberToF16Bits(d) : scaleBits(fn, d, `row ${r}, block ${b}`); // d = -0 for an all-zero block, as in C
      sc[r * nb + b] = f16BitsToNumber(h);
      const p = (r * kp + c0) / 2;
      for (let j = 0; j < QK / 2; j++) {
        // (int8_t)(x*id + 8.5f) truncates toward zero; the sum is >= 0 here (x*id >= -8).
        const xi0 = Math.min(15, Math.trunc(fround(fround(x[j] * id) + 8.5)));
        const xi1 = Math.min(15, Math.trunc(fround(fround(x[QK / 2 + j] * id) + 8.5)));
        data[p + j] = xi0 | (xi1 << 4);
      }
    }
  }
  return { format, rows, cols, paddedCols: kp, data, scales: sc };
}

/** Float32 [N][Kp] values of the matrix, padding included (f16: exact; q: fround(q * d) as llama.cpp's dequantize_row). */
function dequantizePadded(m: QuantizedMatrix): Float32Array {
  const { rows, paddedCols: kp } = m;
  if (m.format === 'f16') return f16WordsToFloat32(uint16FromBytesLE(m.data));
  const out = new Float32Array(rows * kp);
  const sc = m.scales as Float32Array;
  const nb = kp / QK;
  if (m.format === 'q8_0') {
    const q = new Int8Array(m.data.buffer, m.data.byteOffset, m.data.length);
    for (let i = 0; i < out.length; i++) out[i] = q[i] * sc[Math.floor(i / QK)]; // Float32Array store = fround
    return out;
  }
  for (let blk = 0; blk < rows * nb; blk++) {
    const d = sc[blk];
    const p = blk * (QK / 2);
    const o = blk * QK;
    for (let j = 0; j < QK / 2; j++) {
      const byte = m.data[p + j];
      out[o + j] = ((byte & 0x0f) - 8) * d;
      out[o + QK / 2 + j] = ((byte >> 4) - 8) * d;
    }
  }
  return out;
}

/** The matrix as float32 [N][K] (padding dropped). */
export function dequantizeMatrix(m: QuantizedMatrix): Float32Array {
  checkQuantizedMatrix(m, 'dequantizeMatrix');
  const padded = dequantizePadded(m);
  if (m.cols === m.paddedCols) return padded;
  const out = new Float32Array(m.rows * m.cols);
  for (let r = 0; r < m.rows; r++) out.set(padded.subarray(r * m.paddedCols, r * m.paddedCols + m.cols), r * m.cols);
  return out;
}

/**
 * Activations for the q8_0 / q4_0 kernels: x [M][K] float32 -> q int16 [M][Kp], scales [M][Kp/32],
 * per 32-block d = fround(amax/32767) (float32, not fp16-rounded), q = roundf(fround(x * fround(1/d)))
 * clamped to +-32767 (x*(1/d) can round to 32767.5 at amax). llama.cpp quantizes activations to
 * q8_0 instead; the kernels multiply int16 lanes either way, so 16 bits cost nothing there and
 * leave only the weights' rounding in the error (kernels/matmul.ts, quantizeRows16).
 */
export function quantizeActivations16(x: Float32Array, M: number, K: number): { q: Int16Array; scales: Float32Array; paddedCols: number } {
  const fn = 'quantizeActivations16';
  checkDim(fn, 'M', M);
  checkDim(fn, 'K', K);
  if (!(x instanceof Float32Array) || x.length !== M * K) throw new Error(`${fn}: x must be a Float32Array of M*K = ${M * K} values, got ${x instanceof Float32Array ? x.length : typeof x}`);
  checkFinite(fn, 'x', x, K);
  const kp = paddedCols(K);
  const nb = kp / QK;
  const q = new Int16Array(M * kp); // padding stays 0
  const scales = new Float32Array(M * nb);
  for (let r = 0; r < M; r++) {
    for (let b = 0; b < nb; b++) {
      const c0 = b * QK;
      const len = Math.min(QK, K - c0);
      let amax = 0;
      for (let j = 0; j < len; j++) amax = Math.max(amax, Math.abs(x[r * K + c0 + j]));
      const d = fround(amax / 32767);
      const id = d !== 0 ? fround(1 / d) : 0;
      scales[r * nb + b] = d;
      for (let j = 0; j < len; j++) q[r * kp + c0 + j] = Math.max(-32767, Math.min(32767, roundf(fround(x[r * K + c0 + j] * id))));
    }
  }
  return { q, scales, paddedCols: kp };
}

/** How the kernels take activations: 'int16' quantized per block (the q8_0/q4_0 integer kernels
 *  of decode), 'float32' as they are (f16 always; every format on the float32-panel prefill path). */
export type ActivationPath = 'int16' | 'float32';

/** Reference y [M][N] = x [M][K] · W^T (+ bias [N]) in float64 accumulation:
 *  f16, or activations 'float32': x float32 times the weight values dequantized to float32;
 *  q8_0 / q4_0 with activations 'int16' (the default): x quantized with quantizeActivations16, then per block sum_j xq*wq as an exact integer, times (d_x * d_w), summed over blocks (llama.cpp's ggml_vec_dot_q8_0_q8_0 / ggml_vec_dot_q4_0_q8_0 with 16-bit activations; q4_0 weight values are q-8). */
export function referenceMatmul(x: Float32Array, M: number, m: QuantizedMatrix, bias?: Float32Array | null, activations: ActivationPath = 'int16'): Float32Array {
  const fn = 'referenceMatmul';
  checkQuantizedMatrix(m, fn);
  checkDim(fn, 'M', M);
  const { rows: N, cols: K, paddedCols: kp } = m;
  if (!(x instanceof Float32Array) || x.length !== M * K) throw new Error(`${fn}: x must be a Float32Array of M*K = ${M}*${K} values, got ${x instanceof Float32Array ? x.length : typeof x}`);
  if (bias != null && (!(bias instanceof Float32Array) || bias.length !== N)) throw new Error(`${fn}: bias must be a Float32Array of N = ${N} values`);
  const y = new Float32Array(M * N);

  if (m.format === 'f16' || activations === 'float32') {
    const w = dequantizePadded(m); // [N][Kp]: exact fp16 values, or q * d rounded to float32 as the kernels compute it
    for (let i = 0; i < M; i++) {
      for (let n = 0; n < N; n++) {
        let acc = 0;
        for (let k = 0; k < K; k++) acc += x[i * K + k] * w[n * kp + k];
        y[i * N + n] = acc + (bias ? bias[n] : 0);
      }
    }
    return y;
  }

  // Integer weight values [N][Kp]: q8_0 int8, q4_0 q - 8.
  const wq = new Int16Array(N * kp);
  if (m.format === 'q8_0') {
    wq.set(new Int8Array(m.data.buffer, m.data.byteOffset, m.data.length));
  } else {
    for (let blk = 0; blk < N * (kp / QK); blk++) {
      for (let j = 0; j < QK / 2; j++) {
        const byte = m.data[blk * (QK / 2) + j];
        wq[blk * QK + j] = (byte & 0x0f) - 8;
        wq[blk * QK + QK / 2 + j] = (byte >> 4) - 8;
      }
    }
  }
  const ws = m.scales as Float32Array;
  const xa = quantizeActivations16(x, M, K);
  const nb = kp / QK;
  for (let i = 0; i < M; i++) {
    for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let b = 0; b < nb; b++) {
        let sumi = 0; // |sumi| <= 32*127*32767 < 2^28: exact
        const xo = i * kp + b * QK;
        const wo = n * kp + b * QK;
        for (let j = 0; j < QK; j++) sumi += xa.q[xo + j] * wq[wo + j];
        acc += sumi * (xa.scales[i * nb + b] * ws[n * nb + b]); // d_x*d_w of two float32 values is exact in float64
      }
      y[i * N + n] = acc + (bias ? bias[n] : 0);
    }
  }
  return y;
}
