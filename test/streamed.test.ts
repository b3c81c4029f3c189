// Weight residency (src/streamed.ts): streamed decoder layers (stored bytes on the host, built per
// call) give the same output as resident ones; 'auto' picks by model size and backend.
import { expect } from 'chai';
import { selectBackend } from '../src/backend.js';
import { LlavaModel, type PixelValues } from '../src/llava.js';
import { readLlavaConfig } from '../src/config.js';
import { LlavaTokenizer } from '../src/tokenizer.js';
import { ImageProcessor } from '../src/preprocess.js';
import { StreamedDecoderLayer, chooseResidency, weightBytes } from '../src/streamed.js';
import { archConfig } from '../scripts/random-model.js';
import { asFloat16Source, openWeights } from '../weights/index.js';
import { expectedArray, TINY_LLAVA_DIR } from './helpers/fixture.js';

function maxRel(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let scale = 0;
  a.forEach((v, j) => {
    diff = Math.max(diff, Math.abs(v - b[j]));
    scale = Math.max(scale, Math.abs(v));
  });
  return diff / scale;
}

describe('streamed weights: decoder layers built per call from host bytes', function () {
  before(() => selectBackend('wasm'));

  for (const dtype of ['F32', 'F16'] as const) {
    it(`streamed equals resident on the tiny fixture (${dtype} stored): same tokens, logits within 1e-5`, async () => {
      const config = readLlavaConfig(TINY_LLAVA_DIR);
      const tokenizer = await LlavaTokenizer.fromDir(TINY_LLAVA_DIR);
      const imageProcessor = await ImageProcessor.fromFile(TINY_LLAVA_DIR);
      const pixels: PixelValues = { pixelValues: expectedArray('pixel_values').data, height: 56, width: 56 };
      const models: LlavaModel[] = [];
      const files = openWeights(TINY_LLAVA_DIR);
      try {
        const source = dtype === 'F16' ? asFloat16Source(files) : files;
        for (const weights of ['resident', 'streamed'] as const) {
          models.push(await LlavaModel.fromParts({ name: 'tiny', config, source, tokenizer, imageProcessor }, { weights }));
        }
        const [resident, streamed] = models;
        expect(resident.residency.residency).to.equal('resident');
        expect(streamed.residency.residency).to.equal('streamed');
        expect(streamed.decoder.layers.every((l) => l instanceof StreamedDecoderLayer)).to.equal(true);
        expect(resident.decoder.layers.some((l) => l instanceof StreamedDecoderLayer)).to.equal(false);
        expect(streamed.parameterCount()).to.equal(resident.parameterCount());
        const layer = streamed.decoder.layers[0] as StreamedDecoderLayer;
        // Final layout kept on the host: fp16 where exact (F16 storage, q heads' 1/sqrt(d) included), else float32.
        expect(layer.hostBytes).to.equal((dtype === 'F16' ? 2 : 4) * layer.offHeapParameters);
        for (const merge of ['none', 'illava'] as const) {
          const input = { prompt: 'What is shown in this image?', images: [pixels], maxNewTokens: 8, stopIds: [], returnLogits: true, merge };
          const a = await resident.generate(input);
          const b = await streamed.generate(input);
          expect(b.tokenIds, merge).to.deep.equal(a.tokenIds);
          a.logits!.forEach((row, i) => expect(maxRel(row, b.logits![i]), `${merge} step ${i}`).to.be.below(1e-5));
          // Same float32 weights, same kernels: bit-identical.
          a.logits!.forEach((row, i) => expect(Array.from(b.logits![i]), `${merge} step ${i} exact`).to.deep.equal(Array.from(row)));
        }
      } finally {
        models.forEach((m) => m.dispose());
        files.close();
      }
    });
  }

  it('streamed with threads: 2 (worker halves built per call too) equals resident', async () => {
    const pixels: PixelValues = { pixelValues: expectedArray('pixel_values').data, height: 56, width: 56 };
    const resident = await LlavaModel.fromPretrained(TINY_LLAVA_DIR, { weights: 'resident' });
    const both = await LlavaModel.fromPretrained(TINY_LLAVA_DIR, { weights: 'streamed', threads: 2 });
    try {
      const input = { prompt: 'What is shown in this image?', images: [pixels], maxNewTokens: 6, stopIds: [], returnLogits: true };
      const a = await resident.generate(input);
      const b = await both.generate(input);
      expect(b.tokenIds).to.deep.equal(a.tokenIds);
      a.logits!.forEach((row, i) => expect(maxRel(row, b.logits![i]), `step ${i}`).to.be.below(1e-5));
    } finally {
      resident.dispose();
      both.dispose();
    }
  });

  it('rejects an unknown weights option', async () => {
    let error: unknown;
    try {
      await LlavaModel.fromPretrained(TINY_LLAVA_DIR, { weights: 'gpu' as 'auto' });
    } catch (e) {
      error = e;
    }
    expect(String(error)).to.match(/weights must be auto, resident or streamed/);
  });

  it('auto: resident for the tiny fixture, streamed for LLaVA-1.5-7B on wasm (fits on the host)', async () => {
    const tiny = readLlavaConfig(TINY_LLAVA_DIR);
    expect(chooseResidency(tiny, 'wasm').residency).to.equal('resident');
    const full = archConfig('llava-1.5-7b');
    const w = weightBytes(full);
    // 32 LLaMA-7B layers of 202M values each, float32.
    expect(w.decoderLayers / 2 ** 30).to.be.within(24, 25);
    expect(chooseResidency(full, 'wasm').residency).to.equal('streamed');
    expect(chooseResidency(full, 'wasm', { releaseWeights: true }).residency).to.equal('streamed');
    // `npm run bench`'s 2-layer slice fits resident with released weights (measured), 3 layers do not.
    expect(chooseResidency(archConfig('llava-1.5-7b', { llmLayers: 2 }), 'wasm', { releaseWeights: true }).residency).to.equal('resident');
    expect(chooseResidency(archConfig('llava-1.5-7b', { llmLayers: 2 }), 'wasm').residency).to.equal('streamed');
    expect(chooseResidency(archConfig('llava-1.5-7b', { llmLayers: 3 }), 'wasm', { releaseWeights: true }).residency).to.equal('streamed');
    expect(chooseResidency(full, 'cpu', { totalMemory: 24 * 2 ** 30 }).residency).to.equal('streamed');
    expect(chooseResidency(full, 'cpu', { totalMemory: 128 * 2 ** 30 }).residency).to.equal('resident');
    const model = await LlavaModel.fromPretrained(TINY_LLAVA_DIR);
    expect(model.residency.residency).to.equal('resident');
    model.dispose();
  });
});
