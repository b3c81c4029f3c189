// F16 / BF16 -> F32 and F32 -> F16 (round to nearest, ties to even), against values worked out
// by hand from the IEEE 754 bit layouts.
import { expect } from 'chai';
import { bf16BytesToFloat32, f16BitsToNumber, f16BytesToFloat32, f32BytesToFloat32, float32ToF16Bits, numberToF16Bits } from '../weights/index.js';
import { f32le, u16le } from './helpers/weights-files.js';

/** `bytes` copied to an odd byteOffset, so typed-array views of it would be misaligned. */
function unaligned(bytes: Uint8Array): Uint8Array {
  const buf = new Uint8Array(bytes.length + 1);
  buf.set(bytes, 1);
  return buf.subarray(1);
}

describe('weights: dtype conversion', () => {
  // binary16: sign 1 | exponent 5 (bias 15) | mantissa 10.
  const f16Cases: Array<[number, number]> = [
    [0x3c00, 1],
    [0xc000, -2],
    [0x7bff, 65504], // (2 - 2^-10) * 2^15, largest finite
    [0x0001, 2 ** -24], // smallest subnormal
    [0x03ff, 1023 * 2 ** -24], // largest subnormal
    [0x0400, 2 ** -14], // smallest normal
    [0x3555, 0.333251953125], // (1 + 341/1024) / 4
    [0x7c00, Infinity],
    [0xfc00, -Infinity],
    [0x0000, 0],
  ];

  it('F16 -> F32 on hand-computed values, NaN and -0', () => {
    const out = f16BytesToFloat32(u16le([...f16Cases.map((c) => c[0]), 0x7e00, 0xfc01, 0x8000]));
    f16Cases.forEach(([h, v], i) => expect(out[i], `0x${h.toString(16)}`).to.equal(v));
    expect(Number.isNaN(out[f16Cases.length])).to.equal(true);
    expect(Number.isNaN(out[f16Cases.length + 1])).to.equal(true);
    expect(Object.is(out[f16Cases.length + 2], -0)).to.equal(true);
    expect(f16BitsToNumber(0x3c01)).to.equal(1 + 2 ** -10);
  });

  it('BF16 -> F32 (the high half of a float32)', () => {
    // 0x4049 -> 0x40490000 = 1.5703125 * 2 = 3.140625; 0x0001 -> float32 subnormal 2^16 * 2^-149.
    const out = bf16BytesToFloat32(u16le([0x3f80, 0x4049, 0xc000, 0x7f80, 0xff80, 0x0001, 0x7fc0]));
    expect(Array.from(out.subarray(0, 6))).to.deep.equal([1, 3.140625, -2, Infinity, -Infinity, 2 ** -133]);
    expect(Number.isNaN(out[6])).to.equal(true);
  });

  it('handles unaligned byte offsets', () => {
    expect(Array.from(f16BytesToFloat32(unaligned(u16le([0x3c00, 0xc000]))))).to.deep.equal([1, -2]);
    expect(Array.from(bf16BytesToFloat32(unaligned(u16le([0x3f80, 0x4049]))))).to.deep.equal([1, 3.140625]);
    expect(Array.from(f32BytesToFloat32(unaligned(f32le([0.5, -7]))))).to.deep.equal([0.5, -7]);
    expect(() => f16BytesToFloat32(new Uint8Array(3))).to.throw(/not a multiple of 2/);
  });

  it('F32 -> F16 rounds to nearest, ties to even', () => {
    const cases: Array<[number, number, string]> = [
      [1, 0x3c00, 'exact'],
      [-2, 0xc000, 'exact'],
      [0.1, 0x2e66, '1.6 * 2^-4: mantissa 614.4 -> 614'],
      [1 / 3, 0x3555, 'mantissa 341.33 -> 341'],
      [65504, 0x7bff, 'largest finite'],
      [65519, 0x7bff, 'below the tie 65520'],
      [65520, 0x7c00, 'tie between 65504 (odd mantissa) and 65536: even = overflow to Infinity'],
      [1e6, 0x7c00, 'overflow'],
      [1 + 2 ** -11, 0x3c00, 'tie between 0x3c00 (even) and 0x3c01'],
      [1 + 3 * 2 ** -11, 0x3c02, 'tie between 0x3c01 and 0x3c02 (even)'],
      [1 + 2 ** -11 + 2 ** -20, 0x3c01, 'just above the tie'],
      [2 ** -24, 0x0001, 'smallest subnormal'],
      [2 ** -25, 0x0000, 'tie between 0 (even) and 2^-24'],
      [2 ** -25 * (1 + 2 ** -10), 0x0001, 'just above that tie'],
      [3 * 2 ** -25, 0x0002, '1.5 units: tie -> 2 (even)'],
      [5 * 2 ** -25, 0x0002, '2.5 units: tie -> 2 (even)'],
      [2 ** -14 - 2 ** -25, 0x0400, 'tie between largest subnormal 0x03ff and smallest normal 0x0400 (even)'],
      [2 ** -30, 0x0000, 'underflow'],
      [-0, 0x8000, 'negative zero'],
      [Infinity, 0x7c00, 'inf'],
      [-Infinity, 0xfc00, '-inf'],
    ];
    for (const [x, h, why] of cases) expect(numberToF16Bits(x), `${x}: ${why}`).to.equal(h);
    const nan = numberToF16Bits(NaN);
    expect(nan & 0x7c00).to.equal(0x7c00);
    expect(nan & 0x03ff).to.not.equal(0);
    const bulk = float32ToF16Bits(new Float32Array(cases.map((c) => c[0])));
    expect(Array.from(bulk)).to.deep.equal(cases.map((c) => c[1]));
  });

  it('F16 -> F32 -> F16 is the identity for every non-NaN half', () => {
    for (let h = 0; h < 65536; h++) {
      if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0) continue;
      if (numberToF16Bits(f16BitsToNumber(h)) !== h) expect.fail(`0x${h.toString(16)} does not round-trip`);
    }
  });
});
