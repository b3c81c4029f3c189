// Merging on anyres tiles (LLaVA-OneVision), on hand-built inputs: every tile is its own CLS-free
// vision sequence; the two survivor layouts ('square', 'positions') pack the expected tokens; the
// config checks the perfect square; the OneVision presets are the authors' settings. Expectations
// are worked out by hand in the comments (no value here comes from the code under test).
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'chai';
import { selectBackend } from '../src/backend.js';
import { readLlavaConfig, modelShape, type LlavaConfig } from '../src/config.js';
import { applyPackingPlan, bilinearTaps, imagePackingPlan, tileGrids, videoPackingPlan } from '../src/anyres-merge.js';
import { MergeSession, ONEVISION_SHAPE, parseMergeSpec, presetConfig, resolveMergeConfig, tomeBipartite, type ModelShape } from '../merge/index.js';
import { TINY_ONEVISION_DIR } from './helpers/fixture.js';

/** The tiny fixture's tiles: 3 x 3 patches, SigLIP (no CLS), 3 blocks, 2 decoder layers. */
const TINY_OV: ModelShape = { visionLayersRun: 3, patches: 9, llmLayers: 2, clsToken: false, anyres: true, reference: 'onevision' };

/** attn [1, 9, 9] whose every query row is `p`: token j then receives exactly p[j]. */
function attentionReceiving(p: number[]): tf.Tensor3D {
  return tf.tensor3d(Array.from({ length: p.length }, () => p).flat(), [1, p.length, p.length]);
}

describe('iLLaVA merging on anyres tiles', function () {
  let config: LlavaConfig;
  before(async () => {
    await selectBackend('cpu');
    config = readLlavaConfig(TINY_ONEVISION_DIR);
  });

  describe('per tile, CLS-free', () => {
    it('each tile of an image is its own vision sequence and loses the configured count; token 0 is no CLS', () => {
      const session = new MergeSession(resolveMergeConfig({ vision: { rule: 'illava', layers: [1], remove: 5 } }, TINY_OV));
      const tiled = session.beginImage('image');
      // Scores (attention received) per tile; the r + 1 = 6 lowest form the group, the 6th lowest
      // (the best of them) is the destination and stays, the other 5 go.
      const received = [
        [0.01, 0.2, 0.15, 0.02, 0.03, 0.04, 0.25, 0.05, 0.25], // lowest six: 0, 3, 4, 5, 7, 2 -> 2 stays: keep 1, 2, 6, 8
        [0.3, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.2, 0.29], // lowest six: 1..6 -> 6 stays: keep 0, 6, 7, 8
        [0.05, 0.04, 0.03, 0.02, 0.01, 0.2, 0.2, 0.2, 0.25], // ties: see below
      ];
      // Tile 3: among the equal 0.2s at 5, 6, 7 the LOWER index ranks higher, so the lowest-ranked
      // 0.2 is 7: the group is 4, 3, 2, 1, 0, 7 with 7 the destination: keep 5, 6, 7, 8.
      const kept = [[1, 2, 6, 8], [0, 6, 7, 8], [5, 6, 7, 8]];
      received.forEach((p) => {
        const hook = tiled.tile(9, false, 1);
        expect(hook?.needs(0).merge).to.equal(false);
        const block = hook?.block(1);
        expect(block?.attn).to.equal(true);
        const hidden = tf.tensor2d(Array.from({ length: 9 }, (_, i) => [i, 1]), [9, 2]);
        const attn = attentionReceiving(p);
        const out = block?.merge?.(hidden, attn);
        expect(out?.shape).to.deep.equal([4, 2]);
        out?.dispose();
        hidden.dispose();
        attn.dispose();
      });
      expect(tiled.survivors()).to.deep.equal(kept);
    });

    it('ToMe without a CLS merges token 0 like any other (with a CLS it is protected)', () => {
      // A = even indices {0, 2}, B = odd {1, 3}; token 0 is identical to token 1, the rest orthogonal.
      const metric = tf.tensor2d([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]);
      const free = tomeBipartite({ metric, remove: 1, clsToken: false });
      expect(free.matches.map((m) => [m.source, m.destination])).to.deep.equal([[0, 1]]);
      const cls = tomeBipartite({ metric, remove: 1, clsToken: true });
      expect(cls.matches[0].source).to.equal(2); // 0 is protected: the only other A token merges
      metric.dispose();
    });
  });

  describe('survivor layouts', () => {
    // A 84 x 42 (w x h) image: best resolution 42 x 84, a 1 x 2 grid, base tile + 2 tiles.
    it("'square': 4 survivors per tile are a 2 x 2 grid, packed as HF packs a 2 x 2 tile", () => {
      const grids = tileGrids(config, [[0, 2, 4, 8], [1, 2, 3, 5], [0, 1, 7, 8]], 'square');
      const plan = imagePackingPlan(config, 42, 84, grids);
      // Base: tile 0's tokens 0..3; then grid row 0: tile 1's tokens 0, 1 (= 4, 5) and tile 2's 0, 1
      // (= 8, 9), newline; row 1: 6, 7, 10, 11, newline. Grid 2 x 4, aspect 2 = 84/42: no unpadding.
      expect(plan.rows.map((r) => (r.sources.length === 0 ? 'nl' : r.sources[0]))).to.deep.equal([0, 1, 2, 3, 4, 5, 8, 9, 'nl', 6, 7, 10, 11, 'nl']);
      const tiles = [0, 1, 2].map((t) => tf.tensor2d(Array.from({ length: 4 }, (_, i) => [4 * t + i]), [4, 1]));
      const newline = tf.tensor1d([-1]);
      const packed = applyPackingPlan(plan, tiles, newline);
      expect(Array.from(packed.dataSync())).to.deep.equal([0, 1, 2, 3, 4, 5, 8, 9, -1, 6, 7, 10, 11, -1]);
      [...tiles, newline, packed].forEach((t) => t.dispose());
    });

    it("'positions': survivors keep their cells; unpadding crops the original grid; rows keep their newline", () => {
      // 84 x 20 image: best resolution 42 x 84 (1 x 2 tiles), feature grid 3 x 6; 84/20 = 4.2 > 6/3,
      // so the height is cut: new height int(20 * 6 / 84) = 1, top = (3 - 1) // 2 = 1: only grid row 1.
      const survivors = [[0, 2, 4, 8], [0, 3, 4, 5], [1, 3, 4, 7]];
      const plan = imagePackingPlan(config, 20, 84, tileGrids(config, survivors, 'positions'));
      // Base: tile 0's 4 tokens (0..3). Row 1 of tile 1 = cells 3, 4, 5 = its tokens 1, 2, 3 (= 5, 6, 7);
      // of tile 2 = cells 3, 4 (5 removed) = its tokens 1, 2 (= 9, 10); then the row's newline.
      expect(plan.rows.map((r) => (r.sources.length === 0 ? 'nl' : r.sources[0]))).to.deep.equal([0, 1, 2, 3, 5, 6, 7, 9, 10, 'nl']);
      expect(plan.inputCount).to.equal(12);
    });

    it("'positions': a row whose cells were all removed still ends with its newline", () => {
      const plan = imagePackingPlan(config, 20, 84, tileGrids(config, [[0], [0, 1, 2], [6, 7, 8]], 'positions'));
      expect(plan.rows.map((r) => (r.sources.length === 0 ? 'nl' : r.sources[0]))).to.deep.equal([0, 'nl']);
    });

    it('video pooling: 3 x 3 -> 2 x 2 bilinear; with a removed cell the present taps are renormalised', () => {
      // torch interpolate 3 -> 2, align_corners=False: src = (o + 0.5) * 1.5 - 0.5 = 0.25, 1.75.
      expect(bilinearTaps(3, 2)).to.deep.equal([[0, 1, 0.25], [1, 2, 0.75]]);
      // Output (0, 0) mixes cells (0,0) (0,1) (1,0) (1,1) with 0.75*0.75, 0.75*0.25, 0.25*0.75, 0.25*0.25.
      const full = videoPackingPlan(tileGrids(config, [[0, 1, 2, 3, 4, 5, 6, 7, 8]], 'positions'));
      expect(full.rows.length).to.equal(5); // 4 pooled + the trailing newline
      expect(full.rows[0].sources).to.deep.equal([0, 1, 3, 4]);
      expect(full.rows[0].weights).to.deep.equal([0.5625, 0.1875, 0.1875, 0.0625]);
      // Cell 0 removed: tokens are cells 1..8 = indices 0..7; the other three taps over 0.4375 = 3/7, 3/7, 1/7.
      const holed = videoPackingPlan(tileGrids(config, [[1, 2, 3, 4, 5, 6, 7, 8]], 'positions'));
      expect(holed.rows[0].sources).to.deep.equal([0, 2, 3]);
      holed.rows[0].weights.forEach((w, i) => expect(w).to.be.closeTo([3 / 7, 3 / 7, 1 / 7][i], 1e-15));
    });

    it("'square' refuses a survivor count that is no square, naming the layout", () => {
      expect(() => tileGrids(config, [[0, 1, 2]], 'square')).to.throw("tile 0 keeps 3 of 9 tokens, not a perfect square: the merge config's vision layout 'square'");
    });
  });

  describe('config', () => {
    it('a vision stage leaving no perfect square per tile is refused with the config named', () => {
      expect(() => resolveMergeConfig({ vision: { rule: 'illava', layers: [5, 6, 7, 8], remove: 90 } }, ONEVISION_SHAPE)).to.throw(
        "vision: layers [5, 6, 7, 8] removing 90 each leave 369 of 729 tokens per tile, not a perfect square; layout 'square'",
      );
      expect(() => resolveMergeConfig({ video: { vision: { rule: 'illava', layers: [3], remove: 2 } } }, ONEVISION_SHAPE)).to.throw('video.vision: layers [3] removing 2 each leave 727');
      // 'positions' keeps true cells: any count.
      expect(() => resolveMergeConfig({ vision: { rule: 'illava', layers: [5], remove: 90, layout: 'positions' } }, ONEVISION_SHAPE)).to.not.throw();
      expect(() => resolveMergeConfig({ vision: { rule: 'illava', layers: [5], remove: 90, layout: 'positions' } }, { visionLayersRun: 23, patches: 576, llmLayers: 32 })).to.throw("vision: layout 'positions' applies to anyres tiles");
    });

    it('the CLI spec reads vision.layout and the video stages, and names a bad one', () => {
      expect(parseMergeSpec('{"vision":{"rule":"illava","layers":[1],"remove":5,"layout":"positions"},"video":{"llm":{"rule":"fastv","layers":[1],"keep":0.5}}}')).to.deep.equal({
        vision: { rule: 'illava', layers: [1], remove: 5, layout: 'positions' },
        video: { llm: { rule: 'fastv', layers: [1], keep: 0.5 } },
      });
      expect(() => parseMergeSpec('{"vision":{"rule":"illava","layout":"grid"}}')).to.throw('merge spec: vision.layout must be one of: square, positions');
      expect(() => parseMergeSpec('{"video":{"vison":{}}}')).to.throw("merge spec: unknown field 'video.vison' (allowed: vision, llm)");
      expect(() => resolveMergeConfig({ video: { llm: { rule: 'fastv', layers: [0], keep: 0.5 } } }, TINY_OV)).to.throw('video.llm: a merge at layer 0 is impossible');
    });

    it("the OneVision presets are the authors' settings on LLaVA-OneVision-7B's shape", () => {
      expect(presetConfig('illava', ONEVISION_SHAPE)).to.deep.equal({
        vision: { rule: 'illava', layers: [5, 6, 7, 8], remove: 92 }, // 729 - 4 x 92 = 361 = 19^2
        llm: { rule: 'illava', layers: [8], keep: 0.7 },
        video: { vision: { rule: 'illava', layers: [3, 4, 5, 6], remove: 92 }, llm: { rule: 'illava', layers: [2], keep: 0.7 } },
      });
      expect(presetConfig('none', ONEVISION_SHAPE)).to.deep.equal({});
    });

    it('scaled: Qwen2-0.5B (24 layers) merges at round(8/28 * 24) = 7, video at round(2/28 * 24) = 2; the tiny fixture keeps 2 x 2 per tile', () => {
      const half = presetConfig('illava', { ...ONEVISION_SHAPE, llmLayers: 24 });
      expect(half.vision).to.deep.equal({ rule: 'illava', layers: [5, 6, 7, 8], remove: 92 });
      expect(half.llm?.layers).to.deep.equal([7]);
      expect(half.video?.llm?.layers).to.deep.equal([2]);
      // 3 x 3 patches: kept side round(3 * 19 / 27) = 2, 5 tokens go; 5 has no divisor in 2..3, so one
      // block: round(5/26 * 3) = 1 (images), round(3/26 * 3) = 0 (video); LLM layer 1 (the only one).
      const shape = modelShape(config);
      expect(shape).to.deep.equal(TINY_OV);
      expect(presetConfig('illava', shape)).to.deep.equal({
        vision: { rule: 'illava', layers: [1], remove: 5 },
        llm: { rule: 'illava', layers: [1], keep: 0.7 },
        video: { vision: { rule: 'illava', layers: [0], remove: 5 }, llm: { rule: 'illava', layers: [1], keep: 0.7 } },
      });
      // LLaVA-NeXT's tiles (24 x 24, CLS, 23 CLIP blocks run, the LLaVA-1.5 reference): target side
      // 24 * 19 / 27 = 16.9; 17^2 leaves 287 (no 4 blocks), 16^2 leaves 320 = 4 x 80, from block 5.
      expect(presetConfig('illava', { visionLayersRun: 23, patches: 576, llmLayers: 32, anyres: true }).vision).to.deep.equal({ rule: 'illava', layers: [5, 6, 7, 8], remove: 80 });
      // ToMe on the authors' shape: 368 tokens as 23 blocks of 16 (the largest divisor of 368 up to 26 blocks).
      expect(presetConfig('tome', ONEVISION_SHAPE).vision).to.deep.equal({ rule: 'tome', layers: [...Array(23).keys()], remove: 16, proportionalAttention: true });
    });
  });
});
