// ToMe bipartite soft matching against a plain-array reference written here.
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'chai';
import { BACKENDS, rng, randomRows, bits } from './helpers/merge-data.js';
import { applyPlan, keptIndices, proportionalAttentionBias, tomeBipartite, type TomeInput } from '../merge/index.js';

/** tomeBipartite with its plan applied to x: the merged tokens and the sizes as tensors (the caller disposes them). */
function tome(input: TomeInput & { x: tf.Tensor2D }) {
  const out = tomeBipartite(input);
  return { ...out, keptIndices: keptIndices(out.plan), x: applyPlan(out.plan, input.x), size: tf.tensor1d(out.sizes) };
}


/** Plain ToMe: returns src -> dst pairs (A index -> B index), merged x and sizes in original order. */
function reference(metric: number[][], x: number[][], size: number[], r: number, cls: boolean) {
  const unit = metric.map((m) => {
    const norm = Math.sqrt(m.reduce((a, v) => a + v * v, 0));
    return m.map((v) => v / norm);
  });
  const a = unit.map((_, i) => i).filter((i) => i % 2 === 0);
  const b = unit.map((_, i) => i).filter((i) => i % 2 === 1);
  const edges = a
    .filter((i) => !(cls && i === 0))
    .map((i) => {
      let best = b[0];
      let bestS = -Infinity;
      for (const j of b) {
        const s = unit[i].reduce((acc, v, k) => acc + v * unit[j][k], 0);
        if (s > bestS) [best, bestS] = [j, s];
      }
      return { src: i, dst: best, s: bestS };
    })
    .sort((e1, e2) => e2.s - e1.s);
  const merged = edges.slice(0, r);
  const xs = x.map((row, i) => row.map((v) => v * size[i]));
  const sz = [...size];
  for (const e of merged) {
    xs[e.dst] = xs[e.dst].map((v, k) => v + xs[e.src][k]);
    sz[e.dst] += sz[e.src];
  }
  const keep = x.map((_, i) => i).filter((i) => !merged.some((e) => e.src === i));
  return { pairs: merged.map((e) => [e.src, e.dst]), keep, x: keep.map((i) => xs[i].map((v) => v / sz[i])), size: keep.map((i) => sz[i]) };
}

for (const backend of BACKENDS) {
  describe(`merge/tome [${backend}]`, () => {
    before(async () => {
      expect(await tf.setBackend(backend)).to.equal(true);
    });

    it('matches the plain reference; conserves sum(size * x) and total size; CLS untouched', () => {
      const n = 11;
      const metricRows = randomRows(n, 4, 40);
      const xRows = randomRows(n, 3, 41);
      const r = rng(42);
      const sizes = Array.from({ length: n }, () => 1 + Math.floor(r() * 3));
      const ref = reference(metricRows, xRows, sizes, 4, true);
      const metric = tf.tensor2d(metricRows);
      const x = tf.tensor2d(xRows);
      const out = tome({ metric, x, size: sizes, remove: 4, clsToken: true });
      expect(out.matches.map((m) => [m.source, m.destination])).to.deep.equal(ref.pairs);
      expect(out.keptIndices).to.deep.equal(ref.keep);
      expect(Array.from(out.sizes)).to.deep.equal(ref.size);
      expect(Array.from(out.size.dataSync())).to.deep.equal(ref.size);
      const got = out.x.arraySync();
      got.forEach((row, o) => row.forEach((v, k) => expect(v).to.be.closeTo(ref.x[o][k], 1e-5)));
      expect(bits(got[0])).to.deep.equal(bits(xRows[0]));
      const weighted = (rows: number[][], s: number[]) => [0, 1, 2].map((k) => rows.reduce((a, row, i) => a + s[i] * row[k], 0));
      const before = weighted(xRows, sizes);
      weighted(got, ref.size).forEach((v, k) => expect(v).to.be.closeTo(before[k], 1e-4));
      expect(ref.size.reduce((a, b) => a + b, 0)).to.equal(sizes.reduce((a, b) => a + b, 0));
      tf.dispose([metric, x, out.x, out.size]);
    });

    it('order rule: survivors in original order, a merge sits at its B token (destination)', () => {
      // A = {0, 2}, B = {1, 3}; token 0 points the same way as 3, token 2 is far from both.
      const metric = tf.tensor2d([[1, 0], [0, 1], [-1, -0.2], [1, 0.05]]);
      const xRows = [[1, 1], [2, 2], [3, 3], [5, 5]];
      const x = tf.tensor2d(xRows);
      const out = tome({ metric, x, remove: 1, clsToken: false });
      expect(out.matches.map((m) => [m.source, m.destination])).to.deep.equal([[0, 3]]);
      expect(out.keptIndices).to.deep.equal([1, 2, 3]);
      expect(out.x.arraySync()).to.deep.equal([[2, 2], [3, 3], [3, 3]]);
      expect(Array.from(out.sizes)).to.deep.equal([1, 1, 2]);
      tf.dispose([metric, x, out.x, out.size]);
    });

    it('tie rule: lower B index is the match, lower A index merges first', () => {
      const metric = tf.ones([6, 3]) as tf.Tensor2D;
      const x = tf.tensor2d([[0], [1], [2], [3], [4], [5]]);
      const out = tome({ metric, x, remove: 2, clsToken: false });
      expect(out.matches.map((m) => [m.source, m.destination])).to.deep.equal([[0, 1], [2, 1]]);
      expect(out.keptIndices).to.deep.equal([1, 3, 4, 5]);
      expect(Array.from(out.sizes)).to.deep.equal([3, 1, 1, 1]);
      expect(out.x.arraySync()[0][0]).to.be.closeTo(1, 1e-6);
      tf.dispose([metric, x, out.x, out.size]);
    });

    it('r = 0 identity; r > |A| - protected throws; proportional attention bias = log(size)', () => {
      const metric = tf.tensor2d(randomRows(5, 2, 43));
      const xRows = randomRows(5, 2, 44);
      const x = tf.tensor2d(xRows);
      const id = tome({ metric, x, remove: 0, clsToken: true });
      expect(id.x.arraySync().map(bits)).to.deep.equal(xRows.map(bits));
      expect(() => tome({ metric, x, remove: 3, clsToken: true })).to.throw(/at most 2 of 5/);
      const bias = proportionalAttentionBias([1, 2, 4]);
      const vals = Array.from(bias.dataSync());
      [0, Math.log(2), Math.log(4)].forEach((v, i) => expect(vals[i]).to.be.closeTo(v, 1e-6));
      tf.dispose([metric, x, id.x, id.size, bias]);
    });
  });
}
