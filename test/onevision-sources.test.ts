// Source maps of an anyres image on the original photo: where each tile's patches lie (hand-computed
// from the fixture's image_a geometry), and the pictures across tiles from a tracked iLLaVA merge.
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Jimp } from 'jimp';
import { selectBackend } from '../src/backend.js';
import { readLlavaConfig, modelShape, type LlavaConfig } from '../src/config.js';
import { visualFeatures } from '../src/anyres-features.js';
import { TileGeometry } from '../src/anyres-sources.js';
import { writeTileSources } from '../src/visualize-tiles.js';
import { visualize } from '../src/visualize.js';
import { LlavaModel } from '../src/llava.js';
import { loadImage } from '../src/image.js';
import { KVCache } from '../layers/kv-cache.js';
import { MergeSession, resolveMergeConfig } from '../merge/index.js';
import { TINY_ONEVISION_DIR } from './helpers/fixture.js';
import { disposeModules, loadOnevisionModules, onevisionFloats } from './helpers/onevision.js';

describe('anyres source maps on the original photo', function () {
  let config: LlavaConfig;
  before(() => {
    config = readLlavaConfig(TINY_ONEVISION_DIR);
  });

  // image_a, 200 x 60: best resolution 84 x 210 (2 x 5 tiles of 42 px, 3 x 3 patches of 14 px); the
  // photo is resized to 210 x 63 (210 / 200 = 1.05 < 84 / 60) and centred: 10 px of padding on top.
  it('places every tile patch on the photo: base tile stretched, grid tiles through the resize and the padding', () => {
    const g = new TileGeometry(config, 60, 200);
    expect([g.tiles, g.rows, g.cols, g.side, g.patches]).to.deep.equal([11, 2, 5, 3, 99]);
    expect(g.placement).to.deep.equal({ bestH: 84, bestW: 210, newH: 63, newW: 210, padX: 0, padY: 10 });
    const near = (got: unknown, want: number[]) => {
      const b = got as { x0: number; y0: number; x1: number; y1: number };
      [b.x0, b.y0, b.x1, b.y1].forEach((v, i) => expect(v).to.be.closeTo(want[i], 1e-9));
    };
    // Base tile patch 4 (row 1, col 1): 14..28 px of 42, stretched by 200/42 and 60/42.
    near(g.patchBox(0, 4), [14 * 200 / 42, 20, 28 * 200 / 42, 40]);
    // Tile 1 (grid row 0, col 0) patch 0: canvas 0..14 x 0..14 -> x * 200/210, (y - 10) * 60/63, clipped at the top.
    near(g.patchBox(1, 0), [0, 0, 14 * 200 / 210, 4 * 60 / 63]);
    // Tile 6 (grid row 1, col 0) patch 8 (row 2, col 2): canvas x 28..42, y 70..84 -> clipped at the photo's bottom.
    near(g.patchBox(6, 8), [28 * 200 / 210, 60 * 60 / 63, 40, 60]);
    // The inverse: photo (0, 0) -> canvas (0, 10): tile 1, patch 0 = 9; (199, 59) -> canvas (209, 72): tile 10 patch 8 = 98.
    expect(g.gridPatchAt(0, 0)).to.equal(9);
    expect(g.gridPatchAt(199, 59)).to.equal(98);
    expect(g.basePatchAt(199, 59)).to.equal(8);
    expect(() => g.patchBox(11, 0)).to.throw('patchBox: no patch 0 of tile 11 (11 tiles of 9 patches)');
  });

  it('draws a tracked iLLaVA merge of image_a on the photo, one picture per step, across all 11 tiles', async () => {
    await selectBackend('wasm');
    const modules = loadOnevisionModules();
    const dir = mkdtempSync(join(tmpdir(), 'illava-tiles-'));
    try {
      const session = new MergeSession(resolveMergeConfig({ ...resolveMergeConfig('illava', modelShape(config)), trackSources: true }, modelShape(config)));
      const { features } = visualFeatures(modules, config, 'image', { pixelValues: onevisionFloats('image_a_pixel_values'), tiles: 11 }, { height: 60, width: 200 }, session);
      const L = features.shape[0];
      const x = tf.concat([modules.decoder.embed([1, 2, 3]), features, modules.decoder.embed([4, 5])]) as tf.Tensor2D;
      features.dispose();
      const cache = new KVCache(modules.decoder.layers.length);
      modules.decoder.forward(x, [...Array(L + 5).keys()], cache, session.sequenceHook([[3, 3 + L]], L + 4));
      cache.dispose();
      const report = session.reports([L])[0];
      const photo = await loadImage(join(TINY_ONEVISION_DIR, 'image_a.png'));
      const files = await writeTileSources(photo, config, report, join(dir, 'illava'));
      expect(files.map((f) => f.slice(dir.length + 1))).to.deep.equal(['illava-00-input.png', 'illava-01-vision-layer01.png', 'illava-02-llm-layer01.png']);
      // 512 px for the longer side: 512 x round(60 * 512 / 200) = 154 per panel, two panels + an 8 px gap, a 28 px title.
      const png = await Jimp.read(files[1]);
      expect([png.width, png.height]).to.deep.equal([2 * 512 + 8, 154 + 28]);
    } finally {
      disposeModules(modules);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('illava visualize on a OneVision model draws the steps across tiles, the overview and the count plot', async () => {
    const model = await LlavaModel.fromPretrained(TINY_ONEVISION_DIR, { backend: 'wasm', weightFormat: 'f32', quantizedCache: false });
    const dir = mkdtempSync(join(tmpdir(), 'illava-vis-'));
    try {
      const out = await visualize(model, { image: join(TINY_ONEVISION_DIR, 'image_a.png'), outDir: dir, plot: [{ name: 'none', option: 'none' }, { name: 'illava', option: 'illava' }] });
      expect(out.stages.map((s) => [s.stage, s.layer, s.tokens])).to.deep.equal([['input', -1, 99], ['vision', 1, 44], ['llm', 1, 34]]);
      expect(out.files.map((f) => f.slice(dir.length + 1))).to.deep.equal(['illava-00-input.png', 'illava-01-vision-layer01.png', 'illava-02-llm-layer01.png', 'illava-overview.png', 'token-counts.png']);
      expect(out.counts.find((c) => c.name === 'illava')?.vision).to.deep.equal([99, 44, 44]); // blocks 0, 1, 2: the merge in block 1
    } finally {
      model.dispose();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
