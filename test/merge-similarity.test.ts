// Similarity recycling (iLLaVA v2) against a plain-array reference.
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'chai';
import { BACKENDS, applied, appliedSequence, randomRows, bits } from './helpers/merge-data.js';
import { illavaLanguageSimilarity, illavaVisionSimilarity, similarityRecycle, type SimilarityRecycleInput } from '../merge/index.js';

/** similarityRecycle on `features` (also the keys unless given), with its plan applied to them. */
function recycle(input: Omit<SimilarityRecycleInput, 'keys'> & { features: tf.Tensor2D; keys?: tf.Tensor2D }) {
  const out = applied(similarityRecycle({ ...input, keys: input.keys ?? input.features }), input.features);
  return { ...out, features: out.hidden };
}

const dot = (a: number[], b: number[]) => a.reduce((acc, v, i) => acc + v * b[i], 0);

/** Plain reference: value of recycling token `c` absorbing the m most similar of `dropped`. */
function recycled(x: number[][], keys: number[][], c: number, dropped: number[], m: number): { nb: number[]; value: number[] } {
  const sims = dropped.map((d) => ({ d, s: dot(keys[c], keys[d]) })).sort((a, b) => b.s - a.s).slice(0, m);
  const scale = Math.sqrt(keys[0].length);
  const e = sims.map((v) => Math.exp(v.s / scale));
  const z = e.reduce((a, b) => a + b, 0);
  const value = x[c].map((own, k) => (own + sims.reduce((acc, v, j) => acc + (e[j] / z) * x[v.d][k], 0)) / 2);
  return { nb: sims.map((v) => v.d), value };
}

for (const backend of BACKENDS) {
  describe(`merge/similarity-recycle [${backend}]`, () => {
    before(async () => {
      expect(await tf.setBackend(backend)).to.equal(true);
    });

    it('keeps top-k, recycles the last pc with softmax(sim / sqrt(Dk)) neighbours', () => {
      const x = randomRows(10, 3, 30);
      const keys = randomRows(10, 4, 31);
      const scores = [0.9, 0.1, 0.5, 0.3, 0.8, 0.05, 0.7, 0.2, 0.6, 0.4];
      // Ranking: 0 (.9), 4 (.8), 6 (.7), 8 (.6), 2 (.5) | 9 (.4), 3 (.3), 7 (.2), 1 (.1), 5 (.05).
      // k = 5, pc = round(5 * 0.4) = 2: informative 0, 4, 6; recycling 8, 2; dropped 9, 3, 7, 1, 5.
      const f = tf.tensor2d(x);
      const k = tf.tensor2d(keys);
      const out = recycle({ scores, features: f, keys: k, keep: 5, recycleRatio: 0.4, neighbours: 2 });
      expect(out.selection.informative).to.deep.equal([0, 4, 6]);
      expect(out.selection.recycling.map((r) => r.token)).to.deep.equal([8, 2]);
      expect(out.selection.dropped).to.deep.equal([9, 3, 7, 1, 5]);
      expect(out.keptIndices).to.deep.equal([0, 2, 4, 6, 8]);
      const got = out.features.arraySync();
      for (const [o, i] of [[0, 0], [2, 4], [3, 6]]) expect(bits(got[o])).to.deep.equal(bits(x[i]));
      for (const [o, c] of [[1, 2], [4, 8]]) {
        const ref = recycled(x, keys, c, [9, 3, 7, 1, 5], 2);
        const rt = out.selection.recycling.find((r) => r.token === c)!;
        expect(rt.neighbours).to.deep.equal(ref.nb);
        got[o].forEach((v, j) => expect(v).to.be.closeTo(ref.value[j], 1e-5));
      }
      tf.dispose([f, k, out.features]);
    });

    it('pc = max(1, round(k * ratio)); keys default to the features; protect keeps CLS', () => {
      const x = randomRows(8, 3, 32);
      const f = tf.tensor2d(x);
      const scores = [0, 8, 7, 6, 5, 4, 3, 2];
      const out = recycle({ scores, features: f, keep: 4, protect: [0] }); // pc = max(1, round(0.2)) = 1
      expect(out.selection.recycling.map((r) => r.token)).to.deep.equal([4]);
      expect(out.keptIndices).to.deep.equal([0, 1, 2, 3, 4]);
      const ref = recycled(x, x, 4, [5, 6, 7], 5); // only 3 dropped: all absorbed
      expect(out.selection.recycling[0].neighbours).to.deep.equal(ref.nb);
      out.features.arraySync()[4].forEach((v, j) => expect(v).to.be.closeTo(ref.value[j], 1e-5));
      expect(bits(out.features.arraySync()[0])).to.deep.equal(bits(x[0]));
      expect(() => recycle({ scores, features: f, keep: 8, protect: [0] })).to.throw(/cannot keep 8 of 7/);
      tf.dispose([f, out.features]);
    });

    it('tie rule: equal scores and equal similarities prefer the lower index', () => {
      const f = tf.ones([6, 2]) as tf.Tensor2D;
      const out = recycle({ scores: [1, 1, 1, 1, 1, 1], features: f, keep: 3, neighbours: 2 });
      expect(out.selection.informative).to.deep.equal([0, 1]);
      expect(out.selection.recycling[0].token).to.equal(2);
      expect(out.selection.recycling[0].neighbours).to.deep.equal([3, 4]);
      tf.dispose([f, out.features]);
    });

    it('vision and language wrappers use the iLLaVA scores', () => {
      const x = randomRows(6, 3, 33);
      const hidden = tf.tensor2d(x);
      const row = [0.3, 0.1, 0.25, 0.05, 0.2, 0.1]; // received: ties 1 and 5 -> 1 ranks higher
      const attn = tf.tensor3d([row.map(() => row)]);
      const v = applied(illavaVisionSimilarity({ attn, keys: hidden, remove: 2, clsToken: true }), hidden);
      // Ranking (CLS excluded): 2 (.25), 4 (.2), 1 (.1), 5 (.1), 3 (.05); k = 3: informative 2, 4; recycling 1.
      expect(v.selection.informative).to.deep.equal([2, 4]);
      expect(v.selection.recycling.map((r) => r.token)).to.deep.equal([1]);
      expect(v.keptIndices).to.deep.equal([0, 1, 2, 4]);
      const lastRowAttn = tf.tensor2d([[0.4, 0.1, 0.3, 0.05, 0.05, 0.1]]);
      const sequence = { hidden, spans: [[1, 5]] as Array<[number, number]>, positionIds: [0, 1, 2, 3, 4, 5] };
      const l = appliedSequence(illavaLanguageSimilarity({ keys: hidden, lastRowAttn, spans: sequence.spans, keep: 0.5 }), sequence);
      // Span 1..4 scores .1 .3 .05 .05; r = 2, k = 2: informative 2, recycling 1; dropped 3, 4.
      expect(l.keptIndices).to.deep.equal([0, 1, 2, 5]);
      expect(l.spans).to.deep.equal([[1, 3]]);
      const ref = recycled(x, x, 1, [3, 4], 5);
      l.hidden.arraySync()[1].forEach((val, j) => expect(val).to.be.closeTo(ref.value[j], 1e-5));
      expect(bits(l.hidden.arraySync()[3])).to.deep.equal(bits(x[5]));
      tf.dispose([hidden, attn, lastRowAttn, v.hidden, l.hidden]);
    });
  });
}
