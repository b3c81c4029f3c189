// MergeSession: a vision stage then a language stage on random small tensors, as the model drives
// its two hooks (the vision-block hook per image, the sequence hook of the prefill).
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'chai';
import { BACKENDS } from './helpers/merge-data.js';
import { MergeSession, resolveMergeConfig, type MergeOption, type MergeReport, type ModelShape } from '../merge/index.js';

const TINY: ModelShape = { visionLayersRun: 2, patches: 16, llmLayers: 2 };
const HEADS = 2;
const HEAD_DIM = 4;

/** Runs one image through the tiny pipeline; returns the reports and the final sequence. */
function runPipeline(option: MergeOption, seed: number): { report: MergeReport; spans: Array<[number, number]>; positionIds: number[]; biases: number[] } {
  const session = new MergeSession(resolveMergeConfig(option, TINY));
  const vision = session.visionHook(17, true, HEADS);
  let hidden = tf.randomNormal([17, HEADS * HEAD_DIM], 0, 1, 'float32', seed) as tf.Tensor2D;
  const biases: number[] = [];
  for (let layer = 0; layer < TINY.visionLayersRun; layer++) {
    const needs = vision?.needs(layer);
    const block = vision?.block(layer);
    const bias = block?.keyBias ?? null;
    biases.push(bias ? bias.shape[0] : 0);
    if (bias) expect(needs?.sizeBias).to.equal(true);
    bias?.dispose();
    const n = hidden.shape[0];
    const attn = block?.attn ? tf.tidy(() => tf.softmax(tf.randomNormal([HEADS, n, n], 0, 1, 'float32', seed + layer))) as tf.Tensor3D : undefined;
    const keys = block?.keys ? tf.randomNormal([n, HEADS * HEAD_DIM], 0, 1, 'float32', seed + 10 + layer) as tf.Tensor2D : undefined;
    if (block?.merge) {
      const merged = block.merge(hidden, attn, keys);
      hidden.dispose();
      hidden = merged;
    }
    if (attn) attn.dispose();
    if (keys) keys.dispose();
  }
  const imageTokens = hidden.shape[0] - 1; // LLaVA drops the CLS
  hidden.dispose();
  // Sequence: 3 text tokens, the image, 4 text tokens.
  const t = 3 + imageTokens + 4;
  let seq = tf.randomNormal([t, 6], 0, 1, 'float32', seed + 20) as tf.Tensor2D;
  let positionIds = [...Array(t).keys()];
  const sequence = session.sequenceHook([[3, 3 + imageTokens]], t - 1);
  let lastRow: tf.Tensor2D | undefined;
  for (let layer = 0; layer < TINY.llmLayers; layer++) {
    const out = sequence?.mergeBefore(layer, seq, positionIds, lastRow);
    if (out) {
      expect(lastRow).to.not.equal(undefined);
      seq.dispose();
      seq = out.hidden;
      positionIds = out.positionIds;
    }
    lastRow?.dispose();
    lastRow = sequence?.scoreRow(layer) !== undefined ? tf.tidy(() => tf.softmax(tf.randomNormal([HEADS, seq.shape[0]], 0, 1, 'float32', seed + 30 + layer))) as tf.Tensor2D : undefined;
  }
  lastRow?.dispose();
  expect(seq.shape[0]).to.equal(positionIds.length);
  seq.dispose();
  const spans = (sequence?.state?.spans ?? [[3, 3 + imageTokens]]).map(([s, e]): [number, number] => [s, e]);
  return { report: session.reports([imageTokens])[0], spans, positionIds, biases };
}

for (const backend of BACKENDS) {
  describe(`merge/session [${backend}]`, () => {
    before(async () => {
      expect(await tf.setBackend(backend)).to.equal(true);
    });

    it('illava preset: counts per layer, recycled patches all mapped, no tensor leak', () => {
      const before = tf.memory().numTensors;
      const { report, spans, positionIds } = runPipeline({ ...resolveMergeConfig('illava', TINY), trackSources: true }, 1);
      expect(tf.memory().numTensors).to.equal(before);
      expect(report.patches).to.equal(16);
      expect(report.vision).to.deep.equal([{ layer: 0, tokens: 12 }, { layer: 1, tokens: 8 }]);
      expect(report.language).to.deep.equal([{ layer: 1, tokens: 5 }]); // 8 - round(2.8) = 5
      expect(report.tokens).to.equal(5);
      expect(spans).to.deep.equal([[3, 8]]);
      expect(positionIds.slice(0, 3)).to.deep.equal([0, 1, 2]);
      expect(positionIds.slice(-4)).to.deep.equal([11, 12, 13, 14]); // text after the image keeps its ids
      const map = Array.from(report.patchToToken!);
      expect(map).to.have.length(16);
      expect(map.every((v) => v >= 0 && v < 5)).to.equal(true); // recycling loses no patch
      expect(new Set(map).size).to.equal(5);
    });

    it('tome preset: sizes feed the attention bias from the second block; fastv drops patches', () => {
      const before = tf.memory().numTensors;
      const tome = runPipeline({ vision: { rule: 'tome', layers: [0, 1], remove: 4 }, llm: { rule: 'fastv', layers: [1], keep: 0.5 }, trackSources: true }, 2);
      expect(tf.memory().numTensors).to.equal(before);
      expect(tome.biases).to.deep.equal([0, 13]);
      expect(tome.report.vision).to.deep.equal([{ layer: 0, tokens: 12 }, { layer: 1, tokens: 8 }]);
      expect(tome.report.language).to.deep.equal([{ layer: 1, tokens: 4 }]);
      const map = Array.from(tome.report.patchToToken!);
      expect(map.filter((v) => v >= 0).length).to.be.below(16);
      expect(new Set(map.filter((v) => v >= 0)).size).to.equal(4);
    });

    it('illava-similarity at both stages, and none', () => {
      const before = tf.memory().numTensors;
      const sim = runPipeline({ vision: { rule: 'illava-similarity', layers: [1], remove: 6 }, llm: { rule: 'illava-similarity', layers: [1], keep: 0.5 } }, 3);
      expect(sim.report.vision).to.deep.equal([{ layer: 1, tokens: 10 }]);
      expect(sim.report.language).to.deep.equal([{ layer: 1, tokens: 5 }]);
      expect(sim.report.patchToToken).to.equal(undefined);
      const none = runPipeline('none', 4);
      expect(none.report).to.deep.equal({ patches: 16, vision: [], language: [], tokens: 16 });
      expect(none.positionIds).to.deep.equal([...Array(23).keys()]);
      expect(tf.memory().numTensors).to.equal(before);
    });

    it('keepPositions: the survivors take their patches\' position ids, the text after the image moves up by the removed count', () => {
      const shape: ModelShape = { visionLayersRun: 1, patches: 6, llmLayers: 2 };
      const positionsAfter = (keepPositions: boolean | undefined) => {
        const session = new MergeSession(resolveMergeConfig({ vision: { rule: 'illava-prune', layers: [0], remove: 2, ...(keepPositions !== undefined && { keepPositions }) } }, shape));
        const hook = session.visionHook(7, true, 1)!;
        // every query attends alike: received = this row; patches 1 and 4 (tokens 2, 5) are the least attended
        const received = [0.11, 0.2, 0.05, 0.2, 0.2, 0.04, 0.2];
        const attn = tf.tensor3d([Array.from({ length: 7 }, () => received)]);
        const hidden = tf.zeros([7, 4]) as tf.Tensor2D;
        const merged = hook.block(0)!.merge!(hidden, attn);
        tf.dispose([attn, hidden, merged]);
        // prompt: 2 text tokens, the image's 4 survivors at rows 2-5, 3 text tokens
        return session.prefillPositions([[2, 6]], 9);
      };
      expect(positionsAfter(true)).to.deep.equal([0, 1, 2 + 0, 2 + 2, 2 + 3, 2 + 5, 8, 9, 10]);
      expect(positionsAfter(false)).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7, 8]);
      expect(positionsAfter(undefined)).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7, 8]);
      expect(() => resolveMergeConfig({ vision: { rule: 'illava', layers: [0], remove: 1, keepPositions: 'yes' as unknown as boolean } }, shape)).to.throw("vision: keepPositions must be a boolean, got string");
      expect(() => resolveMergeConfig({ vision: { rule: 'illava', layers: [0], remove: 1, keepPositions: true } }, { ...shape, anyres: true })).to.throw(/keepPositions applies to one-grid models/);
      expect(resolveMergeConfig('redundancy', TINY).vision?.keepPositions).to.equal(true);
      expect(resolveMergeConfig('illava', TINY).vision?.keepPositions).to.equal(undefined);
    });

    it('asks only for what the rule needs, and rejects missing inputs', () => {
      const session = new MergeSession(resolveMergeConfig('illava', TINY));
      const hook = session.visionHook(17, true, 2)!;
      expect(hook.needs(0)).to.deep.equal({ merge: true, attn: true, keys: false, sizeBias: false });
      expect(new MergeSession(resolveMergeConfig('tome', TINY)).visionHook(17, true, 2)!.needs(1)).to.deep.equal({ merge: true, attn: false, keys: true, sizeBias: true });
      const sequence = session.sequenceHook([[3, 11]], 14)!;
      expect(sequence.scoreRow(0) !== undefined).to.equal(true);
      expect(sequence.scoreRow(1) !== undefined).to.equal(false);
      const hidden = tf.zeros([17, 8]) as tf.Tensor2D;
      const merge = hook.block(0)!.merge!;
      expect(() => merge(hidden)).to.throw(/needs the attention probabilities/);
      const wrong = tf.zeros([16, 8]) as tf.Tensor2D;
      expect(() => merge(wrong)).to.throw(/hidden has 16 tokens, the state 17/);
      tf.dispose([hidden, wrong]);
    });
  });
}
