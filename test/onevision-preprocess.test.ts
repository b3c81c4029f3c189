// LlavaOnevisionImageProcessor's anyres steps (src/anyres.ts anyresPixelValues) against the
// tiny-llava-onevision pixel_values, which come from HF's slow PIL path (and the original
// LLaVA-NeXT helpers gave the same uint8 canvases and tiles).
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readLlavaConfig } from '../src/config.js';
import { anyresPixelValues, anyresTileProcessor } from '../src/anyres.js';
import { loadImage } from '../src/image.js';
import type { PreprocessorConfig } from '../src/preprocess.js';
import { maxAbsDiff, onevisionArray, TINY_ONEVISION_DIR } from './helpers/fixture.js';
import { onevisionFloats } from './helpers/onevision.js';

describe('LLaVA-OneVision anyres preprocessing on tiny-llava-onevision', function () {
  const config = readLlavaConfig(TINY_ONEVISION_DIR);
  const processor = anyresTileProcessor(JSON.parse(readFileSync(join(TINY_ONEVISION_DIR, 'preprocessor_config.json'), 'utf8')) as PreprocessorConfig);

  for (const [name, tiles, canvas] of [
    ['image_a', 11, [84, 210]],
    ['image_b', 25, [168, 252]],
  ] as const) {
    it(`${name}: canvas (resize + centred zero pad) and pixel_values of the base and every tile are Pillow's exactly`, async () => {
      const img = await loadImage(join(TINY_ONEVISION_DIR, `${name}.png`));
      const out = anyresPixelValues(config, processor, img);
      expect(out.tiles).to.equal(tiles);
      expect([out.canvas.height, out.canvas.width]).to.deep.equal(canvas);
      expect(maxAbsDiff(out.canvas.data, onevisionArray(`${name}_resized_padded_uint8`).data), 'canvas uint8').to.equal(0);
      const diff = maxAbsDiff(out.pixelValues, onevisionFloats(`${name}_pixel_values`));
      if (process.env.ILLAVA_REPORT) console.log(`${name} pixel_values max |diff| ${diff}`);
      expect(diff, 'pixel_values').to.equal(0);
    });
  }

  it('refuses a tile processor whose size is not the tower tile', () => {
    const other = anyresTileProcessor({ size: { height: 56, width: 56 } });
    expect(() => anyresPixelValues(config, other, { width: 2, height: 2, data: new Uint8Array(12) })).to.throw('anyres: the tile processor must give 42x42 tiles (vision_config.image_size), got 56x56');
  });
});
