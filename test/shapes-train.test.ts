// The training forward (src/train/model.ts) and the runtime (LlavaModel.fromPretrained on the
// exported folder) compute the same logits: names, layouts, RoPE, masks, patch order agree.
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { LlavaModel } from '../src/llava.js';
import { ImageProcessor } from '../src/preprocess.js';
import { LlavaTokenizer } from '../src/tokenizer.js';
import { selectBackend } from '../src/backend.js';
import { makeBatch, SUFFIX_LENGTH, suffixLength, type BatchContext } from '../src/train/data.js';
import { GradientWorker, parallelLossAndGradients } from '../src/train/data-parallel.js';
import { lossAndGradients, trainedVariables, type StepOptions } from '../src/train/step.js';
import { SHAPES_MODEL, writeModelFolder } from '../src/train/export.js';
import { TrainableLlava } from '../src/train/model.js';
import { registerAllGradients } from '../src/train/gradients.js';
import { SafetensorsFile } from '../weights/safetensors.js';

describe('shapes training forward vs runtime', function () {
  let dir: string;
  let trained: TrainableLlava;
  let runtime: LlavaModel;
  let ctx: BatchContext;

  before(async () => {
    await selectBackend('wasm');
    dir = mkdtempSync(join(tmpdir(), 'illava-shapes-'));
    trained = new TrainableLlava(SHAPES_MODEL, 7);
    writeModelFolder(dir, trained);
    runtime = await LlavaModel.fromPretrained(dir, { backend: 'wasm' });
    ctx = { shape: SHAPES_MODEL, processor: await ImageProcessor.fromFile(dir), tokenizer: await LlavaTokenizer.fromDir(dir) };
  });

  after(() => {
    trained?.dispose();
    runtime?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('gives the runtime logits at the answer position (batched, grouped attention)', async () => {
    const batch = makeBatch(ctx, 'val', 0, 4, 2);
    const N = 64;
    const T = 3 + N + SUFFIX_LENGTH;
    const logits = tf.tidy(() => trained.forward(batch, { vision: 2, text: 4 }).arraySync() as number[][]);
    for (let s = 0; s < 8; s++) {
      const q = batch.questions[s];
      const scene = batch.scenes[Math.floor(s / 2)];
      const expected = await runtime.logits({ prompt: q.question, images: [scene.image] });
      const row = logits[s * T + 3 + N + batch.answerRow[s]];
      let maxDiff = 0;
      for (let i = 0; i < expected.length; i++) maxDiff = Math.max(maxDiff, Math.abs(expected[i] - row[i]));
      expect(maxDiff, `sequence ${s}: ${q.question}`).to.be.lessThan(1e-3);
    }
  });

  it('multi-turn sequences: every turn gives the runtime logits of the conversation so far', async () => {
    const turns = 3;
    const batch = makeBatch(ctx, 'val', 5, 2, 1, 4, turns);
    const N = 64;
    const T = 3 + N + suffixLength(turns);
    const logits = tf.tidy(() => trained.forward(batch, { vision: 2, text: 2 }).arraySync() as number[][]);
    let checked = 0;
    for (let s = 0; s < 2; s++) {
      const mine = batch.answerId.map((_, a) => a).filter((a) => batch.answerSeq[a] === s);
      expect(mine.length, `sequence ${s} has several distinct questions`).to.be.greaterThan(1);
      let prompt = 'USER: <image>\n';
      for (const a of mine) {
        const q = batch.questions[a];
        prompt += `${q.question} ASSISTANT:`;
        const expected = await runtime.logits({ prompt, images: [batch.scenes[s].image], template: 'raw' });
        const row = logits[s * T + 3 + N + batch.answerRow[a]];
        let maxDiff = 0;
        for (let i = 0; i < expected.length; i++) maxDiff = Math.max(maxDiff, Math.abs(expected[i] - row[i]));
        expect(maxDiff, `turn ${a}: ${prompt}`).to.be.lessThan(1e-3);
        prompt += ` ${q.answer}</s>USER: `;
        checked++;
      }
    }
    expect(checked).to.equal(batch.answerId.length);
  });

  it('data-parallel step: the worker thread\'s half and this thread\'s half average to the gradients computed here', async function () {
    this.timeout(60_000);
    await registerAllGradients();
    const opts: StepOptions = { mode: 'joint', aux: 0.3, group: 2 };
    const vars = trainedVariables(trained, opts.mode);
    const spec = { split: 'train' as const, start: 40, numImages: 4, perImage: 1, maxShapes: 4, turns: 2 };
    const worker = await GradientWorker.start({ shape: SHAPES_MODEL, filesDir: dir, step: opts });
    try {
      const both = await parallelLossAndGradients(trained, ctx, vars, spec, opts, worker);
      const first = lossAndGradients(trained, ctx, vars, { ...spec, numImages: 2 }, opts);
      const second = lossAndGradients(trained, ctx, vars, { ...spec, start: 42, numImages: 2 }, opts);
      expect(both.loss).to.be.closeTo((first.loss + second.loss) / 2, 1e-5);
      let worst = 0;
      vars.forEach((_, i) => {
        const expected = tf.tidy(() => tf.mul(tf.add(first.grads[i], second.grads[i]), 0.5));
        const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(both.grads[i], expected))).dataSync()[0] / Math.max(1e-12, tf.max(tf.abs(expected)).dataSync()[0]));
        worst = Math.max(worst, diff);
        expected.dispose();
      });
      expect(worst, 'largest gradient difference relative to the tensor\'s largest value').to.be.lessThan(1e-5);
      tf.dispose([...both.grads, ...first.grads, ...second.grads]);
    } finally {
      await worker.close();
    }
  });

  it('round-trips weights through exportTensors / importTensors', () => {
    const copy = new TrainableLlava(SHAPES_MODEL, 8);
    const file = SafetensorsFile.open(join(dir, 'model.safetensors'));
    copy.importTensors((n) => file.readFloat32(n));
    file.close();
    const a = trained.params.get('language_model.model.layers.0.self_attn.q_proj.weight')!.dataSync();
    const b = copy.params.get('language_model.model.layers.0.self_attn.q_proj.weight')!.dataSync();
    expect(Array.from(b)).to.deep.equal(Array.from(a));
    copy.dispose();
  });

  it('computes gradients with the registered tfjs gradients', async () => {
    await registerAllGradients();
    const batch = makeBatch(ctx, 'train', 0, 2, 1);
    const vars = trained.trainable();
    const { value, grads } = tf.variableGrads(() => tf.mean(trained.forward(batch, { vision: 2, text: 2 })) as tf.Scalar, vars);
    expect(Number.isFinite(value.dataSync()[0])).to.equal(true);
    expect(Object.keys(grads).length).to.equal(vars.length);
    tf.dispose([value, ...Object.values(grads)]);
  });
});
