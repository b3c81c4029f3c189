// iLLaVA vision and language merges and FastV, on hand-built inputs.
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'chai';
import { BACKENDS, SIX_TOKEN_HEADS, applied, appliedSequence, constantRowsAttn, rng, randomRows, bits } from './helpers/merge-data.js';
import { fastvPrune, illavaLanguage, illavaVision, removedCount, type LanguageInput } from '../merge/index.js';

/** sum_j w_j x_j / sum_j w_j over plain arrays. */
const wmean = (rows: number[][], idx: number[], w: number[]) => {
  const total = w.reduce((a, b) => a + b, 0);
  return rows[0].map((_, c) => idx.reduce((acc, i, j) => acc + w[j] * rows[i][c], 0) / total);
};
const expectClose = (got: number[], want: number[], tol = 1e-5) => got.forEach((v, c) => expect(v).to.be.closeTo(want[c], tol));

for (const backend of BACKENDS) {
  describe(`merge/illava-vision [${backend}]`, () => {
    before(async () => {
      expect(await tf.setBackend(backend)).to.equal(true);
    });

    const heads = SIX_TOKEN_HEADS; // received = mean = [0.3, 0.11, 0.2, 0.05, 0.15, 0.19]

    it('N=6 with CLS, r=2: groups the 3 least attended with weights 3,2,1', () => {
      const rows = randomRows(6, 4, 10);
      const hidden = tf.tensor2d(rows);
      const attn = constantRowsAttn(heads);
      const out = applied(illavaVision({ attn, remove: 2, clsToken: true }), hidden);
      // Ascending (CLS excluded): 3 (0.05), 1 (0.11), 4 (0.15) | 5 (0.19), 2 (0.2).
      expect(out.group).to.not.equal(null);
      expect(out.group!.sources).to.deep.equal([3, 1, 4]);
      expect(out.group!.destination).to.equal(4);
      expectClose(out.group!.weights, [3 / 6, 2 / 6, 1 / 6], 1e-12);
      expect(out.keptIndices).to.deep.equal([0, 2, 4, 5]);
      expect(out.scores[0]).to.equal(Infinity);
      expectClose(Array.from(out.scores.slice(1)), [0.11, 0.2, 0.05, 0.15, 0.19], 1e-6);
      const got = out.hidden.arraySync();
      expect(out.hidden.shape).to.deep.equal([4, 4]);
      expect(bits(got[0])).to.deep.equal(bits(rows[0])); // CLS first, untouched
      expect(bits(got[1])).to.deep.equal(bits(rows[2]));
      expect(bits(got[3])).to.deep.equal(bits(rows[5]));
      expectClose(got[2], wmean(rows, [3, 1, 4], [3, 2, 1]));
      tf.dispose([hidden, attn, out.hidden]);
    });

    it('agrees with a plain-array reference on random softmax attention', () => {
      const n = 9;
      const rows = randomRows(n, 3, 11);
      const logits = randomRows(3 * n, n, 12);
      const probs = logits.map((l) => {
        const e = l.map(Math.exp);
        const z = e.reduce((a, b) => a + b, 0);
        return e.map((v) => v / z);
      });
      const received = Array.from({ length: n }, (_, k) => probs.reduce((a, p) => a + p[k], 0) / (3 * n));
      const asc = [...Array(n).keys()].filter((i) => i > 0).sort((a, b) => received[a] - received[b]);
      const r = 3;
      const group = asc.slice(0, r + 1);
      const hidden = tf.tensor2d(rows);
      const attn = tf.tensor3d(Array.from({ length: 3 }, (_, h) => probs.slice(h * n, (h + 1) * n)));
      const out = applied(illavaVision({ attn, remove: r, clsToken: true }), hidden);
      expect(out.group!.sources).to.deep.equal(group);
      const kept = [...Array(n).keys()].filter((i) => !group.slice(0, r).includes(i));
      expect(out.keptIndices).to.deep.equal(kept);
      const got = out.hidden.arraySync();
      kept.forEach((i, o) => {
        if (i === group[r]) expectClose(got[o], wmean(rows, group, [4, 3, 2, 1]));
        else expect(bits(got[o])).to.deep.equal(bits(rows[i]));
      });
      tf.dispose([hidden, attn, out.hidden]);
    });

    it('without CLS, token 0 is a candidate', () => {
      const hidden = tf.tensor2d(randomRows(6, 2, 13));
      const attn = constantRowsAttn([[0.01, 0.2, 0.2, 0.2, 0.2, 0.19]]);
      const out = applied(illavaVision({ attn, remove: 1, clsToken: false }), hidden);
      expect(out.group!.sources).to.deep.equal([0, 5]);
      expect(out.keptIndices).to.deep.equal([1, 2, 3, 4, 5]);
      tf.dispose([hidden, attn, out.hidden]);
    });

    it('tie rule: equal scores, the lower index ranks higher (highest indices merge first)', () => {
      const rows = randomRows(6, 3, 14);
      const hidden = tf.tensor2d(rows);
      const attn = constantRowsAttn([Array(6).fill(1 / 6), Array(6).fill(1 / 6)]);
      const out = applied(illavaVision({ attn, remove: 2, clsToken: true }), hidden);
      expect(out.group!.sources).to.deep.equal([5, 4, 3]);
      expect(out.group!.destination).to.equal(3);
      expect(out.keptIndices).to.deep.equal([0, 1, 2, 3]);
      expectClose(out.hidden.arraySync()[3], wmean(rows, [5, 4, 3], [3, 2, 1]));
      tf.dispose([hidden, attn, out.hidden]);
    });

    it('r = 0 is the identity, bit-for-bit; too large r throws', () => {
      const rows = randomRows(6, 3, 15);
      const hidden = tf.tensor2d(rows);
      const attn = constantRowsAttn(heads);
      const out = applied(illavaVision({ attn, remove: 0, clsToken: true }), hidden);
      expect(out.keptIndices).to.deep.equal([0, 1, 2, 3, 4, 5]);
      expect(out.group).to.equal(null);
      expect(out.hidden.arraySync().map(bits)).to.deep.equal(rows.map(bits));
      expect(() => illavaVision({ attn, remove: 5, clsToken: true })).to.throw(/cannot remove 5 of 5 candidate tokens/);
      expect(applied(illavaVision({ attn, remove: 4, clsToken: true }), hidden).keptIndices).to.deep.equal([0, 2]);
      expect(() => illavaVision({ attn, remove: 1.5, clsToken: true })).to.throw(/integer/);
      tf.dispose([hidden, attn, out.hidden]);
    });
  });

  describe(`merge/illava-language + fastv [${backend}]`, () => {
    before(async () => {
      expect(await tf.setBackend(backend)).to.equal(true);
    });

    // T = 13: text 0-1, span A = [2, 7), text 7-8, span B = [9, 12), text 12 (last prompt token).
    const mean = [0.2, 0.1, 0.05, 0.02, 0.08, 0.01, 0.04, 0.1, 0.09, 0.03, 0.06, 0.02, 0.2];
    const delta = [0, 0, 0.01, -0.01, 0.005, -0.005, 0, 0, 0, 0.01, 0, -0.01, 0];
    const spans: Array<[number, number]> = [[2, 7], [9, 12]];
    const positionIds = Array.from({ length: 13 }, (_, i) => 100 + i);
    const make = (keep: number, seed: number) => {
      const rows = randomRows(13, 4, seed);
      const input: LanguageInput & { hidden: tf.Tensor2D; positionIds: number[] } = {
        hidden: tf.tensor2d(rows),
        lastRowAttn: tf.tensor2d([mean.map((m, i) => m + delta[i]), mean.map((m, i) => m - delta[i])]),
        spans,
        keep,
        positionIds,
      };
      return { rows, input, dispose: () => tf.dispose([input.hidden, input.lastRowAttn]) };
    };

    it('illavaLanguage: per span groups, text untouched, position ids with gaps, new spans', () => {
      const { rows, input, dispose } = make(0.6, 20);
      const out = appliedSequence(illavaLanguage(input), input);
      // A: r = round(5 * 0.4) = 2; descending 4, 2, 6, 3, 5 -> group 6 (w1), 3 (w2), 5 (w3) -> dest 6.
      // B: r = round(3 * 0.4) = round(1.2) = 1; descending 10, 9, 11 -> group 9 (w1), 11 (w2) -> dest 9.
      expect(out.groups.map((g) => g.removed)).to.deep.equal([2, 1]);
      expect(out.groups[0].group!.sources).to.deep.equal([5, 3, 6]);
      expect(out.groups[1].group!.sources).to.deep.equal([11, 9]);
      expect(out.keptIndices).to.deep.equal([0, 1, 2, 4, 6, 7, 8, 9, 10, 12]);
      expect(out.positionIds).to.deep.equal([100, 101, 102, 104, 106, 107, 108, 109, 110, 112]);
      expect(out.spans).to.deep.equal([[2, 5], [7, 9]]);
      const got = out.hidden.arraySync();
      out.keptIndices.forEach((i, o) => {
        if (i === 6) expectClose(got[o], wmean(rows, [6, 3, 5], [1, 2, 3]));
        else if (i === 9) expectClose(got[o], wmean(rows, [9, 11], [1, 2]));
        else expect(bits(got[o])).to.deep.equal(bits(rows[i]), `token ${i}`);
      });
      tf.dispose(out.hidden);
      dispose();
    });

    it('fastvPrune keeps the same set, drops without recycling', () => {
      const { rows, input, dispose } = make(0.6, 21);
      const out = appliedSequence(fastvPrune(input), input);
      expect(out.groups.map((g) => g.dropped)).to.deep.equal([[5, 3], [11]]);
      expect(out.keptIndices).to.deep.equal([0, 1, 2, 4, 6, 7, 8, 9, 10, 12]);
      expect(out.positionIds).to.deep.equal([100, 101, 102, 104, 106, 107, 108, 109, 110, 112]);
      expect(out.spans).to.deep.equal([[2, 5], [7, 9]]);
      expect(out.hidden.arraySync().map(bits)).to.deep.equal(out.keptIndices.map((i) => bits(rows[i])));
      tf.dispose(out.hidden);
      dispose();
    });

    it('keep = 1 is the identity, bit-for-bit', () => {
      for (const fn of [illavaLanguage, fastvPrune]) {
        const { rows, input, dispose } = make(1, 22);
        const out = appliedSequence(fn(input), input);
        expect(out.keptIndices).to.deep.equal([...Array(13).keys()]);
        expect(out.positionIds).to.deep.equal(positionIds);
        expect(out.spans).to.deep.equal(spans);
        expect(out.hidden.arraySync().map(bits)).to.deep.equal(rows.map(bits));
        tf.dispose(out.hidden);
        dispose();
      }
    });

    it('tie rule: equal scores in a span, the lower index ranks higher', () => {
      const hidden = tf.tensor2d(randomRows(6, 2, 23));
      const lastRowAttn = tf.tensor2d([[0.5, 0.1, 0.1, 0.1, 0.1, 0.1]]);
      const input = { hidden, lastRowAttn, spans: [[1, 5]] as Array<[number, number]>, keep: 0.5, positionIds: [0, 1, 2, 3, 4, 5] };
      const il = appliedSequence(illavaLanguage(input), input);
      expect(il.groups[0].group!.sources).to.deep.equal([4, 3, 2]);
      expect(il.keptIndices).to.deep.equal([0, 1, 2, 5]);
      const fv = appliedSequence(fastvPrune(input), input);
      expect(fv.keptIndices).to.deep.equal([0, 1, 2, 5]);
      tf.dispose([hidden, lastRowAttn, il.hidden, fv.hidden]);
    });

    it('counts: 0.65 of 288 keeps 187, 0.5 of 576 keeps 288 (Python round)', () => {
      expect(removedCount(288, 0.65)).to.equal(101);
      expect(removedCount(576, 0.5)).to.equal(288);
      expect(removedCount(5, 0.5)).to.equal(2); // round(2.5) = 2
      expect(removedCount(7, 0.5)).to.equal(4); // round(3.5) = 4
      expect(removedCount(10, 3)).to.equal(7); // integer count kept
      expect(removedCount(1, 0.1)).to.equal(0); // one token always survives
      expect(() => removedCount(10, 0)).to.throw(/keep must be/);
      expect(() => removedCount(10, 2.5)).to.throw(/keep must be/);
      const t = 2 + 288 + 3;
      const hidden = tf.zeros([t, 2]) as tf.Tensor2D;
      const r = rng(24);
      const lastRowAttn = tf.tensor2d([Array.from({ length: t }, () => r())]);
      const input = { hidden, lastRowAttn, spans: [[2, 290]] as Array<[number, number]>, keep: 0.65, positionIds: [...Array(t).keys()] };
      const il = appliedSequence(illavaLanguage(input), input);
      const fv = appliedSequence(fastvPrune(input), input);
      expect(il.spans).to.deep.equal([[2, 189]]);
      expect(fv.keptIndices).to.deep.equal(il.keptIndices);
      expect(il.hidden.shape).to.deep.equal([2 + 187 + 3, 2]);
      tf.dispose([hidden, lastRowAttn, il.hidden, fv.hidden]);
    });

    it('rejects bad shapes and spans', () => {
      const { input, dispose } = make(0.5, 25);
      expect(() => illavaLanguage({ ...input, spans: [[9, 12], [2, 7]] })).to.throw(/sorted, disjoint/);
      expect(() => appliedSequence(illavaLanguage(input), { ...input, positionIds: [1, 2] })).to.throw(/positionIds has 2 entries/);
      dispose();
    });
  });
}
