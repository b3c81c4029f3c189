// Quantized weight formats (weights/quantized.ts: f16, q8_0, q4_0 as in llama.cpp's ggml-quants.c)
// and their on-disk cache (weights/quantized-file.ts: a safetensors file of NAME.qweight /
// NAME.qscale tensors). Hand-computed blocks, bytes produced by llama.cpp's C reference functions,
// a float64 reference for referenceMatmul, file round trips and malformed files.
import { expect } from 'chai';
import { mkdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  dequantizeMatrix, f16BitsToNumber, packedBytes, paddedCols, QK, QuantizedFile, quantizeActivations16, quantizeMatrix,
  referenceMatmul, SafetensorsFile, writeQuantizedFile, type PackedFormat, type QuantizedMatrix,
} from '../weights/index.js';
import { safetensorsBytes, tempDir, u16le, writeFile } from './helpers/weights-files.js';

const FORMATS: PackedFormat[] = ['f16', 'q8_0', 'q4_0'];

/** Deterministic values in [-0.5, 0.5) (32-bit LCG), so failures reproduce. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32 - 0.5;
}

function randomMatrix(rows: number, cols: number, seed: number, scale = 1): Float32Array {
  const next = lcg(seed);
  return Float32Array.from({ length: rows * cols }, () => next() * scale);
}

/** One row's block `b` (32 values) of a q4_0 matrix as q values 0..15, in x order. */
function q4Block(m: QuantizedMatrix, r: number, b: number): number[] {
  const p = (r * m.paddedCols + b * QK) / 2;
  const bytes = [...m.data.subarray(p, p + 16)];
  return [...bytes.map((v) => v & 15), ...bytes.map((v) => v >> 4)];
}

function int8(m: QuantizedMatrix): number[] {
  return [...new Int8Array(m.data.buffer, m.data.byteOffset, m.data.length)];
}

describe('quantized formats: geometry', () => {
  it('pads cols to a multiple of 32 and sizes every format', () => {
    expect([1, 31, 32, 33, 64, 4096].map(paddedCols)).to.deep.equal([32, 32, 32, 64, 64, 4096]);
    expect(packedBytes('f16', 7, 33)).to.deep.equal({ data: 2 * 7 * 64, scales: 0 });
    expect(packedBytes('q8_0', 7, 33)).to.deep.equal({ data: 7 * 64, scales: 4 * 7 * 2 });
    expect(packedBytes('q4_0', 7, 33)).to.deep.equal({ data: (7 * 64) / 2, scales: 4 * 7 * 2 });
    for (const bad of [0, -1, 1.5, NaN]) expect(() => paddedCols(bad)).to.throw(/cols must be a positive integer/);
  });

  it('rejects bad input with one-line errors', () => {
    const w = new Float32Array(6);
    expect(() => quantizeMatrix(w, 0, 6, 'q8_0')).to.throw('quantizeMatrix: rows must be a positive integer, got 0');
    expect(() => quantizeMatrix(w, 2, 2.5, 'q8_0')).to.throw('quantizeMatrix: cols must be a positive integer, got 2.5');
    expect(() => quantizeMatrix(w, 2, 4, 'q8_0')).to.throw('quantizeMatrix: weight has 6 values, expected rows*cols = 2*4 = 8');
    expect(() => quantizeMatrix(w, 2, 3, 'q5_k' as PackedFormat)).to.throw(/unknown format 'q5_k'/);
    const nan = new Float32Array(6);
    nan[5] = NaN;
    expect(() => quantizeMatrix(nan, 2, 3, 'q4_0')).to.throw('quantizeMatrix: weight has a non-finite value at row 1, col 2');
    nan[5] = -Infinity;
    expect(() => quantizeMatrix(nan, 2, 3, 'f16')).to.throw('quantizeMatrix: weight has a non-finite value at row 1, col 2');
    // Finite but beyond fp16: f16 values >= 65520, a q8_0 scale amax/127 >= 65520.
    expect(() => quantizeMatrix(new Float32Array([70000]), 1, 1, 'f16')).to.throw(/row 0, col 0 overflows fp16/);
    expect(() => quantizeMatrix(new Float32Array([1e7]), 1, 1, 'q8_0')).to.throw(/block scale .* overflows fp16 at row 0, block 0/);
    // `out` must have the exact sizes.
    expect(() => quantizeMatrix(w, 2, 3, 'q8_0', { data: new Uint8Array(63), scales: new Float32Array(2) })).to.throw(/out.data must be a Uint8Array of exactly 64 bytes, got 63/);
    expect(() => quantizeMatrix(w, 2, 3, 'q8_0', { data: new Uint8Array(64), scales: new Float32Array(3) })).to.throw(/out.scales must be a Float32Array of exactly 2 values, got 3/);
    expect(() => quantizeMatrix(w, 2, 3, 'q4_0', { data: new Uint8Array(32), scales: null })).to.throw(/out.scales must be a Float32Array/);
    expect(() => quantizeMatrix(w, 2, 3, 'f16', { data: new Uint8Array(128), scales: new Float32Array(2) })).to.throw(/out.scales must be null for f16/);
  });
});

describe('quantized formats: hand-computed blocks', () => {
  it('q8_0: a block 0..31 (d = 31/127, fp16(d) = 0x33D0)', () => {
    // amax = 31, d = fround(31/127) = 0.24409449; fp16: 2^-3 * (1 + m/1024), m = round((0.24409449*8 - 1)*1024)
    // = round(975.62) = 976 -> 0x3000 | 976 = 0x33D0 = 0.244140625. The q use id = 1/d (unrounded d):
    // q[j] = roundf(j * 127/31), never near a tie (127j mod 31 is an integer, never 15.5).
    const m = quantizeMatrix(Float32Array.from({ length: 32 }, (_, j) => j), 1, 32, 'q8_0');
    expect(m.scales).to.deep.equal(new Float32Array([0.244140625]));
    expect(int8(m)).to.deep.equal([0, 4, 8, 12, 16, 20, 25, 29, 33, 37, 41, 45, 49, 53, 57, 61, 66, 70, 74, 78, 82, 86, 90, 94, 98, 102, 107, 111, 115, 119, 123, 127]);
    expect(dequantizeMatrix(m)[31]).to.equal(127 * 0.244140625);
  });

  it('q8_0: roundf rounds exact halves away from zero', () => {
    // amax = 127 -> d = 1, id = 1, so x*id = x exactly: 2.5 -> 3, -2.5 -> -3 (Math.round would give -2).
    const x = new Float32Array(32);
    x.set([127, 2.5, -2.5, 0.5, -0.5, 1.5, -1.5, 126.5, -126.5, 0.49999997]);
    const m = quantizeMatrix(x, 1, 32, 'q8_0');
    expect(m.scales).to.deep.equal(new Float32Array([1]));
    expect(int8(m).slice(0, 11)).to.deep.equal([127, 3, -3, 1, -1, 2, -2, 127, -127, 0, 0]);
  });

  it('q4_0: a negative max (d = -16/-8 = 2, id = 0.5)', () => {
    // q = min(15, trunc(x*0.5 + 8.5)): -16 -> 0; 16 -> 16.5 -> 15 (clipped: -max is not representable);
    // 3 -> 10; -3 -> 7; 1 -> 9; -1 -> 8; 2.9 -> 9.95 -> 9 (truncation); 7 -> 12; -7.5 -> 4.75 -> 4; 0 -> 8.
    // -16 comes first, so it is `max` (strict < on |x| keeps the first of equal magnitude).
    const x = new Float32Array(32);
    x.set([-16, 16, 3, -3, 1, -1, 2.9]);
    x.set([7, -7.5], 16);
    const m = quantizeMatrix(x, 1, 32, 'q4_0');
    expect(m.scales).to.deep.equal(new Float32Array([2]));
    const q = [0, 15, 10, 7, 9, 8, 9, 8, 8, 8, 8, 8, 8, 8, 8, 8, 12, 4, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8];
    expect(q4Block(m, 0, 0)).to.deep.equal(q);
    // Byte j = q[j] | q[j+16] << 4 (block_q4_0 qs order).
    expect([...m.data]).to.deep.equal([0xc0, 0x4f, 0x8a, 0x87, 0x89, 0x88, 0x89, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88]);
    expect([...dequantizeMatrix(m).slice(0, 7)]).to.deep.equal([-16, 14, 4, -2, 2, 0, 2]); // (q - 8) * d
  });

  it('q4_0: a positive max first gives d < 0; an all-zero block gives d = -0 and q = 8', () => {
    const x = new Float32Array(64);
    x.set([16, -16]); // d = 16/-8 = -2, id = -0.5: 16 -> 0.5 -> 0 -> (0-8)*-2 = 16; -16 -> 15 -> -14
    const m = quantizeMatrix(x, 1, 64, 'q4_0');
    expect(m.scales?.[0]).to.equal(-2);
    expect(Object.is(m.scales?.[1], -0)).to.equal(true); // 0 / -8 = -0 in C too: fp16 0x8000
    expect(q4Block(m, 0, 0).slice(0, 3)).to.deep.equal([0, 15, 8]);
    expect(q4Block(m, 0, 1)).to.deep.equal(new Array(32).fill(8));
    expect([...dequantizeMatrix(m).slice(0, 3)]).to.deep.equal([16, -14, -0]); // (8 - 8) * -2 = -0, as in C
  });

  it('f16: round to nearest even, little-endian words', () => {
    // 1 -> 0x3C00; 1/3 -> 0x3555; 65504 (max half) -> 0x7BFF; -2^-24 (smallest subnormal) -> 0x8001;
    // 1 + 2^-11 is a tie between 1 and 1 + 2^-10: to even, 0x3C00; 1 + 3*2^-11 -> 0x3C02.
    const m = quantizeMatrix(new Float32Array([1, 1 / 3, 65504, -(2 ** -24), 1 + 2 ** -11, 1 + 3 * 2 ** -11]), 1, 6, 'f16');
    const words = [0x3c00, 0x3555, 0x7bff, 0x8001, 0x3c00, 0x3c02];
    expect(m.scales).to.equal(null);
    expect(m.data.length).to.equal(64); // padded to 32 words
    expect([...m.data.subarray(0, 12)]).to.deep.equal(words.flatMap((w) => [w & 0xff, w >> 8]));
    expect([...m.data.subarray(12)].every((b) => b === 0)).to.equal(true);
  });

  it('matches bytes produced by llama.cpp quantize_row_q8_0_ref / quantize_row_q4_0_ref', () => {
    // x: 2 rows x 64 cols, one block each of magnitude 0.02, 3, 300 and 1e-5 (the last one's q8_0
    // scale is an fp16 subnormal, 2^-24). Expected: the C functions (gcc 12, fp16 via _Float16) on the
    // same float32 values, as arrays of block_q8_0 {fp16 d; int8 qs[32]} / block_q4_0 {fp16 d; u8 qs[16]}.
    const next = lcg(1);
    const mags = [0.02, 3, 300, 1e-5];
    const x = Float32Array.from({ length: 128 }, (_, i) => next() * mags[i >> 5]);
    const q8 = Buffer.from(
      'e404bf18a3487f175e1e428b85ae9f31fe48675767696e14cea4a8f5c036cb697d75c82173d5654daf2f1be937b9fd8c97fa623668e0fa04a565' +
      '20c9067fa608b6f5c710853cc79d429bbbb174b430ae819145d88835e2202e9a2828760556b0d5617c9a6ffc01006437d66894a4916f609a9226679c485c197fa0b7e1ee737d333790ba9e7f544e', 'hex');
    const q4 = Buffer.from(
      'da942c372e131077b2e6e49fcf5dbe150813bcb111ab8283ed2566b9850ce88fdf98c2757c4c64a2bc22a4b3ff83db3350e1fc25f08b0a806205ebd1af9e1f01525effc6e20e3332', 'hex');
    const m8 = quantizeMatrix(x, 2, 64, 'q8_0');
    const m4 = quantizeMatrix(x, 2, 64, 'q4_0');
    for (let b = 0; b < 4; b++) { // block b = row b>>1, block b&1: the same order in both layouts
      expect(m8.scales?.[b], `q8_0 scale ${b}`).to.equal(f16BitsToNumber(q8.readUInt16LE(b * 34)));
      expect([...m8.data.subarray(b * 32, b * 32 + 32)], `q8_0 block ${b}`).to.deep.equal([...q8.subarray(b * 34 + 2, b * 34 + 34)]);
      expect(m4.scales?.[b], `q4_0 scale ${b}`).to.equal(f16BitsToNumber(q4.readUInt16LE(b * 18)));
      expect([...m4.data.subarray(b * 16, b * 16 + 16)], `q4_0 block ${b}`).to.deep.equal([...q4.subarray(b * 18 + 2, b * 18 + 18)]);
    }
    expect(m8.scales?.[3]).to.equal(2 ** -24);
  });

  it('quantizeActivations16 on hand-computed rows', () => {
    // Row 0: amax 32767 -> d 1: [32767, -63.5 -> -64 (half away from zero), 0.25 -> 0]. Row 1: zeros -> d 0.
    // Row 2: amax 65534 -> d 2, id 0.5: [-65534 -> -32767, 1 -> 0.5 -> 1, 3 -> 1.5 -> 2].
    const a = quantizeActivations16(new Float32Array([32767, -63.5, 0.25, 0, 0, 0, -65534, 1, 3]), 3, 3);
    expect(a.paddedCols).to.equal(32);
    expect([...a.scales]).to.deep.equal([1, 0, 2]);
    expect(a.q.length).to.equal(96);
    expect([...a.q.subarray(0, 4)]).to.deep.equal([32767, -64, 0, 0]);
    expect([...a.q.subarray(32, 64)].every((v) => v === 0)).to.equal(true);
    expect([...a.q.subarray(64, 68)]).to.deep.equal([-32767, 1, 2, 0]);
    // amax 1: d = fround(1/32767) is not exact and 1 * fround(1/d) rounds to 32767 or one step past:
    // the value at amax is clamped to 32767, and every value is within half a step of x/d.
    const b = quantizeActivations16(new Float32Array([1, -1, 0.3, 1e-3]), 1, 4);
    expect(b.scales[0]).to.equal(Math.fround(1 / 32767));
    expect([...b.q.subarray(0, 2)]).to.deep.equal([32767, -32767]);
    [0.3, 1e-3].forEach((v, j) => expect(Math.abs(b.q[2 + j] - v / b.scales[0])).to.be.at.most(0.5 + 1e-3));
    expect(() => quantizeActivations16(new Float32Array([1, NaN]), 1, 2)).to.throw('quantizeActivations16: x has a non-finite value at row 0, col 1');
    expect(() => quantizeActivations16(new Float32Array(3), 2, 2)).to.throw(/x must be a Float32Array of M\*K = 4 values, got 3/);
  });
});

describe('quantized formats: round trips and shapes', () => {
  for (const [rows, cols] of [[7, 33], [3, 1], [4, 96], [1, 100]] as const) {
    it(`dequantize(quantize(w)) is within each format's error bound, [${rows}, ${cols}]`, () => {
      const w = randomMatrix(rows, cols, rows * 1000 + cols, 4);
      for (const format of FORMATS) {
        const m = quantizeMatrix(w, rows, cols, format);
        expect([m.rows, m.cols, m.paddedCols, m.data.length]).to.deep.equal([rows, cols, paddedCols(cols), packedBytes(format, rows, cols).data]);
        const back = dequantizeMatrix(m);
        expect(back.length).to.equal(rows * cols);
        for (let r = 0; r < rows; r++) {
          for (let c = 0; c < cols; c++) {
            const b0 = r * cols + c - (c % QK); // this value's block (within the row)
            const amax = Math.max(...w.subarray(b0, Math.min(b0 + QK, (r + 1) * cols)).map(Math.abs));
            // f16: half an ulp (2^-11 relative); q8_0: half a step amax/127 plus fp16 rounding of d;
            // q4_0: a whole step amax/8 (the value -max is clipped from q=16 to 15) plus fp16 rounding.
            const x = w[r * cols + c];
            const bound = format === 'f16' ? Math.abs(x) * 2 ** -11 : format === 'q8_0' ? amax * (0.5 / 127 + 2 ** -11) : amax * (1 / 8 + 2 ** -10);
            expect(Math.abs(back[r * cols + c] - x), `${format} [${r},${c}]`).to.be.at.most(bound + amax * 1e-6);
          }
        }
        // Padding columns hold zeros (q4_0: q = 8, i.e. (8 - 8) * d).
        const kp = m.paddedCols;
        for (let r = 0; r < rows; r++) {
          for (let c = cols; c < kp; c++) {
            if (format === 'f16') expect(m.data[2 * (r * kp + c)] | m.data[2 * (r * kp + c) + 1]).to.equal(0);
            else if (format === 'q8_0') expect(m.data[r * kp + c]).to.equal(0);
            else expect(q4Block(m, r, Math.floor(c / QK))[c % QK]).to.equal(8);
          }
        }
      }
    });
  }

  it('quantizes into preallocated `out` arrays (any byte offset) with the same result', () => {
    const w = randomMatrix(7, 33, 5);
    for (const format of FORMATS) {
      const ref = quantizeMatrix(w, 7, 33, format);
      const size = packedBytes(format, 7, 33);
      const heap = new Uint8Array(size.data + 3).fill(0xaa); // garbage, including where padding goes
      const data = heap.subarray(3);
      const scales = format === 'f16' ? null : new Float32Array(size.scales / 4).fill(99);
      const m = quantizeMatrix(w, 7, 33, format, { data, scales });
      expect(m.data).to.equal(data);
      expect(m.scales).to.equal(scales);
      expect([...data]).to.deep.equal([...ref.data]);
      expect(scales && [...scales]).to.deep.equal(ref.scales && [...ref.scales]);
    }
  });
});

describe('quantized formats: referenceMatmul', () => {
  /** y[i][n] = sum_k a[i][k] * b[n][k] in float64, and sum_k |a*b| (the magnitude for tolerances). */
  function dot64(a: ArrayLike<number>, b: ArrayLike<number>, M: number, N: number, K: number): { y: number[]; mag: number[] } {
    const y: number[] = [];
    const mag: number[] = [];
    for (let i = 0; i < M; i++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        let t = 0;
        for (let k = 0; k < K; k++) { s += a[i * K + k] * b[n * K + k]; t += Math.abs(a[i * K + k] * b[n * K + k]); }
        y.push(s);
        mag.push(t);
      }
    }
    return { y, mag };
  }

  for (const [M, N, K] of [[5, 7, 33], [1, 3, 1], [3, 4, 100]] as const) {
    it(`agrees with float64 math on dequantized operands, M=${M} N=${N} K=${K}`, () => {
      const x = randomMatrix(M, K, 11 + K, 3);
      const w = randomMatrix(N, K, 13 + K);
      const bias = randomMatrix(1, N, 17);
      for (const format of FORMATS) {
        const m = quantizeMatrix(w, N, K, format);
        let xs: ArrayLike<number> = x;
        if (format !== 'f16') {
          // Dequantized activations: q * d_x per block (what the integer dot products stand for),
          // in float64 (16-bit q times a float32 d needs 40 bits).
          const a = quantizeActivations16(x, M, K);
          xs = Float64Array.from({ length: M * K }, (_, i) => {
            const r = Math.floor(i / K);
            const c = i % K;
            return a.q[r * a.paddedCols + c] * a.scales[r * (a.paddedCols / QK) + Math.floor(c / QK)];
          });
        }
        const ref = dot64(xs, dequantizeMatrix(m), M, N, K);
        const y = referenceMatmul(x, M, m, bias);
        expect(y.length).to.equal(M * N);
        for (let i = 0; i < M * N; i++) {
          const want = ref.y[i] + bias[i % N];
          // The result is float32: half an ulp of it, plus 1e-9 of the magnitude for the float64 sums.
          expect(Math.abs(y[i] - want), `${format} y[${i}]`).to.be.at.most(Math.abs(want) * 2 ** -24 + 1e-9 * (ref.mag[i] + Math.abs(bias[i % N])));
        }
        const noBias = referenceMatmul(x, M, m);
        for (let i = 0; i < M * N; i++) expect(Math.abs(noBias[i] - ref.y[i])).to.be.at.most(Math.abs(ref.y[i]) * 2 ** -24 + 1e-9 * ref.mag[i]);
      }
    });
  }

  it('q8_0 block sums are exact integers times d_x * d_w', () => {
    // x = [32767, 2] (d_x = 1, q = [32767, 2]); w = [127, -127] (d_w = 1, q = [127, -127]): 32767*127 - 2*127 = 4161155.
    const m = quantizeMatrix(new Float32Array([127, -127]), 1, 2, 'q8_0');
    expect([...referenceMatmul(new Float32Array([32767, 2]), 1, m)]).to.deep.equal([4161155]);
    expect(() => referenceMatmul(new Float32Array(3), 1, m)).to.throw(/x must be a Float32Array of M\*K = 1\*2 values, got 3/);
    expect(() => referenceMatmul(new Float32Array(2), 1, m, new Float32Array(2))).to.throw(/bias must be a Float32Array of N = 1 values/);
  });
});

describe('quantized file', () => {
  let dir = '';
  let cleanup = (): void => {};
  before(() => { ({ dir, cleanup } = tempDir('illava-quant-')); });
  after(() => cleanup());

  const MARK = 'SOURCE-FINGERPRINT-7f3a'; // a metadata value that no error message may quote

  function matrices(format: PackedFormat): [string, QuantizedMatrix][] {
    return [
      ['model.layers.0.mlp.up_proj', quantizeMatrix(randomMatrix(7, 33, 1), 7, 33, format)],
      ['lm_head', quantizeMatrix(randomMatrix(1, 1, 2), 1, 1, format)],
      ['model.layers.0.self_attn.q_proj', quantizeMatrix(randomMatrix(4, 64, 3, 100), 4, 64, format)],
    ];
  }

  function expectSame(a: QuantizedMatrix, b: QuantizedMatrix): void {
    expect([a.format, a.rows, a.cols, a.paddedCols]).to.deep.equal([b.format, b.rows, b.cols, b.paddedCols]);
    expect(Buffer.from(a.data).equals(Buffer.from(b.data))).to.equal(true);
    expect(a.scales && [...a.scales]).to.deep.equal(b.scales && [...b.scales]);
  }

  for (const format of FORMATS) {
    it(`round trip: ${format}, 3 matrices; read and readInto give the exact bytes`, () => {
      const path = join(dir, `round-${format}.safetensors`);
      const ms = matrices(format);
      writeQuantizedFile(path, format, MARK, ms);
      expect(existsSync(`${path}.tmp`)).to.equal(false);
      const f = QuantizedFile.open(path);
      try {
        expect(f.format).to.equal(format);
        expect(f.source).to.equal(MARK);
        expect(f.names).to.deep.equal(ms.map(([n]) => n));
        expect(f.info('model.layers.0.mlp.up_proj')).to.deep.equal({ rows: 7, cols: 33, paddedCols: 64 });
        expect(f.info('nope')).to.equal(undefined);
        for (const [name, m] of ms) {
          expectSame(f.read(name), m);
          const size = packedBytes(format, m.rows, m.cols);
          const data = new Uint8Array(size.data + 5).subarray(5); // an unaligned view, read in place
          const scales = format === 'f16' ? null : new Float32Array(size.scales / 4);
          f.readInto(name, data, scales);
          expectSame({ ...m, data, scales }, m);
        }
        expect(() => f.read('nope')).to.throw(/no matrix 'nope' in this file/);
        const { data } = packedBytes(format, 7, 33);
        expect(() => f.readInto('lm_head', new Uint8Array(data), null)).to.throw(/data must be a Uint8Array of exactly/);
      } finally {
        f.close();
      }
      expect(() => f.read('lm_head')).to.throw(/file is closed/);
      // A standard safetensors file: 8-byte length, JSON header (space padded), then the data, 8-aligned.
      const bytes = readFileSync(path);
      const n = Number(bytes.readBigUInt64LE(0));
      expect(n % 8).to.equal(0);
      const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[] }> & { __metadata__: Record<string, string> };
      expect(header.__metadata__).to.deep.equal({
        'illava.quantized': '1', 'illava.format': format, 'illava.source': MARK,
        'model.layers.0.mlp.up_proj.cols': '33', 'lm_head.cols': '1', 'model.layers.0.self_attn.q_proj.cols': '64',
      });
      const wantDtype = { f16: 'F16', q8_0: 'I8', q4_0: 'U8' }[format];
      expect(header['model.layers.0.mlp.up_proj.qweight']).to.deep.include({ dtype: wantDtype, shape: [7, format === 'q4_0' ? 32 : 64] });
      if (format === 'f16') {
        expect(header['lm_head.qscale']).to.equal(undefined);
        // The existing float reader opens f16 caches as they are.
        const st = SafetensorsFile.open(path);
        expect(Buffer.from(st.readBytes('lm_head.qweight')).equals(Buffer.from(ms[1][1].data))).to.equal(true);
        st.close();
      } else {
        expect(header['model.layers.0.mlp.up_proj.qscale']).to.deep.include({ dtype: 'F16', shape: [7, 2] });
      }
    });
  }

  it('moves the data when the header outgrows the reserve, and consumes a generator lazily', () => {
    const path = join(dir, 'small-reserve.safetensors');
    const ms = matrices('q8_0');
    function* gen(): Generator<[string, QuantizedMatrix]> { yield* ms; }
    writeQuantizedFile(path, 'q8_0', MARK, gen(), { headerReserve: 16 });
    const f = QuantizedFile.open(path);
    for (const [name, m] of ms) expectSame(f.read(name), m);
    f.close();
  });

  it('writer errors leave neither the file nor the .tmp', () => {
    const path = join(dir, 'bad-write.safetensors');
    const [a, b] = matrices('q8_0');
    expect(() => writeQuantizedFile(path, 'q8_0', MARK, [a, a])).to.throw(/duplicate matrix 'model.layers.0.mlp.up_proj'/);
    expect(() => writeQuantizedFile(path, 'q4_0', MARK, [b])).to.throw(/matrix 'lm_head' is q8_0, the file is q4_0/);
    const bad = { ...b[1], scales: new Float32Array([0.1]) }; // 0.1 is not an fp16 value
    expect(() => writeQuantizedFile(path, 'q8_0', MARK, [['x', bad]])).to.throw(/scale 0 .* is not a finite fp16 value/);
    expect(existsSync(path) || existsSync(`${path}.tmp`)).to.equal(false);
  });

  // ---- malformed files, built by hand (not with the writer) ----

  /** A valid q8_0 file: matrix 'w' [2, 40] (Kp 64, 2 blocks per row): I8 [2, 64] then F16 [2, 2] scales of 1. */
  function good(): { header: Record<string, unknown>; data: Buffer; meta: Record<string, string>; entry: (n: string) => Record<string, unknown> } {
    const meta: Record<string, string> = { 'illava.quantized': '1', 'illava.format': 'q8_0', 'illava.source': MARK, 'w.cols': '40' };
    const header: Record<string, unknown> = {
      __metadata__: meta,
      'w.qweight': { dtype: 'I8', shape: [2, 64], data_offsets: [0, 128] },
      'w.qscale': { dtype: 'F16', shape: [2, 2], data_offsets: [128, 136] },
    };
    const data = Buffer.concat([Buffer.from(Array.from({ length: 128 }, (_, i) => (i * 37) & 0xff)), u16le([0x3c00, 0x3c00, 0x3c00, 0x3c00])]);
    return { header, data, meta, entry: (n) => header[n] as Record<string, unknown> };
  }

  let count = 0;
  /** Writes the bytes, opens (and reads 'w'), returns the error message; checks it is one line without file contents. */
  function errorOf(bytes: Uint8Array | string, readToo = false): string {
    const path = typeof bytes === 'string' ? bytes : writeFile(dir, `bad-${count++}.safetensors`, bytes);
    try {
      const f = QuantizedFile.open(path);
      try { if (readToo) f.read('w'); } finally { f.close(); }
    } catch (e) {
      const msg = (e as Error).message;
      expect(msg.startsWith(`${path}: `), msg).to.equal(true);
      expect(msg, 'one line, no raw bytes').to.not.match(/[\x00-\x1f\x7f-\uffff]/);
      expect(msg).to.not.include(MARK);
      expect(msg).to.not.include('"dtype"');
      return msg;
    }
    throw new Error(`expected ${path} to be rejected`);
  }

  it('the hand-built baseline is valid', () => {
    const g = good();
    const path = writeFile(dir, 'good.safetensors', safetensorsBytes(g.header, g.data));
    const f = QuantizedFile.open(path);
    expect(f.info('w')).to.deep.equal({ rows: 2, cols: 40, paddedCols: 64 });
    expect([...(f.read('w').scales ?? [])]).to.deep.equal([1, 1, 1, 1]);
    f.close();
  });

  it('truncated files', () => {
    const g = good();
    const full = safetensorsBytes(g.header, g.data);
    expect(errorOf(full.subarray(0, 5))).to.match(/truncated file: 5 bytes, shorter than the 8-byte header length/);
    expect(errorOf(full.subarray(0, 40))).to.match(/truncated file: header length \d+ exceeds the 32 bytes after the 8-byte length/);
    expect(errorOf(full.subarray(0, full.length - 1))).to.match(/truncated file or offset out of bounds: tensor 'w.qscale' data_offsets \[128, 136\] end past the 135-byte data section/);
    expect(errorOf(full.subarray(0, full.length - 100))).to.match(/truncated file or offset out of bounds/);
    expect(errorOf(safetensorsBytes(g.header, g.data, 0n))).to.match(/header length is 0/);
    expect(errorOf(safetensorsBytes(g.header, g.data, 2n ** 63n))).to.match(/header length 9223372036854775808 is absurd/);
  });

  it('not a regular file, missing file, not JSON, duplicate keys', () => {
    const sub = join(dir, 'a-directory.safetensors');
    mkdirSync(sub);
    expect(errorOf(sub)).to.match(/not a regular file/);
    expect(errorOf(join(dir, 'missing.safetensors'))).to.match(/cannot open \(ENOENT\)/);
    const notJson = errorOf(safetensorsBytes(`{"w.qweight": ${MARK}`));
    expect(notJson).to.match(/header is not valid JSON$/);
    expect(errorOf(safetensorsBytes('[1, 2]'))).to.match(/header is not a JSON object/);
    const g = good();
    const text = JSON.stringify(g.header).replace('}}', `}, "w.qscale": ${JSON.stringify(g.header['w.qscale'])}}`);
    expect(errorOf(safetensorsBytes(text, g.data))).to.match(/duplicate key 'w.qscale' in the header/);
  });

  it('metadata: illava.quantized, illava.format, .cols', () => {
    let g = good();
    delete g.meta['illava.quantized'];
    expect(errorOf(safetensorsBytes(g.header, g.data))).to.match(/missing __metadata__ 'illava.quantized'/);
    g = good();
    g.meta['illava.quantized'] = '2';
    expect(errorOf(safetensorsBytes(g.header, g.data))).to.match(/'illava.quantized' is not "1"/);
    g = good();
    g.meta['illava.format'] = `q5_k ${MARK}`;
    expect(errorOf(safetensorsBytes(g.header, g.data))).to.match(/'illava.format' is not one of f16, q8_0, q4_0/);
    g = good();
    delete g.meta['w.cols'];
    expect(errorOf(safetensorsBytes(g.header, g.data))).to.match(/missing __metadata__ 'w.cols' for tensor 'w.qweight'/);
    g = good();
    g.meta['w.cols'] = '40.0';
    expect(errorOf(safetensorsBytes(g.header, g.data))).to.match(/'w.cols' is not a positive integer/);
    g = good();
    g.meta['w.cols'] = '70'; // Kp 96, but the qweight is [2, 64]
    expect(errorOf(safetensorsBytes(g.header, g.data))).to.match(/tensor 'w.qweight' shape \[2,64\] disagrees with cols 70 \(expected \[N, 96\]\)/);
    g = good();
    g.meta['v.cols'] = '3';
    expect(errorOf(safetensorsBytes(g.header, g.data))).to.match(/__metadata__ 'v.cols' names no matrix/);
  });

  it('tensors: dtype, block count, missing qscale, offsets', () => {
    let g = good();
    g.entry('w.qweight').dtype = 'U8'; // same size, wrong for q8_0
    expect(errorOf(safetensorsBytes(g.header, g.data))).to.match(/tensor 'w.qweight' has dtype U8, q8_0 needs I8 \(wrong dtype\)/);
    g = good();
    g.entry('w.qscale').dtype = 'BF16';
    expect(errorOf(safetensorsBytes(g.header, g.data))).to.match(/tensor 'w.qscale': dtype BF16 is not used by quantized files/);
    g = good();
    g.entry('w.qscale').dtype = MARK;
    expect(errorOf(safetensorsBytes(g.header, g.data))).to.match(/tensor 'w.qscale': unknown dtype/);
    g = good();
    g.entry('w.qscale').shape = [2, 3]; // 3 blocks per row for Kp 64 (data extended to match the shape)
    g.entry('w.qscale').data_offsets = [128, 140];
    expect(errorOf(safetensorsBytes(g.header, Buffer.concat([g.data, Buffer.alloc(4)])))).to.match(/tensor 'w.qscale' shape \[2,3\] is not \[2, 2\] \(wrong block count\)/);
    g = good();
    g.entry('w.qscale').shape = [2, 4]; // shape and offsets disagree
    expect(errorOf(safetensorsBytes(g.header, g.data))).to.match(/tensor 'w.qscale': shape \[2,4\] with dtype F16 needs 16 bytes but data_offsets \[128, 136\] hold 8/);
    g = good();
    delete g.header['w.qscale'];
    expect(errorOf(safetensorsBytes(g.header, g.data.subarray(0, 128)))).to.match(/missing tensor 'w.qscale'/);
    g = good();
    g.entry('w.qscale').data_offsets = [128.5, 136];
    expect(errorOf(safetensorsBytes(g.header, g.data))).to.match(/data_offsets must be \[begin, end\], non-negative integers/);
    g = good();
    g.entry('w.qscale').data_offsets = [130, 138]; // a 2-byte hole
    expect(errorOf(safetensorsBytes(g.header, Buffer.concat([g.data, Buffer.alloc(2)])))).to.match(/hole before tensor 'w.qscale': bytes \[128, 130\) .*not contiguous/);
    g = good();
    g.entry('w.qscale').data_offsets = [120, 128]; // overlaps the qweight
    expect(errorOf(safetensorsBytes(g.header, g.data.subarray(0, 128)))).to.match(/overlap .*not contiguous/);
    g = good();
    expect(errorOf(safetensorsBytes(g.header, Buffer.concat([g.data, Buffer.alloc(8)])))).to.match(/8 bytes after the last tensor belong to no tensor/);
    g = good();
    g.header['w.bias'] = { dtype: 'F16', shape: [0], data_offsets: [136, 136] };
    expect(errorOf(safetensorsBytes(g.header, g.data))).to.match(/unexpected tensor 'w.bias'/);
  });

  it('scales that decode to Infinity or NaN: "bad scale bytes" on read', () => {
    for (const word of [0x7c00, 0xfc00, 0x7e00]) {
      const g = good();
      g.data.writeUInt16LE(word, 128 + 2 * 3); // row 1, block 1
      expect(errorOf(safetensorsBytes(g.header, g.data), true)).to.match(/tensor 'w.qscale' scale of row 1, block 1 is NaN or Infinity \(bad scale bytes\)/);
    }
  });
});
