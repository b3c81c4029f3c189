// LLaVA-1.5 runtime against the tiny-llava fixture, whose expected values come from OpenAI's CLIP
// code and llama2.c's LLaMA in float64 (see test/fixtures/tiny-llava/README.md).
import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LlavaModel, type PixelValues } from '../src/llava.js';
import { selectBackend } from '../src/backend.js';
import { expectations, expectedArray, maxAbsDiff, relativeL2, REPO_ROOT, topK, TINY_LLAVA_DIR } from './helpers/fixture.js';

const TOLERANCE = 1e-4;

describe('LLaVA-1.5 runtime on tiny-llava', function () {
  let model: LlavaModel;
  const exp = expectations();
  const pixels: PixelValues = { pixelValues: expectedArray('pixel_values').data, height: 56, width: 56 };
  const imagePrompt = { prompt: 'What is shown in this image?', images: [pixels] };
  const textPrompt = { prompt: 'Tell me a story.' };

  before(async () => {
    await selectBackend('wasm');
    model = await LlavaModel.fromPretrained(TINY_LLAVA_DIR);
  });
  after(() => model?.dispose());

  it('builds the reference prompt ids with the chat template', () => {
    expect(model.promptIds(imagePrompt)).to.deep.equal(exp.prompts.image.input_ids);
    expect(model.promptIds(textPrompt)).to.deep.equal(exp.prompts.text.input_ids);
  });

  it('vision features (hidden_states[-2], CLS dropped) match OpenAI CLIP', () => {
    const features = model.visionFeatures(pixels);
    const rel = relativeL2(features.dataSync(), expectedArray('vision_features').data);
    features.dispose();
    expect(rel).to.be.below(TOLERANCE);
  });

  it('projector output matches', () => {
    const projected = model.imageFeatures(pixels);
    expect(projected.shape).to.deep.equal([16, 64]);
    const rel = relativeL2(projected.dataSync(), expectedArray('projector_output').data);
    projected.dispose();
    expect(rel).to.be.below(TOLERANCE);
  });

  for (const [name, input, key] of [
    ['image', imagePrompt, 'image_prompt_last_logits'],
    ['text', textPrompt, 'text_prompt_last_logits'],
  ] as const) {
    it(`last-position logits of the ${name} prompt match llama2.c (rel L2 <= 1e-4, same top-5)`, async () => {
      const logits = await model.logits(input);
      const expected = expectedArray(key).data;
      expect(relativeL2(logits, expected)).to.be.below(TOLERANCE);
      expect(topK(logits, 5)).to.deep.equal(exp.prompts[name].last_logits_top5_ids);
    });

    it(`10 greedy tokens of the ${name} prompt are the reference's, with and without the KV cache`, async () => {
      const cached = await model.generate({ ...input, maxNewTokens: 10, stopIds: [] });
      expect(cached.tokenIds).to.deep.equal(exp.prompts[name].greedy_ids);
      const recomputed = await model.generate({ ...input, maxNewTokens: 10, stopIds: [], useCache: false });
      expect(recomputed.tokenIds).to.deep.equal(exp.prompts[name].greedy_ids);
    });
  }

  for (const [name, input, key] of [
    ['image', imagePrompt, 'image_prompt_greedy_step_logits'],
    ['text', textPrompt, 'text_prompt_greedy_step_logits'],
  ] as const) {
    it(`logits of every decode step (KV cache) match the reference, ${name} prompt`, async () => {
      const out = await model.generate({ ...input, maxNewTokens: 10, stopIds: [], returnLogits: true });
      const expected = expectedArray(key).data;
      const vocab = model.config.text.vocabSize;
      expect(out.logits).to.have.length(10);
      out.logits?.forEach((row, i) => expect(relativeL2(row, expected.subarray(i * vocab, (i + 1) * vocab)), `step ${i}`).to.be.below(TOLERANCE));
    });
  }

  it('generates from an image file (jimp decode + PIL-compatible preprocessing)', async () => {
    const fromFile = await model.logits({ prompt: imagePrompt.prompt, images: [join(TINY_LLAVA_DIR, 'image.png')] });
    const fromPixels = await model.logits(imagePrompt);
    expect(relativeL2(fromFile, fromPixels)).to.be.below(1e-3);
  });

  it('handles several images and video frames in one prompt', async () => {
    const out = await model.generate({ prompt: 'Compare.', images: [pixels, pixels], video: [pixels, pixels], maxNewTokens: 2, stopIds: [] });
    expect(out.sequenceLength.input).to.equal(model.promptIds({ prompt: 'Compare.', images: [pixels, pixels, pixels, pixels] }).length + 4 * 15);
    expect(out.tokenIds).to.have.length(2);
  });

  it('20 consecutive generate calls leak no tensors', async () => {
    await model.generate({ ...imagePrompt, maxNewTokens: 3 });
    const before = tf.memory().numTensors;
    for (let i = 0; i < 20; i++) await model.generate({ ...imagePrompt, maxNewTokens: 3, stopIds: [] });
    expect(tf.memory().numTensors).to.equal(before);
    await model.generate({ ...imagePrompt, maxNewTokens: 3, stopIds: [], useCache: false, merge: 'illava' });
    expect(tf.memory().numTensors, 'no-cache mode with merging').to.equal(before);
  });

  it('streams text through onToken and honours stop strings and sampling seeds', async () => {
    const pieces: string[] = [];
    const out = await model.generate({ ...imagePrompt, maxNewTokens: 10, stopIds: [], onToken: (t) => pieces.push(t) });
    expect(pieces.join('')).to.equal(out.text);
    expect(out.text).to.equal(model.tokenizer.decode(out.tokenIds, { skipSpecialTokens: true }));
    const word = out.text.trim().split(/\s+/)[1];
    const stopped = await model.generate({ ...imagePrompt, maxNewTokens: 10, stopIds: [], stop: [word] });
    expect(stopped.finishReason).to.equal('stop');
    expect(stopped.text).to.not.include(word);
    const a = await model.generate({ ...imagePrompt, maxNewTokens: 6, stopIds: [], temperature: 1, topK: 50, topP: 0.9, seed: 7 });
    const b = await model.generate({ ...imagePrompt, maxNewTokens: 6, stopIds: [], temperature: 1, topK: 50, topP: 0.9, seed: 7 });
    expect(a.tokenIds).to.deep.equal(b.tokenIds);
  });

  it('rejects a corrupt image and an image count that does not match the prompt', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'illava-img-'));
    try {
      const bad = join(dir, 'bad.png');
      writeFileSync(bad, Buffer.from('this is not a png'));
      await expectReject(model.generate({ prompt: 'x', images: [bad] }), /bad\.png.*(decode|corrupt|unsupported)/i);
      await expectReject(model.generate({ prompt: 'USER: <image> x', images: [], template: 'raw' }), /1 <image> placeholder.*0 image/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('other weight formats and backends give the same model', function () {
  let dir: string;
  let reference: Float32Array;
  const pixels: PixelValues = { pixelValues: expectedArray('pixel_values').data, height: 56, width: 56 };
  const input = { prompt: 'What is shown in this image?', images: [pixels] };

  before(async () => {
    const model = await LlavaModel.fromPretrained(TINY_LLAVA_DIR, { backend: 'wasm' });
    reference = await model.logits(input);
    model.dispose();
    dir = mkdtempSync(join(tmpdir(), 'illava-tfjs-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('the tfjs-converted copy (scripts/convert-to-tfjs) gives the same logits', async () => {
    const out = join(dir, 'f32');
    execFileSync(process.execPath, [join(REPO_ROOT, 'dist/scripts/convert-to-tfjs.js'), '--model', TINY_LLAVA_DIR, '--out', out], { stdio: 'pipe' });
    const model = await LlavaModel.fromPretrained(out, { backend: 'wasm' });
    const logits = await model.logits(input);
    model.dispose();
    expect(maxAbsDiff(logits, reference)).to.equal(0);
  });

  it('a float16 tfjs copy stays close (weights rounded to half precision)', async () => {
    const out = join(dir, 'f16');
    execFileSync(process.execPath, [join(REPO_ROOT, 'dist/scripts/convert-to-tfjs.js'), '--model', TINY_LLAVA_DIR, '--out', out, '--float16'], { stdio: 'pipe' });
    const model = await LlavaModel.fromPretrained(out, { backend: 'wasm' });
    expect(model.storedDtypes()).to.deep.equal(['F16']);
    const logits = await model.logits(input);
    model.dispose();
    expect(relativeL2(logits, reference)).to.be.below(1e-2);
  });

  it('the pure-JS cpu backend gives the same logits as wasm', async () => {
    const model = await LlavaModel.fromPretrained(TINY_LLAVA_DIR, { backend: 'cpu' });
    try {
      expect(model.backend.name).to.equal('cpu');
      const logits = await model.logits(input);
      expect(relativeL2(logits, expectedArray('image_prompt_last_logits').data)).to.be.below(TOLERANCE);
    } finally {
      model.dispose();
      await selectBackend('wasm');
    }
  });
});

describe('model loading errors', function () {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'illava-model-'));
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'preprocessor_config.json', 'special_tokens_map.json']) {
      cpSync(join(TINY_LLAVA_DIR, f), join(dir, f));
    }
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('names a tensor whose shape disagrees with config.json', async () => {
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    config.text_config.intermediate_size = 128;
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    await selectBackend('wasm');
    const before = tf.memory().numTensors;
    await expectReject(LlavaModel.fromPretrained(dir, { backend: 'wasm' }), /config\.json \(text_config intermediate_size, hidden_size\) implies language_model\.model\.layers\.0\.mlp\.gate_proj\.weight of shape \[128,64\], but the checkpoint has \[172,64\]/);
    expect(tf.memory().numTensors, 'tensors of the half-built model are disposed').to.equal(before);
  });

  it('rejects an unsupported model type and a missing config', async () => {
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    config.model_type = 'mllama';
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    await expectReject(LlavaModel.fromPretrained(dir, { backend: 'wasm' }), /model_type 'mllama' is not supported/);
    rmSync(join(dir, 'config.json'));
    await expectReject(LlavaModel.fromPretrained(dir, { backend: 'wasm' }), /no config\.json/);
  });
});

async function expectReject(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  try {
    await promise;
  } catch (e) {
    expect((e as Error).message).to.match(pattern);
    return;
  }
  expect.fail(`expected an error matching ${pattern}`);
}
