// Packed weight formats on the tiny-llava fixture: the whole model with f16 / q8_0 / q4_0 linear
// layers against the float32 model (itself checked against the independent references in
// model.test.ts), on one and two kernel threads, with the packed cache written and read back.
import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LlavaModel, type GenerateOutput, type PixelValues } from '../src/llava.js';
import { selectBackend } from '../src/backend.js';
import { expectedArray, maxRelDiff, TINY_LLAVA_DIR } from './helpers/fixture.js';


const argmax = (v: Float32Array) => v.reduce((best, x, i) => (x > v[best] ? i : best), 0);

describe('packed weights (f16, q8_0, q4_0) on tiny-llava', function () {
  this.timeout(120000);
  const pixels: PixelValues = { pixelValues: expectedArray('pixel_values').data, height: 56, width: 56 };
  const prompts = [
    { prompt: 'What is shown in this image?', images: [pixels] },
    { prompt: 'Tell me a story.' },
  ];
  const steps = 10;
  let cacheDir: string;
  let reference: GenerateOutput[];
  const run = async (model: LlavaModel) => {
    const out: GenerateOutput[] = [];
    for (const p of prompts) out.push(await model.generate({ ...p, maxNewTokens: steps, stopIds: [], returnLogits: true }));
    return out;
  };

  before(async () => {
    await selectBackend('wasm');
    cacheDir = mkdtempSync(join(tmpdir(), 'illava-packed-'));
    const f32 = await LlavaModel.fromPretrained(TINY_LLAVA_DIR, { weightFormat: 'f32' });
    reference = await run(f32);
    f32.dispose();
  });
  after(() => rmSync(cacheDir, { recursive: true, force: true }));

  it('f16: the same greedy tokens as float32, logits within 1e-3 relative at every step', async () => {
    const model = await LlavaModel.fromPretrained(TINY_LLAVA_DIR, { weightFormat: 'f16', quantizedCache: false });
    const got = await run(model);
    got.forEach((g, i) => {
      expect(g.tokenIds).to.deep.equal(reference[i].tokenIds);
      g.logits?.forEach((l, s) => expect(maxRelDiff(l, (reference[i].logits as Float32Array[])[s])).to.be.below(1e-3));
    });
    expect(model.layout.formats).to.include({ decoder: 'f16', vision: 'f16' });
    model.dispose();
  });

  // Measured on this fixture (a random tiny model that amplifies weight errors ~5x): llama.cpp's
  // Q8_0 gives 3.1e-2 max relative error on the logits; 2.1e-2 of it is the weights' rounding alone
  // (the dequantized float32 fallback, x not quantized), the rest quantizing x as llama.cpp does.
  // The token choice is the criterion that holds at every step.
  it('q8_0: top-1 equal to float32 at every step of both prompts; logits within 4e-2 relative', async () => {
    const model = await LlavaModel.fromPretrained(TINY_LLAVA_DIR, { weightFormat: 'q8_0', quantizedCache: false });
    const got = await run(model);
    const errors: number[] = [];
    got.forEach((g, i) => {
      expect(g.tokenIds).to.deep.equal(reference[i].tokenIds);
      g.logits?.forEach((l, s) => {
        const ref = (reference[i].logits as Float32Array[])[s];
        expect(argmax(l)).to.equal(argmax(ref));
        errors.push(maxRelDiff(l, ref));
      });
    });
    process.stdout.write(`      q8_0 logits: max rel error ${Math.max(...errors).toExponential(2)} over ${errors.length} steps\n`);
    expect(Math.max(...errors)).to.be.below(4e-2);
    model.dispose();
  });

  // Q4_0 (16 levels per block) is too coarse for this fixture: its logits differ from float32 by
  // ~1.5x their own scale (top-1 differs). Reported; asserted only to be finite and bounded.
  it('q4_0: error reported, within a sanity bound (finite, < 3 relative)', async () => {
    const model = await LlavaModel.fromPretrained(TINY_LLAVA_DIR, { weightFormat: 'q4_0', quantizedCache: false });
    const logits = await model.logits(prompts[0]);
    const ref = (reference[0].logits as Float32Array[])[0];
    const err = maxRelDiff(logits, ref);
    process.stdout.write(`      q4_0 first-step logits: max rel error ${err.toExponential(2)}, top-1 ${argmax(logits) === argmax(ref) ? 'equal' : 'differs'}\n`);
    expect(logits.every(Number.isFinite)).to.equal(true);
    expect(err).to.be.below(3);
    model.dispose();
  });

  it('two kernel threads give bit-identical results to one; repeated calls leak no tensor', async () => {
    const one = await LlavaModel.fromPretrained(TINY_LLAVA_DIR, { weightFormat: 'q8_0', quantizedCache: false, threads: 1 });
    const two = await LlavaModel.fromPretrained(TINY_LLAVA_DIR, { weightFormat: 'q8_0', quantizedCache: false, threads: 2 });
    expect(two.threads).to.equal(2);
    const a = await one.logits(prompts[0]);
    const b = await two.logits(prompts[0]);
    expect(Array.from(b)).to.deep.equal(Array.from(a));
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) await two.generate({ ...prompts[i % 2], maxNewTokens: 3 });
    expect(tf.memory().numTensors).to.equal(before);
    expect(two.parameterCount()).to.equal(one.parameterCount());
    one.dispose();
    two.dispose();
  });

  it('a model spread over many 3 MiB memories (KV scratch in its own) gives the same logits as one memory', async () => {
    const one = await LlavaModel.fromPretrained(TINY_LLAVA_DIR, { weightFormat: 'q8_0', quantizedCache: false, threads: 2 });
    const many = await LlavaModel.fromPretrained(TINY_LLAVA_DIR, { weightFormat: 'q8_0', quantizedCache: false, threads: 2, packedMemory: { ioBytes: 1 << 18, memoryLimit: 3 << 20 } });
    const a = await one.generate({ ...prompts[0], maxNewTokens: 4, stopIds: [], returnLogits: true });
    const b = await many.generate({ ...prompts[0], maxNewTokens: 4, stopIds: [], returnLogits: true });
    expect(b.tokenIds).to.deep.equal(a.tokenIds);
    b.logits?.forEach((l, s) => expect(Array.from(l)).to.deep.equal(Array.from((a.logits as Float32Array[])[s])));
    one.dispose();
    many.dispose();
  });

  it('a mixed layout: q8_0 decoder with an f16 vision tower', async () => {
    const model = await LlavaModel.fromPretrained(TINY_LLAVA_DIR, { weightFormat: 'q8_0', visionWeightFormat: 'f16', quantizedCache: false });
    expect(model.layout.formats).to.include({ decoder: 'q8_0', vision: 'f16' });
    const out = await model.generate({ ...prompts[0], maxNewTokens: steps, stopIds: [] });
    expect(out.tokenIds).to.deep.equal(reference[0].tokenIds);
    model.dispose();
  });

  it('writes the packed cache at the first load and reads it (same logits, nothing rewritten) at the second', async () => {
    const first = await LlavaModel.fromPretrained(TINY_LLAVA_DIR, { weightFormat: 'q8_0', quantizedCache: cacheDir });
    expect(first.layout.cacheRead).to.deep.equal([]);
    expect(first.layout.cacheWritten).to.have.length(1);
    expect(readdirSync(cacheDir).filter((f) => f.endsWith('-q8_0.safetensors'))).to.have.length(1);
    const a = await first.logits(prompts[0]);
    first.dispose();
    const second = await LlavaModel.fromPretrained(TINY_LLAVA_DIR, { weightFormat: 'q8_0', quantizedCache: cacheDir });
    expect(second.layout.cacheRead).to.have.length(1);
    expect(second.layout.cacheWritten).to.deep.equal([]);
    const b = await second.logits(prompts[0]);
    expect(Array.from(b)).to.deep.equal(Array.from(a));
    second.dispose();
  });

  it('refuses an unknown format and streamed packed weights with one clear line', async () => {
    await expectReject(LlavaModel.fromPretrained(TINY_LLAVA_DIR, { weightFormat: 'q5' as 'q8_0' }), /weightFormat must be auto, f32, f16, q8_0 or q4_0, got "q5"/);
    await expectReject(LlavaModel.fromPretrained(TINY_LLAVA_DIR, { weightFormat: 'q8_0', weights: 'streamed' }), /always resident/);
  });
});

async function expectReject(p: Promise<unknown>, pattern: RegExp): Promise<void> {
  try {
    await p;
  } catch (e) {
    expect((e as Error).message).to.match(pattern);
    return;
  }
  throw new Error('expected a rejection');
}

describe('packed decode attention (our kernel on the arena KV cache)', function () {
  this.timeout(120000);
  it('cached decoding (kernel path) gives the logits of full recomputation (tfjs path) within 1e-5', async () => {
    await selectBackend('wasm');
    const pixels: PixelValues = { pixelValues: expectedArray('pixel_values').data, height: 56, width: 56 };
    for (const threads of [1, 2] as const) {
      const model = await LlavaModel.fromPretrained(TINY_LLAVA_DIR, { weightFormat: 'q8_0', quantizedCache: false, threads });
      const input = { prompt: 'What is shown in this image?', images: [pixels], maxNewTokens: 6, stopIds: [], returnLogits: true };
      const cached = await model.generate(input);
      const full = await model.generate({ ...input, useCache: false });
      expect(cached.tokenIds).to.deep.equal(full.tokenIds);
      cached.logits?.forEach((l, s) => expect(maxRelDiff(l, (full.logits as Float32Array[])[s])).to.be.below(1e-5));
      const before = tf.memory().numTensors;
      await model.generate({ ...input, returnLogits: false });
      expect(tf.memory().numTensors).to.equal(before);
      model.dispose();
    }
  });
});
