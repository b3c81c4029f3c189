// Merging on the tiny-llava-onevision fixture, from the stored pixel values through the SigLIP tower
// (every tile its own sequence), the packing and the Qwen2 decoder: 'none' is the plain model; the
// packing plan of unmerged tiles gives HF's packed features (fixture references, unpadding and the
// anyres_max_9 downscale included); every preset keeps its configured counts per tile and per image.
// Counts are worked out by hand from the fixture's sizes in the comments.
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'chai';
import { selectBackend } from '../src/backend.js';
import { readLlavaConfig, modelShape, type LlavaConfig } from '../src/config.js';
import { visualFeatures, type TilePixels } from '../src/anyres-features.js';
import type { LoadedModules } from '../src/load.js';
import { KVCache } from '../layers/kv-cache.js';
import { MergeSession, resolveMergeConfig, type MergeOption, type MergeReport } from '../merge/index.js';
import { maxAbsDiff, onevisionArray, relativeL2, TINY_ONEVISION_DIR } from './helpers/fixture.js';
import { disposeModules, loadOnevisionModules, onevisionFloats } from './helpers/onevision.js';

const TOLERANCE = 1e-4; // the fixture README's float32 tolerance for packed features and logits
const IMAGE_A = { height: 60, width: 200 };
const IMAGE_B = { height: 300, width: 451 };

function check(what: string, got: ArrayLike<number>, want: ArrayLike<number>): void {
  expect(maxAbsDiff(got, want), `${what} max |diff|`).to.be.at.most(TOLERANCE);
  expect(relativeL2(got, want), `${what} relative L2`).to.be.at.most(TOLERANCE);
}

const pixelsOf = (name: string, tiles: number): TilePixels => ({ pixelValues: onevisionFloats(name), tiles });

describe('iLLaVA merging on tiny-llava-onevision (tiles -> packing -> decoder)', function () {
  let config: LlavaConfig;
  let modules: LoadedModules;
  before(async () => {
    await selectBackend('wasm');
    config = readLlavaConfig(TINY_ONEVISION_DIR);
    modules = loadOnevisionModules();
  });
  after(() => disposeModules(modules));

  /** The prompt of image_a (or video) with its feature run replaced by `features`, through the decoder with the session's sequence hook. */
  function prefill(which: 'image_a' | 'video', features: tf.Tensor2D, session: MergeSession | undefined): { logits: Float32Array; reports: MergeReport[] } {
    const ids = Array.from(onevisionArray(`${which}_input_ids_expanded`).data);
    const [first, last] = which === 'image_a' ? [3, 75] : [3, 19]; // expected.json runs.*.feature_positions
    const x = tf.tidy(() => {
      const embedded = modules.decoder.embed(ids);
      return tf.concat([tf.slice(embedded, [0, 0], [first, -1]), features, tf.slice(embedded, [last + 1, 0], [-1, -1])], 0) as tf.Tensor2D;
    });
    const n = x.shape[0];
    const cache = new KVCache(modules.decoder.layers.length);
    try {
      const span: [number, number] = [first, first + features.shape[0]];
      const hook = session?.sequenceHook([span], n - 1);
      const { logits } = modules.decoder.forward(x, [...Array(n).keys()], cache, hook);
      return { logits, reports: session ? session.reports([features.shape[0]]) : [] };
    } finally {
      cache.dispose();
      x.dispose();
    }
  }

  it("'none' is the plain model: the same packed features and logits as without a session, and HF's", () => {
    const before = tf.memory().numTensors;
    const plain = visualFeatures(modules, config, 'image', pixelsOf('image_a_pixel_values', 11), IMAGE_A);
    const session = new MergeSession(resolveMergeConfig('none', modelShape(config)));
    const none = visualFeatures(modules, config, 'image', pixelsOf('image_a_pixel_values', 11), IMAGE_A, session);
    expect(Array.from(none.features.dataSync())).to.deep.equal(Array.from(plain.features.dataSync()));
    check('image_a packed features', none.features.dataSync(), onevisionFloats('image_a_packed_features'));
    const a = prefill('image_a', plain.features, undefined);
    const b = prefill('image_a', none.features, session);
    expect(Array.from(b.logits)).to.deep.equal(Array.from(a.logits));
    check('image_a logits', b.logits, onevisionFloats('image_a_last_logits'));
    expect(b.reports).to.deep.equal([{ patches: 73, vision: [], language: [], tokens: 73 }]);
    plain.features.dispose();
    none.features.dispose();
    expect(tf.memory().numTensors, 'no tensor leaked').to.equal(before);
  });

  // remove 0: the session is active, so the tiles go through the packing plan, but nothing merges.
  for (const layout of ['square', 'positions'] as const) {
    it(`the packing plan of unmerged tiles ('${layout}') gives HF's packed features: image_a (unpadding), image_b (anyres_max_9 downscale), video (2x2 pooling)`, () => {
      const cases = [
        { kind: 'image' as const, pixels: pixelsOf('image_a_pixel_values', 11), size: IMAGE_A, want: 'image_a_packed_features', tokens: 73 },
        { kind: 'image' as const, pixels: pixelsOf('image_b_pixel_values', 25), size: IMAGE_B, want: 'image_b_packed_features', tokens: 93 },
        { kind: 'video' as const, pixels: pixelsOf('video_pixel_values', 4), size: null, want: 'video_features', tokens: 17 },
      ];
      for (const c of cases) {
        const session = new MergeSession(resolveMergeConfig({ vision: { rule: 'illava', layers: [1], remove: 0, layout } }, modelShape(config)));
        const out = visualFeatures(modules, config, c.kind, c.pixels, c.size, session);
        expect(out.features.shape[0], c.want).to.equal(c.tokens);
        check(`${c.want} (${layout})`, out.features.dataSync(), onevisionFloats(c.want));
        out.features.dispose();
      }
    });
  }

  // image_a (200 x 60): best resolution 84 x 210, 2 x 5 tiles + base = 11 tiles of 9 patches.
  // illava (scaled preset): block 1 removes 5 per tile -> 4 = 2 x 2 per tile (44 in all). Packed on
  // side 2: grid 4 x 10; 200/60 > 10/4, new height int(60 * 10 / 200) = 3, top (4 - 3) // 2 = 0, so
  // no row is cut; anyres_max_9: sqrt(40 / (9 * 4)) = 1.05 < 1.1, no downscale: 4 + 4 x 11 = 48
  // tokens. LLM layer 1 keeps 0.7: round(48 x 0.3) = 14 go -> 34.
  // fastv: LLM layer 1 keep 0.5 of the 73 unmerged: round(36.5) = 36 (half to even) go -> 37.
  // tome: 9 -> 4 cannot be reached with r <= half of what is left, so the preset has no stage: as none.
  const presets: Array<{ option: MergeOption; tile: number; tokens: number; vision: number[]; language: number[] }> = [
    { option: 'illava', tile: 4, tokens: 34, vision: [44], language: [34] },
    { option: 'fastv', tile: 9, tokens: 37, vision: [], language: [37] },
    { option: 'tome', tile: 9, tokens: 73, vision: [], language: [] },
    { option: 'none', tile: 9, tokens: 73, vision: [], language: [] },
    // positions, block 0 removing 3 per tile: 6 per tile, 66 in all; the packed count depends on the cells.
    { option: { vision: { rule: 'illava', layers: [0], remove: 3, layout: 'positions' }, llm: { rule: 'illava', layers: [1], keep: 0.5 } }, tile: 6, tokens: -1, vision: [66], language: [-1] },
  ];
  for (const p of presets) {
    it(`${typeof p.option === 'string' ? p.option : 'a positions-layout config'}: ${p.tile} tokens per tile, ${p.tokens < 0 ? 'the' : p.tokens} image tokens after the LLM stage`, () => {
      const before = tf.memory().numTensors;
      const session = new MergeSession(resolveMergeConfig(p.option, modelShape(config)));
      const out = visualFeatures(modules, config, 'image', pixelsOf('image_a_pixel_values', 11), IMAGE_A, session);
      expect(out.tileTokens).to.deep.equal(Array(11).fill(p.tile));
      const packed = out.features.shape[0];
      const { reports } = prefill('image_a', out.features, session);
      out.features.dispose();
      const r = reports[0];
      expect(r.vision.map((v) => v.tokens)).to.deep.equal(p.vision);
      if (p.tokens >= 0) {
        expect(r.tokens).to.equal(p.tokens);
        expect(r.language.map((l) => l.tokens)).to.deep.equal(p.language);
      } else {
        // keep 0.5 of the packed span: Python's round(packed / 2) go (an odd half rounds to even).
        const half = packed / 2;
        const removed = Number.isInteger(half) ? half : Math.floor(half) % 2 === 0 ? Math.floor(half) : Math.ceil(half);
        expect(r.tokens).to.equal(packed - removed);
        expect(packed).to.be.within(4 * 6 + 4 + 1, 9 + 4 * 16); // base 6 + at least a newline per row; at most the unmerged 73
      }
      if (p.vision.length > 0) {
        expect(r.patches).to.equal(99);
        expect(r.tiles?.map((t) => t.tokens)).to.deep.equal(Array(11).fill(p.tile));
        expect(r.tiles?.every((t) => t.patches === 9 && t.vision.length === 1)).to.equal(true);
      }
      expect(tf.memory().numTensors, 'no tensor leaked').to.equal(before);
    });
  }

  it('video: the video stages apply (block 0, LLM layer 1): 4 frames of 2 x 2 pool to 1 token each, + the newline = 5 -> 3', () => {
    // Frames keep 4 = 2 x 2, pooled to ceil(2 / 2)^2 = 1 each: 4 + 1 newline = 5; keep 0.7: round(1.5) = 2 go -> 3.
    const session = new MergeSession(resolveMergeConfig('illava', modelShape(config)));
    const out = visualFeatures(modules, config, 'video', pixelsOf('video_pixel_values', 4), null, session);
    expect(out.tileTokens).to.deep.equal([4, 4, 4, 4]);
    expect(out.features.shape[0]).to.equal(5);
    const { reports } = prefill('video', out.features, session);
    out.features.dispose();
    expect(reports[0].stages?.map((s) => [s.stage, s.layer, s.tokens])).to.deep.equal([['vision', 0, 16], ['llm', 1, 3]]);
  });

  it('two images are two spans: each keeps 0.7 of its own packed tokens; source maps cover every tile', () => {
    // image_b (451 x 300): 4 x 6 tiles + base = 25; side 2: grid 8 x 12, new height int(300 * 12 / 451)
    // = 7, top 0: 8 rows; anyres_max_9: sqrt(96 / 36) = 1.63 > 1.1 -> int(8 / 1.63) = 4 x int(12 / 1.63)
    // = 7: 4 + 4 x 8 = 36 tokens; round(36 x 0.3) = 11 go -> 25. image_a: 48 -> 34 (above).
    const session = new MergeSession(resolveMergeConfig({ ...resolveMergeConfig('illava', modelShape(config)), trackSources: true }, modelShape(config)));
    const a = visualFeatures(modules, config, 'image', pixelsOf('image_a_pixel_values', 11), IMAGE_A, session);
    const b = visualFeatures(modules, config, 'image', pixelsOf('image_b_pixel_values', 25), IMAGE_B, session);
    expect([a.features.shape[0], b.features.shape[0]]).to.deep.equal([48, 36]);
    const text = tf.randomNormal([3, 64], 0, 0.02, 'float32', 1) as tf.Tensor2D;
    const x = tf.concat([text, a.features, text, b.features, text], 0) as tf.Tensor2D;
    const n = x.shape[0];
    const cache = new KVCache(modules.decoder.layers.length);
    modules.decoder.forward(x, [...Array(n).keys()], cache, session.sequenceHook([[3, 51], [54, 90]], n - 1));
    cache.dispose();
    [text, x, a.features, b.features].forEach((t) => t.dispose());
    const reports = session.reports([48, 36]);
    expect(reports.map((r) => r.tokens)).to.deep.equal([34, 25]);
    expect(reports.map((r) => r.patches)).to.deep.equal([99, 225]);
    expect(reports.map((r) => r.tiles?.length)).to.deep.equal([11, 25]);
    for (const r of reports) {
      // iLLaVA recycles: every patch is held by some token after the vision stage, tile by tile.
      for (const t of r.tiles ?? []) expect(Array.from(t.patchToToken ?? []).every((k) => k >= 0 && k < 4)).to.equal(true);
      expect(r.patchToToken?.length).to.equal(r.patches);
      expect(Array.from(r.patchToToken ?? []).every((k) => k < r.tokens)).to.equal(true);
    }
  });
});
