// MergePlan application, SourceMap composition and the rounding helper.
// Expected values are written by hand or computed with plain loops over JS arrays.
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'chai';
import { BACKENDS, randomRows, bits } from './helpers/merge-data.js';
import {
  applyPlan, applyPlanSum, applyPlanToArray, composePlans, identityPlan, keptIndices, restrictPlan, roundHalfEven, SourceMap,
  type MergePlan,
} from '../merge/index.js';




for (const backend of BACKENDS) {
  describe(`merge/plan [${backend}]`, () => {
    before(async () => {
      expect(await tf.setBackend(backend)).to.equal(true);
    });

    // 7 inputs -> 5 outputs: 0 kept, 2 kept, 3 <- 0.5*1 + 0.25*3 + 0.25*5, 4 kept, 6 <- copy of 6.
    const plan: MergePlan = {
      inputCount: 7,
      rows: [
        { anchor: 0, sources: [0], weights: [1] },
        { anchor: 2, sources: [2], weights: [1] },
        { anchor: 3, sources: [1, 3, 5], weights: [0.5, 0.25, 0.25] },
        { anchor: 4, sources: [4], weights: [1] },
        { anchor: 6, sources: [6], weights: [1] },
      ],
    };

    for (const method of ['auto', 'gather', 'copy'] as const) {
      it(`applyPlan (${method}) copies kept rows bit-for-bit and mixes merged rows`, () => {
        const rows = randomRows(7, 5, 1);
        const x = tf.tensor2d(rows);
        const before = tf.memory().numTensors;
        const y = applyPlan(plan, x, method);
        expect(tf.memory().numTensors).to.equal(before + 1);
        const out = y.arraySync();
        expect(y.shape).to.deep.equal([5, 5]);
        for (const [o, i] of [[0, 0], [1, 2], [3, 4], [4, 6]]) {
          expect(bits(out[o])).to.deep.equal(bits(rows[i]), `row ${o}`);
        }
        const expected = rows[1].map((_, c) => 0.5 * rows[1][c] + 0.25 * rows[3][c] + 0.25 * rows[5][c]);
        out[2].forEach((v, c) => expect(v).to.be.closeTo(expected[c], 1e-5));
        // Kept-only plan (no matMul), and an int32 tensor.
        const drop: MergePlan = { inputCount: 7, rows: [{ anchor: 5, sources: [5], weights: [1] }, { anchor: 1, sources: [1], weights: [1] }] };
        const z = applyPlan(drop, x, method);
        expect(z.arraySync().map(bits)).to.deep.equal([bits(rows[5]), bits(rows[1])]);
        const ints = tf.tensor2d([[1], [2], [3], [4], [5], [6], [7]], [7, 1], 'int32');
        const zi = applyPlan(drop, ints, method);
        expect(zi.dtype).to.equal('int32');
        expect(zi.arraySync()).to.deep.equal([[6], [2]]);
        tf.dispose([x, y, z, ints, zi]);
      });
    }

    it('identity plan returns the input exactly, as a new tensor', () => {
      const rows = randomRows(4, 3, 2);
      const x = tf.tensor2d(rows);
      const y = applyPlan(identityPlan(4), x);
      expect(y).to.not.equal(x);
      expect(y.arraySync().map(bits)).to.deep.equal(rows.map(bits));
      tf.dispose([x, y]);
    });

    it('applyPlan leaves no intermediate tensor and checks the input size', () => {
      const x = tf.tensor2d(randomRows(7, 2, 3));
      const before = tf.memory().numTensors;
      applyPlan(plan, x).dispose();
      expect(tf.memory().numTensors).to.equal(before);
      expect(() => applyPlan(plan, tf.zeros([6, 2]) as tf.Tensor2D)).to.throw(/expects 7 input tokens, got 6/);
      x.dispose();
    });

    it('applyPlanSum adds up sources (sizes), applyPlanToArray takes the anchor', () => {
      const s = tf.tensor1d([1, 2, 3, 4, 5, 6, 7]);
      const out = applyPlanSum(plan, s);
      expect(Array.from(out.dataSync())).to.deep.equal([1, 3, 2 + 4 + 6, 5, 7]);
      expect(applyPlanToArray(plan, [10, 11, 12, 13, 14, 15, 16])).to.deep.equal([10, 12, 13, 14, 16]);
      expect(keptIndices(plan)).to.deep.equal([0, 2, 3, 4, 6]);
      tf.dispose([s, out]);
    });
  });
}

describe('merge/plan (plain)', () => {
  it('SourceMap composes two merges with the plans weights', () => {
    // Merge 1: patches 0,1 -> token at 1 (weights 0.25, 0.75); 2, 3 kept.
    const p1: MergePlan = {
      inputCount: 4,
      rows: [
        { anchor: 1, sources: [0, 1], weights: [0.25, 0.75] },
        { anchor: 2, sources: [2], weights: [1] },
        { anchor: 3, sources: [3], weights: [1] },
      ],
    };
    // Merge 2: tokens 0 and 2 -> token at 2 (0.5 each); token 1 kept.
    const p2: MergePlan = {
      inputCount: 3,
      rows: [
        { anchor: 1, sources: [1], weights: [1] },
        { anchor: 2, sources: [0, 2], weights: [0.5, 0.5] },
      ],
    };
    const m = SourceMap.identity(4).apply(p1).apply(p2);
    expect(m.tokens).to.equal(2);
    expect([...m.composition(0)]).to.deep.equal([[2, 1]]);
    expect(Object.fromEntries(m.composition(1))).to.deep.equal({ 0: 0.125, 1: 0.375, 3: 0.5 });
    expect(Array.from(m.dense())).to.deep.equal([0, 0, 1, 0, 0.125, 0.375, 0, 0.5]);
    expect(Array.from(m.tokenOfPatch())).to.deep.equal([1, 1, 0, 1]);
    expect(m.counts()).to.deep.equal([1, 3]);
    // Dropping token 0 loses patch 2.
    const dropped = m.apply({ inputCount: 2, rows: [{ anchor: 1, sources: [1], weights: [1] }] });
    expect(Array.from(dropped.tokenOfPatch())).to.deep.equal([0, 0, -1, 0]);
    // composePlans gives the same map in one step.
    const once = SourceMap.identity(4).apply(composePlans(p1, p2));
    expect(Array.from(once.dense())).to.deep.equal(Array.from(m.dense()));
  });

  it('tokenOfPatch: equal weights go to the lower token', () => {
    const m = SourceMap.identity(2).apply({
      inputCount: 2,
      rows: [
        { anchor: 0, sources: [0], weights: [0.5] },
        { anchor: 1, sources: [0, 1], weights: [0.5, 0.5] },
      ],
    });
    expect(Array.from(m.tokenOfPatch())).to.deep.equal([0, 1]);
  });

  it('restrictPlan re-indexes a span and rejects rows mixing inside and outside', () => {
    const plan: MergePlan = {
      inputCount: 6,
      rows: [
        { anchor: 0, sources: [0], weights: [1] },
        { anchor: 2, sources: [3, 2], weights: [0.5, 0.5] },
        { anchor: 4, sources: [4], weights: [1] },
        { anchor: 5, sources: [5], weights: [1] },
      ],
    };
    expect(restrictPlan(plan, 1, 5)).to.deep.equal({
      inputCount: 4,
      rows: [
        { anchor: 1, sources: [2, 1], weights: [0.5, 0.5] },
        { anchor: 3, sources: [3], weights: [1] },
      ],
    });
    expect(() => restrictPlan(plan, 2, 3)).to.throw(/outside/);
  });

  it('roundHalfEven is Python round', () => {
    expect([0.5, 1.5, 2.5, 3.5, -1.5, 100.8, 100.5, 2.4999].map(roundHalfEven)).to.deep.equal([0, 2, 2, 4, -2, 101, 100, 2]);
  });
});
