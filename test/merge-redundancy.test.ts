// Our attention-gated redundancy rule ('redundancy', merge/redundancy.ts) on hand-built inputs whose
// answers are worked out by hand in the comments: which tokens go, where they go, with what weights;
// and the rule run through the registry (config, preset, MergeSession) and inside the tiny model.
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'chai';
import { BACKENDS, appliedSequence, constantRowsAttn, randomRows } from './helpers/merge-data.js';
import {
  LLM_RULES, LLAVA15_SHAPE, MergeSession, VISION_RULES, applyPlan, illavaVision, keptIndices, presetConfig, redundancyLanguage, redundancyVision, resolveMergeConfig, type ModelShape,
} from '../merge/index.js';
import { LlavaModel } from '../src/llava.js';
import { expectedArray, TINY_LLAVA_DIR } from './helpers/fixture.js';

for (const backend of BACKENDS) {
  describe(`merge/redundancy [${backend}]`, () => {
    before(async () => {
      expect(await tf.setBackend(backend)).to.equal(true);
    });

    it('vision: of the two least attended, removes the redundant one (not the rare one) into its twin, size-weighted', () => {
      // one head, every query row the same: attention received = [0.4, 0.1, 0.05, 0.25, 0.2]
      const attn = constantRowsAttn([[0.4, 0.1, 0.05, 0.25, 0.2]]);
      // cosines: (1,3) = 1/sqrt(1.01) = 0.995, (1,4) = 0.77/(1.005*0.990) = 0.774, (2,4) = 0.7/0.990 = 0.707,
      // (2,1) = 0.1/1.005 = 0.0995, (2,3) = 0. Pool (pool 2 x remove 1) = the 2 least attended = {2, 1}.
      // Best survivor: token 1 -> 3 (0.995), token 2 -> 4 (0.707): token 1 goes, into 3.
      const metric = tf.tensor2d([[0, 0, 1], [1, 0.1, 0], [0, 1, 0], [1, 0, 0], [0.7, 0.7, 0]]);
      const sizes = [1, 2, 1, 1, 1];
      const out = redundancyVision({ attn, metric, sizes, remove: 1, clsToken: true });
      expect(out.selection.pool).to.deep.equal([2, 1]);
      expect(out.selection.matches.map((m) => [m.source, m.destination])).to.deep.equal([[1, 3]]);
      expect(out.selection.matches[0].similarity).to.be.closeTo(1 / Math.sqrt(1.01), 1e-6);
      expect(keptIndices(out.plan)).to.deep.equal([0, 2, 3, 4]);
      const row = out.plan.rows[2];
      expect(row.sources).to.deep.equal([3, 1]);
      // sizes 1 (token 3) and 2 (token 1): weights 1/3, 2/3
      expect(row.weights[0]).to.be.closeTo(1 / 3, 1e-12);
      expect(row.weights[1]).to.be.closeTo(2 / 3, 1e-12);
      const hidden = tf.tensor2d([[9, 9], [3, 6], [5, 5], [0, 3], [1, 1]]);
      const merged = applyPlan(out.plan, hidden).arraySync();
      // (1 * [0, 3] + 2 * [3, 6]) / 3 = [2, 5]
      expect(merged[2][0]).to.be.closeTo(2, 1e-5);
      expect(merged[2][1]).to.be.closeTo(5, 1e-5);
      expect(merged[1]).to.deep.equal([5, 5]); // the rare token is a copy
      // iLLaVA on the same input folds the two least attended (1 and 2) together: the rare token 2 is lost
      expect(keptIndices(illavaVision({ attn, remove: 1, clsToken: true }).plan)).to.deep.equal([0, 1, 3, 4]);
      tf.dispose([attn, metric, hidden]);
    });

    it('vision: a removed token is never a destination (two duplicates both go into the third token); CLS never takes part', () => {
      const attn = constantRowsAttn([[0.5, 0.05, 0.1, 0.2, 0.15]]);
      // tokens 1 and 2 are identical (cosine 1); 3 = [1, 1, 0] is 0.7071 from both; 4 is orthogonal; CLS = token 1's direction
      const metric = tf.tensor2d([[1, 0, 0], [1, 0, 0], [1, 0, 0], [1, 1, 0], [0, 0, 1]]);
      const out = redundancyVision({ attn, metric, sizes: null, remove: 2, clsToken: true, pool: 1 });
      // pool = the 2 least attended = [1 (0.05), 2 (0.1)]; step 1: both best 1.0 (each other), tie -> lower index 1;
      // step 2: token 2 (best survivor 3, 0.7071). Destinations among the survivors {3, 4}: both -> 3.
      expect(out.selection.pool).to.deep.equal([1, 2]);
      expect(out.selection.matches.map((m) => [m.source, m.destination])).to.deep.equal([[1, 3], [2, 3]]);
      expect(out.selection.matches[0].similarity).to.be.closeTo(Math.SQRT1_2, 1e-6);
      expect(out.plan.rows).to.have.length(3);
      expect(out.plan.rows[0]).to.deep.equal({ anchor: 0, sources: [0], weights: [1] });
      expect(out.plan.rows[1].sources).to.deep.equal([3, 1, 2]);
      out.plan.rows[1].weights.forEach((w) => expect(w).to.be.closeTo(1 / 3, 1e-12));
      expect(out.plan.rows[2]).to.deep.equal({ anchor: 4, sources: [4], weights: [1] });
      tf.dispose([attn, metric]);
    });

    it('vision: remove 0 is the identity, too large a remove and a bad pool are clear errors', () => {
      const attn = constantRowsAttn([[0.2, 0.2, 0.2, 0.2, 0.2]]);
      const metric = tf.tensor2d(randomRows(5, 3, 50));
      expect(keptIndices(redundancyVision({ attn, metric, sizes: null, remove: 0, clsToken: true }).plan)).to.deep.equal([0, 1, 2, 3, 4]);
      expect(() => redundancyVision({ attn, metric, sizes: null, remove: 4, clsToken: true })).to.throw(/cannot remove 4 of 4 candidate tokens/);
      expect(() => redundancyVision({ attn, metric, sizes: null, remove: 1, clsToken: true, pool: 0.5 })).to.throw(/pool must be a number >= 1/);
      const short = tf.tensor2d(randomRows(4, 3, 51));
      expect(() => redundancyVision({ attn, metric: short, sizes: null, remove: 1, clsToken: true })).to.throw(/metric has 4 tokens, attn 5/);
      tf.dispose([attn, metric, short]);
    });

    it('language: within the image span, removes the least attended redundant tokens into their nearest survivor; text untouched', () => {
      // T = 7: text 0, image span [1, 6), text 6. keep 0.6 of 5: round(5 * 0.4) = 2 removed; pool 2 x 2 = 4
      const lastRowAttn = tf.tensor2d([[0.3, 0.02, 0.03, 0.2, 0.05, 0.1, 0.3]]);
      // span tokens (global 1..5): 1 = [1, 0], 2 = [0, 1], 3 = [1, 0.05], 4 = [0.05, 1], 5 = [1, 1]
      // pool = the 4 least attended of the span: 1 (0.02), 2 (0.03), 4 (0.05), 5 (0.1)
      // step 1 best survivors: 1 -> 3 (0.99875), 2 -> 4 (0.99875), 4 -> 2 (0.99875), 5 -> 3 or 4 (0.7416): tie at 0.99875 -> lowest index 1
      // step 2: 2 -> 4 (0.99875) and 4 -> 2 tie -> 2; destinations: 1 -> 3, 2 -> 4 (equal weights)
      const hidden = tf.tensor2d([[7, 7], [1, 0], [0, 1], [1, 0.05], [0.05, 1], [1, 1], [8, 8]]);
      const input = { hidden, keys: hidden, lastRowAttn, spans: [[1, 6]] as Array<[number, number]>, keep: 0.6, positionIds: [0, 1, 2, 3, 4, 5, 6] };
      const out = appliedSequence(redundancyLanguage(input), input);
      expect(out.groups[0].removed).to.equal(2);
      expect(out.groups[0].selection!.pool).to.deep.equal([1, 2, 4, 5]);
      expect(out.groups[0].selection!.matches.map((m) => [m.source, m.destination])).to.deep.equal([[1, 3], [2, 4]]);
      expect(out.keptIndices).to.deep.equal([0, 3, 4, 5, 6]);
      expect(out.positionIds).to.deep.equal([0, 3, 4, 5, 6]);
      const rows = out.hidden.arraySync();
      expect(rows[0]).to.deep.equal([7, 7]);
      expect(rows[1][0]).to.be.closeTo(1, 1e-6); // ([1, 0.05] + [1, 0]) / 2
      expect(rows[1][1]).to.be.closeTo(0.025, 1e-6);
      expect(rows[2][0]).to.be.closeTo(0.025, 1e-6);
      expect(rows[2][1]).to.be.closeTo(1, 1e-6);
      expect(rows[4]).to.deep.equal([8, 8]);
      tf.dispose([hidden, lastRowAttn, out.hidden]);
    });

    it('is registered at both stages: preset, config validation, a MergeSession runs it with attention and keys', () => {
      expect(VISION_RULES).to.include('redundancy');
      expect(LLM_RULES).to.include('redundancy');
      const illava = presetConfig('illava', LLAVA15_SHAPE);
      expect(presetConfig('redundancy', LLAVA15_SHAPE)).to.deep.equal({ vision: { ...illava.vision, rule: 'redundancy', keepPositions: true }, llm: { ...illava.llm, rule: 'redundancy' } });
      const shape: ModelShape = { visionLayersRun: 2, patches: 16, llmLayers: 2 };
      expect(() => resolveMergeConfig({ vision: { rule: 'redundancy', layers: [0], remove: 4, pool: 0 } }, shape)).to.throw(/vision: pool must be a number >= 1, got 0/);
      const session = new MergeSession(resolveMergeConfig({ vision: { rule: 'redundancy', layers: [0, 1], remove: 4 }, llm: { rule: 'redundancy', layers: [1], keep: 0.5 } }, shape));
      const vision = session.visionHook(17, true, 2)!;
      const block = vision.block(0)!;
      expect([block.attn, block.keys, block.keyBias]).to.deep.equal([true, true, null]);
      const hidden = tf.tensor2d(randomRows(17, 4, 52));
      const keys = tf.tensor2d(randomRows(17, 4, 53));
      const attn = tf.tidy(() => tf.softmax(tf.tensor3d([randomRows(17, 17, 54), randomRows(17, 17, 55)]))) as tf.Tensor3D;
      const merged = block.merge!(hidden, attn, keys);
      expect(merged.shape).to.deep.equal([13, 4]);
      // the next block gets ToMe's proportional attention bias log(size) over the 13 tokens
      const next = vision.block(1)!;
      expect(next.keyBias!.shape).to.deep.equal([13]);
      const [report] = session.reports([12]);
      expect(report.vision).to.deep.equal([{ layer: 0, tokens: 12 }]);
      tf.dispose([hidden, keys, attn, merged, next.keyBias!]);
    });
  });
}

describe('redundancy inside the model (tiny-llava): nothing in src/ knows the rule', function () {
  it('generate merges with it at both stages and reports the counts', async () => {
    const model = await LlavaModel.fromPretrained(TINY_LLAVA_DIR, { backend: 'wasm', merge: { vision: { rule: 'redundancy', layers: [0, 1], remove: 3 }, llm: { rule: 'redundancy', layers: [1], keep: 0.5 } } });
    try {
      const before = tf.memory().numTensors;
      const out = await model.generate({ prompt: 'What is shown in this image?', images: [{ pixelValues: expectedArray('pixel_values').data, height: 56, width: 56 }], maxNewTokens: 2, stopIds: [] });
      expect(tf.memory().numTensors).to.equal(before);
      expect(out.merges[0].vision).to.deep.equal([{ layer: 0, tokens: 13 }, { layer: 1, tokens: 10 }]);
      expect(out.merges[0].language).to.deep.equal([{ layer: 1, tokens: 5 }]);
    } finally {
      model.dispose();
    }
  });
});
