// LLaVA-OneVision anyres packing (src/anyres.ts) against the tiny-llava-onevision references
// (HF pack_image_features semantics, cross-checked there against the original LLaVA-NeXT unpad and
// torch F.interpolate), and the whole image path from the stored pixel_values to the logits.
import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { selectBackend } from '../src/backend.js';
import { parseLlavaConfig, readLlavaConfig, type LlavaConfig } from '../src/config.js';
import type { LoadedModules } from '../src/load.js';
import { anyresPixelValues, anyresTileProcessor, packedLayout, packImageFeatures, packVideoFeatures, selectBestResolution, tileCount, videoTokenCount } from '../src/anyres.js';
import { KVCache } from '../layers/kv-cache.js';
import { loadImage } from '../src/image.js';
import type { PreprocessorConfig } from '../src/preprocess.js';
import { maxAbsDiff, onevisionArray, relativeL2, topK, TINY_ONEVISION_DIR } from './helpers/fixture.js';
import { disposeModules, loadOnevisionModules, onevisionFloats } from './helpers/onevision.js';

const TOLERANCE = 1e-4;
const TILE = 42;

interface ImageCase { image_size_hw: [number, number]; best_resolution_hw: [number, number]; grid_rows_cols: [number, number]; num_tiles_including_base: number; feature_grid_hw_after_unpad: [number, number]; feature_grid_hw_final: [number, number]; num_image_tokens: number }
const expected = JSON.parse(readFileSync(join(TINY_ONEVISION_DIR, 'expected.json'), 'utf8')) as {
  image_cases: Record<'image_a' | 'image_b', ImageCase>;
  num_video_tokens: number;
  video_frames: number;
  runs: { image_a: { last_top5_ids: number[]; feature_positions: [number, number] } };
};

const floats = onevisionFloats;

function check(what: string, got: ArrayLike<number>, want: ArrayLike<number>): void {
  if (process.env.ILLAVA_REPORT) console.log(`${what}: max ${maxAbsDiff(got, want).toExponential(2)} rel ${relativeL2(got, want).toExponential(2)}`);
  expect(maxAbsDiff(got, want), `${what} max |diff|`).to.be.at.most(TOLERANCE);
  expect(relativeL2(got, want), `${what} relative L2`).to.be.at.most(TOLERANCE);
}

describe('LLaVA-OneVision anyres packing on tiny-llava-onevision', function () {
  const config: LlavaConfig = readLlavaConfig(TINY_ONEVISION_DIR);

  for (const name of ['image_a', 'image_b'] as const) {
    it(`layout and token count of ${name} are the processor's (best resolution, unpadding, anyres_max_9)`, () => {
      const c = expected.image_cases[name];
      const [H, W] = c.image_size_hw;
      expect(selectBestResolution(H, W, config.anyres?.imageGridPinpoints ?? [])).to.deep.equal(c.best_resolution_hw);
      const layout = packedLayout(config, H, W);
      expect([layout.rows, layout.cols]).to.deep.equal(c.grid_rows_cols);
      expect([layout.unpaddedHeight, layout.unpaddedWidth]).to.deep.equal(c.feature_grid_hw_after_unpad);
      expect([layout.height, layout.width]).to.deep.equal(c.feature_grid_hw_final);
      expect(layout.tokens).to.equal(c.num_image_tokens);
      expect(tileCount(config, H, W)).to.equal(c.num_tiles_including_base);
    });
  }

  it("the count formula gives HF's integration-test numbers on the real 0.5B shape (899x1024 -> 6551 tokens, 10 tiles)", () => {
    const json = JSON.parse(readFileSync(join(TINY_ONEVISION_DIR, 'config.json'), 'utf8')) as Record<string, unknown>;
    const pinpoints: number[][] = [];
    for (let i = 1; i <= 6; i++) for (let j = 1; j <= 6; j++) pinpoints.push([384 * i, 384 * j]);
    json.image_grid_pinpoints = pinpoints;
    Object.assign(json.vision_config as Record<string, unknown>, { image_size: 384, patch_size: 14 });
    const real = parseLlavaConfig(json);
    expect(packedLayout(real, 899, 1024).tokens).to.equal(6551);
    expect(tileCount(real, 899, 1024)).to.equal(10);
  });

  it('a <video> of 4 frames stands for 17 tokens', () => {
    expect(videoTokenCount(config, expected.video_frames)).to.equal(expected.num_video_tokens);
  });

  describe('with the model', function () {
    let modules: LoadedModules;
    before(async () => {
      await selectBackend('wasm');
      modules = loadOnevisionModules();
    });
    after(() => disposeModules(modules));

    for (const name of ['image_a', 'image_b'] as const) {
      it(`packs the reference projector output of ${name} into the reference packed features`, () => {
        const c = expected.image_cases[name];
        const before = tf.memory().numTensors;
        const projected = tf.tensor3d(floats(`${name}_projector_output`), [c.num_tiles_including_base, 9, 64]);
        const packed = packImageFeatures(config, projected, c.image_size_hw[0], c.image_size_hw[1], modules.projector.imageNewline);
        projected.dispose();
        expect(packed.shape).to.deep.equal([c.num_image_tokens, 64]);
        check(`${name} packed features`, packed.dataSync(), floats(`${name}_packed_features`));
        packed.dispose();
        expect(tf.memory().numTensors).to.equal(before);
      });
    }

    it('pools the reference video projector output 2x2 bilinear with one trailing newline', () => {
      const projected = tf.tensor3d(floats('video_projector_output'), [4, 9, 64]);
      const packed = packVideoFeatures(config, projected, modules.projector.imageNewline);
      projected.dispose();
      expect(packed.shape).to.deep.equal([17, 64]);
      check('video features', packed.dataSync(), floats('video_features'));
      packed.dispose();
    });

    for (const from of ['the stored pixel_values', 'image_a.png'] as const) {
      it(`image_a end to end from ${from}: tiles -> SigLIP -> projector -> packing -> Qwen2 logits`, async () => {
        const c = expected.image_cases.image_a;
        const pixels = from === 'image_a.png'
          ? anyresPixelValues(config, anyresTileProcessor(JSON.parse(readFileSync(join(TINY_ONEVISION_DIR, 'preprocessor_config.json'), 'utf8')) as PreprocessorConfig), await loadImage(join(TINY_ONEVISION_DIR, 'image_a.png'))).pixelValues
          : floats('image_a_pixel_values');
        const before = tf.memory().numTensors;
        const perTile: tf.Tensor2D[] = [];
        for (let t = 0; t < c.num_tiles_including_base; t++) {
          const tile = tf.tensor3d(pixels.subarray(t * 3 * TILE * TILE, (t + 1) * 3 * TILE * TILE), [3, TILE, TILE]);
          const features = modules.vision.forward(tile);
          tile.dispose();
          perTile.push(modules.projector.apply(features));
          features.dispose();
        }
        const projected = tf.stack(perTile) as tf.Tensor3D;
        perTile.forEach((p) => p.dispose());
        const packed = packImageFeatures(config, projected, c.image_size_hw[0], c.image_size_hw[1], modules.projector.imageNewline);
        projected.dispose();
        check(`image_a packed features (from ${from})`, packed.dataSync(), floats('image_a_packed_features'));
        const ids = Array.from(onevisionArray('image_a_input_ids_expanded').data);
        const [first, last] = expected.runs.image_a.feature_positions;
        expect(last - first + 1, 'the processor expanded <image> to the packed count').to.equal(packed.shape[0]);
        const x = tf.tidy(() => {
          const embedded = modules.decoder.embed(ids);
          return tf.concat([tf.slice(embedded, [0, 0], [first, -1]), packed, tf.slice(embedded, [last + 1, 0], [-1, -1])], 0) as tf.Tensor2D;
        });
        packed.dispose();
        const cache = new KVCache(modules.decoder.layers.length);
        const { logits } = modules.decoder.forward(x, ids.map((_, i) => i), cache);
        cache.dispose();
        check(`image_a logits (from ${from})`, logits, floats('image_a_last_logits'));
        expect(topK(logits, 5)).to.deep.equal(expected.runs.image_a.last_top5_ids);
        expect(tf.memory().numTensors, 'no tensor leaked').to.equal(before);
      });
    }

    it('rejects a tile count that does not fit the image size', () => {
      const projected = tf.zeros([5, 9, 64]) as tf.Tensor3D;
      expect(() => packImageFeatures(config, projected, 60, 200, modules.projector.imageNewline)).to.throw('packImageFeatures: 5 tiles of 9 features, but a 200x60 image needs 1 + 2x5 tiles of 9');
      projected.dispose();
    });
  });
});
