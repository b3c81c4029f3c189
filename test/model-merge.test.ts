// Token merging inside the model (issue: iLLaVA merge layers), on the tiny-llava fixture.
import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import { LlavaModel, type PixelValues } from '../src/llava.js';
import { resolveModelMerge } from '../src/merging.js';
import type { MergeConfig, MergePresetName } from '../merge/index.js';
import { KVCache } from '../layers/kv-cache.js';
import { expectedArray, maxAbsDiff, TINY_LLAVA_DIR } from './helpers/fixture.js';

/** Python's round (half to even), written here independently of merge/util. */
function pyRound(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** Expected image-token counts per stage from a resolved config, by plain arithmetic. */
function expectedCounts(config: MergeConfig, patches: number): { vision: number[]; language: number[] } {
  const vision: number[] = [];
  let n = patches;
  if (config.vision && config.vision.rule !== 'none') {
    for (const _ of config.vision.layers) vision.push((n -= config.vision.remove));
  }
  const language: number[] = [];
  if (config.llm && config.llm.rule !== 'none') {
    for (const _ of config.llm.layers) language.push((n -= pyRound(n * (1 - config.llm.keep))));
  }
  return { vision, language };
}

describe('token merging inside the model (tiny-llava)', function () {
  let model: LlavaModel;
  const pixels: PixelValues = { pixelValues: expectedArray('pixel_values').data, height: 56, width: 56 };
  const prompt = { prompt: 'What is shown in this image?', images: [pixels] };
  let reference: Float32Array;

  before(async () => {
    model = await LlavaModel.fromPretrained(TINY_LLAVA_DIR, { backend: 'wasm' });
    reference = await model.logits(prompt);
  });
  after(() => model?.dispose());

  const zeroReduction: Array<[string, MergeConfig | MergePresetName]> = [
    ['none preset', 'none'],
    ['illava vision, remove 0', { vision: { rule: 'illava', layers: [0, 1], remove: 0 } }],
    ['illava-similarity vision, remove 0', { vision: { rule: 'illava-similarity', layers: [0], remove: 0 } }],
    ['tome, remove 0 (proportional attention on)', { vision: { rule: 'tome', layers: [0, 1], remove: 0 } }],
    ['illava llm, keep 1', { llm: { rule: 'illava', layers: [1], keep: 1 } }],
    ['fastv, keep 1', { llm: { rule: 'fastv', layers: [1], keep: 1 } }],
    ['illava-similarity llm, keep 1', { llm: { rule: 'illava-similarity', layers: [1], keep: 1 } }],
  ];
  for (const [name, merge] of zeroReduction) {
    it(`leaves the logits unchanged: ${name}`, async () => {
      const logits = await model.logits({ ...prompt, merge });
      expect(maxAbsDiff(logits, reference)).to.be.at.most(1e-6);
    });
  }

  const withLlmStage: Array<MergeConfig | MergePresetName> = ['illava', 'fastv', 'redundancy', { vision: { rule: 'illava', layers: [0], remove: 5 }, llm: { rule: 'illava-similarity', layers: [1], keep: 0.5 } }];
  for (const preset of withLlmStage) {
    it(`KV-cache generation equals recomputing the merged prefill each step (${JSON.stringify(preset)})`, async () => {
      const cached = await model.generate({ ...prompt, merge: preset, maxNewTokens: 10, stopIds: [] });
      const recomputed = await model.generate({ ...prompt, merge: preset, maxNewTokens: 10, stopIds: [], useCache: false });
      expect(cached.tokenIds).to.deep.equal(recomputed.tokenIds);
      expect(cached.sequenceLength.afterMerge).to.be.below(cached.sequenceLength.input);
    });
  }

  it('keepPositions: a prune at the last running block equals the unmerged features minus those rows, at their own positions', async () => {
    // Pruned at the last block that runs, a survivor's feature row is its unmerged row (the MLP and the
    // projector act per token), so the expected prefill is built here from the unmerged features.
    const last = model.config.vision.numLayers - 2; // feature layer -2: blocks 0..numLayers-2 run
    const merge = (keepPositions: boolean): MergeConfig => ({ vision: { rule: 'illava-prune', layers: [last], remove: 5, keepPositions }, trackSources: true });
    const kept = await model.generate({ ...prompt, merge: merge(true), maxNewTokens: 2, stopIds: [], returnLogits: true });
    const packed = await model.generate({ ...prompt, merge: merge(false), maxNewTokens: 1, stopIds: [], returnLogits: true });
    const survivors = [...kept.merges[0].patchToToken!.keys()].filter((p) => kept.merges[0].patchToToken![p] >= 0);
    expect(survivors).to.have.length(11);
    const ids = kept.promptIds;
    const at = ids.indexOf(model.config.imageTokenIndex);
    const positions = [...Array(at).keys(), ...survivors.map((p) => at + p), ...Array.from({ length: ids.length - at - 1 }, (_, j) => at + 16 + j)];
    const expected = tf.tidy(() => {
      const features = model.imageFeatures(pixels);
      const rows = tf.gather(features, survivors);
      return tf.concat([model.decoder.embed(ids.slice(0, at)), rows, model.decoder.embed(ids.slice(at + 1))], 0) as tf.Tensor2D;
    });
    const cache = new KVCache(model.decoder.layers.length);
    const logits = model.decoder.forward(expected, positions, cache).logits;
    // the first generated token goes where it would unmerged: after the prompt's ids.length - 1 + 16 rows
    const next = tf.tidy(() => model.decoder.embed([kept.tokenIds[0]]));
    const second = model.decoder.forward(next, [ids.length - 1 + 16], cache).logits;
    tf.dispose([expected, next]);
    cache.dispose();
    expect(maxAbsDiff(kept.logits![0], logits)).to.be.at.most(1e-5);
    expect(maxAbsDiff(kept.logits![1], second)).to.be.at.most(1e-5);
    expect(maxAbsDiff(packed.logits![0], logits)).to.be.above(1e-3); // consecutive positions: a different prefill
  });

  for (const preset of ['none', 'illava', 'tome', 'fastv'] as const) {
    it(`two images and a 4-frame video give the configured token counts per image: ${preset}`, async () => {
      const config = resolveModelMerge(preset, model.config);
      const before = tf.memory().numTensors;
      const out = await model.generate({ prompt: 'Describe.', images: [pixels, pixels], video: [pixels, pixels, pixels, pixels], merge: preset, maxNewTokens: 2, stopIds: [] });
      expect(tf.memory().numTensors).to.equal(before);
      const expected = expectedCounts(config, 16);
      expect(out.merges).to.have.length(6);
      for (const report of out.merges) {
        expect(report.patches).to.equal(16);
        expect(report.vision.map((c) => c.tokens)).to.deep.equal(expected.vision);
        expect(report.language.map((c) => c.tokens)).to.deep.equal(expected.language);
      }
      const finalPerImage = expected.language.at(-1) ?? expected.vision.at(-1) ?? 16;
      const textTokens = model.promptIds({ prompt: 'Describe.', images: [pixels, pixels, pixels, pixels, pixels, pixels] }).length - 6;
      expect(out.sequenceLength.afterMerge).to.equal(textTokens + 6 * finalPerImage);
    });
  }

  it('tracks which patches each surviving token holds when asked', async () => {
    const out = await model.generate({ ...prompt, merge: { vision: { rule: 'illava', layers: [0], remove: 3 }, llm: { rule: 'illava', layers: [1], keep: 0.5 }, trackSources: true }, maxNewTokens: 1 });
    const map = out.merges[0].patchToToken;
    expect(map).to.have.length(16);
    const final = out.merges[0].tokens;
    expect(final).to.equal(13 - pyRound(13 * 0.5));
    const used = new Set(Array.from(map ?? []).filter((t) => t >= 0));
    expect(Math.max(...used)).to.be.below(final);
    expect(used.size).to.equal(final); // every surviving token holds at least its own patch
  });

  it('rejects impossible merge settings with clear errors', async () => {
    const cases: Array<[MergeConfig | string, RegExp]> = [
      [{ vision: { rule: 'illava', layers: [2], remove: 1 } }, /at or after the last encoder block that runs/],
      [{ vision: { rule: 'illava', layers: [0, 1], remove: 9 } }, /removes more tokens than exist/],
      [{ llm: { rule: 'fastv', layers: [1], keep: 1.5 } }, /keep must be a ratio in \(0, 1\]/],
      [{ llm: { rule: 'fastv', layers: [5], keep: 0.5 } }, /outside the model/],
      [{ llm: { rule: 'fastv', layers: [0], keep: 0.5 } }, /layer 0 is impossible/],
      ['bogus', /unknown merge preset|neither a preset/],
    ];
    for (const [merge, pattern] of cases) {
      let message = '';
      try {
        await model.generate({ ...prompt, merge: merge as MergeConfig, maxNewTokens: 1 });
      } catch (e) {
        message = (e as Error).message;
      }
      expect(message, JSON.stringify(merge)).to.match(pattern);
    }
  });
});
