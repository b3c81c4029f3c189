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
import { makeBatch, SUFFIX_LENGTH, type BatchContext } from '../src/train/data.js';
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
