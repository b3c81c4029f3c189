// iLLaVA's pure-pruning ablation ('illava-prune', the authors' mode 1) on hand-built inputs: the
// rule's plan, and the rule run through the registry by a MergeSession and by the model.
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'chai';
import { BACKENDS, SIX_TOKEN_HEADS, applied, appliedSequence, bits, constantRowsAttn, randomRows } from './helpers/merge-data.js';
import {
  LLM_RULES, MergeSession, VISION_RULES, fastvPrune, illavaLanguagePrune, illavaVision, illavaVisionPrune, keptIndices, resolveMergeConfig, type ModelShape,
} from '../merge/index.js';
import { LlavaModel } from '../src/llava.js';
import { expectedArray, TINY_LLAVA_DIR } from './helpers/fixture.js';

for (const backend of BACKENDS) {
  describe(`merge/illava-prune [${backend}]`, () => {
    before(async () => {
      expect(await tf.setBackend(backend)).to.equal(true);
    });

    it('vision: drops the r least attended (CLS protected), copies the rest bit-for-bit', () => {
      const attn = constantRowsAttn(SIX_TOKEN_HEADS); // received = [0.3, 0.11, 0.2, 0.05, 0.15, 0.19]
      const rows = randomRows(6, 4, 40);
      const hidden = tf.tensor2d(rows);
      const out = applied(illavaVisionPrune({ attn, remove: 2, clsToken: true }), hidden);
      expect(out.dropped).to.deep.equal([3, 1]); // 0.05, then 0.11
      expect(out.keptIndices).to.deep.equal([0, 2, 4, 5]);
      expect(out.scores[0]).to.equal(Infinity);
      expect(out.plan.rows.every((r) => r.sources.length === 1 && r.weights[0] === 1)).to.equal(true);
      expect(out.hidden.arraySync().map(bits)).to.deep.equal([0, 2, 4, 5].map((i) => bits(rows[i])));
      // Same survivors as iLLaVA's recycling for this r (the group's destination stays); only values differ.
      expect(keptIndices(illavaVision({ attn, remove: 2, clsToken: true }).plan)).to.deep.equal(out.keptIndices);
      tf.dispose([hidden, attn, out.hidden]);
    });

    it('vision: tie rule, r = 0 and too large r', () => {
      const attn = constantRowsAttn([Array(6).fill(1 / 6)]);
      expect(illavaVisionPrune({ attn, remove: 2, clsToken: true }).dropped).to.deep.equal([5, 4]); // equal scores: the higher index goes first
      expect(illavaVisionPrune({ attn, remove: 1, clsToken: false }).dropped).to.deep.equal([5]);
      expect(illavaVisionPrune({ attn, remove: 0, clsToken: true }).plan.rows.map((r) => r.anchor)).to.deep.equal([0, 1, 2, 3, 4, 5]);
      expect(() => illavaVisionPrune({ attn, remove: 5, clsToken: true })).to.throw(/cannot remove 5 of 5 candidate tokens/);
      attn.dispose();
    });

    it('language: per span, the lowest-scored dropped; the same plan as FastV', () => {
      const hidden = tf.tensor2d(randomRows(8, 2, 41));
      const lastRowAttn = tf.tensor2d([[0.3, 0.05, 0.2, 0.01, 0.1, 0.04, 0.1, 0.2]]);
      const input = { hidden, lastRowAttn, spans: [[1, 7]] as Array<[number, number]>, keep: 0.5, positionIds: [10, 11, 12, 13, 14, 15, 16, 17] };
      const out = appliedSequence(illavaLanguagePrune(input), input);
      expect(out.groups[0].dropped).to.deep.equal([3, 5, 1]);
      expect(out.keptIndices).to.deep.equal([0, 2, 4, 6, 7]);
      expect(out.positionIds).to.deep.equal([10, 12, 14, 16, 17]);
      expect(out.spans).to.deep.equal([[1, 4]]);
      expect(out.plan).to.deep.equal(fastvPrune(input).plan);
      tf.dispose([hidden, lastRowAttn, out.hidden]);
    });

    it('is registered at both stages: config validation and a MergeSession run it', () => {
      expect(VISION_RULES).to.include('illava-prune');
      expect(LLM_RULES).to.include('illava-prune');
      const shape: ModelShape = { visionLayersRun: 2, patches: 16, llmLayers: 2 };
      expect(() => resolveMergeConfig({ vision: { rule: 'illava-prune', layers: [0, 1], remove: 8 } }, shape)).to.throw(/removes more tokens than exist/);
      const session = new MergeSession(resolveMergeConfig({ vision: { rule: 'illava-prune', layers: [1], remove: 6 }, llm: { rule: 'illava-prune', layers: [1], keep: 0.5 }, trackSources: true }, shape));
      const vision = session.visionHook(17, true, 2)!;
      expect(vision.block(0)).to.equal(undefined);
      const block = vision.block(1)!;
      expect([block.attn, block.keys]).to.deep.equal([true, false]);
      const hidden = tf.tensor2d(randomRows(17, 4, 42));
      const attn = tf.tidy(() => tf.softmax(tf.tensor3d([randomRows(17, 17, 43), randomRows(17, 17, 44)]))) as tf.Tensor3D;
      const merged = block.merge!(hidden, attn);
      expect(merged.shape).to.deep.equal([11, 4]);
      const seq = tf.tensor2d(randomRows(2 + 10 + 1, 4, 45));
      const hook = session.sequenceHook([[2, 12]], 12)!;
      const row = tf.tidy(() => tf.softmax(tf.tensor2d(randomRows(2, 13, 46)))) as tf.Tensor2D;
      const out = hook.mergeBefore(1, seq, [...Array(13).keys()], row)!;
      expect(out.hidden.shape).to.deep.equal([2 + 5 + 1, 4]);
      const [report] = session.reports([10]);
      expect(report.vision).to.deep.equal([{ layer: 1, tokens: 10 }]);
      expect(report.language).to.deep.equal([{ layer: 1, tokens: 5 }]);
      const map = Array.from(report.patchToToken!);
      expect(map.filter((t) => t >= 0)).to.have.length(5); // pruning: each survivor holds only its own patch
      expect(new Set(map.filter((t) => t >= 0)).size).to.equal(5);
      tf.dispose([hidden, attn, merged, seq, row, out.hidden]);
    });
  });
}

describe('illava-prune inside the model (tiny-llava): nothing in src/ knows the rule', function () {
  it('generate merges with it at both stages and reports the counts', async () => {
    const model = await LlavaModel.fromPretrained(TINY_LLAVA_DIR, { backend: 'wasm', merge: { vision: { rule: 'illava-prune', layers: [0, 1], remove: 3 }, llm: { rule: 'illava-prune', layers: [1], keep: 0.5 } } });
    try {
      const before = tf.memory().numTensors;
      const out = await model.generate({ prompt: 'What is shown in this image?', images: [{ pixelValues: expectedArray('pixel_values').data, height: 56, width: 56 }], maxNewTokens: 2, stopIds: [] });
      expect(tf.memory().numTensors).to.equal(before);
      expect(out.merges[0].vision).to.deep.equal([{ layer: 0, tokens: 13 }, { layer: 1, tokens: 10 }]);
      expect(out.merges[0].language).to.deep.equal([{ layer: 1, tokens: 5 }]);
      expect(out.sequenceLength.input - out.sequenceLength.afterMerge).to.equal(5);
    } finally {
      model.dispose();
    }
  });
});
