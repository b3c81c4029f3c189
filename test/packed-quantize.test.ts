// The load-time quantizer kernels (kernels/quantize.ts via layers/packed/quantize-into.ts) write
// exactly the bytes of the TypeScript reference (weights/quantizeMatrix, itself checked against
// llama.cpp's C functions in quant-format.test.ts), across io-region chunks, for shapes that are
// not multiples of the block, and with the blocks where rounding rules matter; bad values get the
// reference's one-line error.
import { expect } from 'chai';
import { PackedLinear, PackedRuntime } from '../layers/packed/index.js';
import { quantizeMatrix, type PackedFormat } from '../weights/index.js';
import { randomUniform } from '../scripts/random-model.js';

/** Random values with edge blocks: exact halves of the q8_0 step, all zeros with a -0, a tie for the largest magnitude, an fp16-subnormal scale. */
function edgeMatrix(N: number, K: number, seed: number): Float32Array {
  const w = randomUniform(N * K, 1, seed);
  const put = (r: number, vals: number[]) => vals.forEach((v, j) => { if (j < K) w[r * K + j] = v; });
  put(0, Array.from({ length: 32 }, (_, j) => (j === 0 ? 127 : j - 15.5))); // d = 1: x.5 values round away from zero
  put(1, Array.from({ length: 32 }, (_, j) => (j === 3 ? -0 : 0)));
  put(2, Array.from({ length: 32 }, (_, j) => (j === 5 ? -3 : j === 9 ? 3 : 0.1 * j))); // q4_0: the first of -3 / 3 sets the sign
  put(3, Array.from({ length: 32 }, (_, j) => 1e-6 * (j - 16))); // scale below fp16's normal range
  return w;
}

describe('packed quantizer kernels: the reference bytes at load', function () {
  this.timeout(60000);
  const runtime = new PackedRuntime(1, 1 << 16); // 64 KiB io region: several chunks per matrix
  after(() => runtime.dispose());

  for (const format of ['q8_0', 'q4_0'] as PackedFormat[]) {
    for (const [N, K] of [[7, 33], [600, 33], [40, 4096], [5, 1], [9, 96]]) {
      it(`${format} [${N}, ${K}]: bytes and scales equal the reference`, () => {
        const w = edgeMatrix(N, K, N + K);
        const layer = PackedLinear.fromTorch(runtime, format, w, N, K, null);
        const got = layer.matrix();
        const want = quantizeMatrix(w, N, K, format);
        expect(Buffer.from(got.data).equals(Buffer.from(want.data))).to.equal(true);
        expect(Array.from(got.scales as Float32Array).map((v) => Object.is(v, -0) ? '-0' : v)).to.deep.equal(Array.from(want.scales as Float32Array).map((v) => Object.is(v, -0) ? '-0' : v));
        layer.dispose();
      });
    }

    it(`${format}: stacked parts land in their rows`, () => {
      const a = randomUniform(3 * 40, 1, 1);
      const b = randomUniform(5 * 40, 2, 2);
      const layer = PackedLinear.fromTorchParts(runtime, format, [{ rows: 3, weight: () => a }, { rows: 5, weight: () => b }], 40, null);
      const both = new Float32Array(8 * 40);
      both.set(a);
      both.set(b, a.length);
      expect(Buffer.from(layer.matrix().data).equals(Buffer.from(quantizeMatrix(both, 8, 40, format).data))).to.equal(true);
      layer.dispose();
    });

    it(`${format}: a NaN, an infinity or a scale beyond fp16 gets the reference's error`, () => {
      for (const [bad, message] of [[NaN, /non-finite value at row 2, col 5/], [Infinity, /non-finite value at row 2, col 5/], [1e10, /block scale .* overflows fp16 at row 2, block 0/]] as const) {
        const w = randomUniform(4 * 33, 1, 3);
        w[2 * 33 + 5] = bad;
        expect(() => PackedLinear.fromTorch(runtime, format, w, 4, 33, null)).to.throw(message);
      }
      expect(() => PackedLinear.fromTorch(runtime, format, new Float32Array(5), 2, 3, null)).to.throw(/weight has 5 values, expected rows\*cols = 2\*3 = 6/);
    });
  }
});
