// The CLIP-style pretraining (src/train/contrastive.ts): the loss is the symmetric InfoNCE of its
// logits (recomputed here in plain JS from the logits), the caption batch holds the same scenes as
// the answer batches, the text side never reaches a model folder, and the data-parallel worker
// computes the same gradients for a clip step.
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../src/backend.js';
import { ImageProcessor } from '../src/preprocess.js';
import { LlavaTokenizer } from '../src/tokenizer.js';
import { contrastiveLogits, contrastiveLoss, makeCaptionBatch } from '../src/train/contrastive.js';
import { makeBatch, type BatchContext } from '../src/train/data.js';
import { GradientWorker, parallelLossAndGradients } from '../src/train/data-parallel.js';
import { SHAPES_MODEL, writeModelFolder } from '../src/train/export.js';
import { registerAllGradients } from '../src/train/gradients.js';
import { CONTRASTIVE_PREFIX, TrainableLlava } from '../src/train/model.js';
import { sceneCaption } from '../src/train/shapes.js';
import { lossAndGradients, trainedVariables, type StepOptions } from '../src/train/step.js';
import { SafetensorsFile } from '../weights/safetensors.js';

describe('CLIP-style contrastive pretraining', function () {
  this.timeout(120_000);
  let dir: string;
  let model: TrainableLlava;
  let ctx: BatchContext;

  before(async () => {
    await selectBackend('wasm');
    await registerAllGradients();
    dir = mkdtempSync(join(tmpdir(), 'illava-clip-'));
    model = new TrainableLlava(SHAPES_MODEL, 3, { contrastive: true });
    writeModelFolder(dir, model);
    ctx = { shape: SHAPES_MODEL, processor: await ImageProcessor.fromFile(dir), tokenizer: await LlavaTokenizer.fromDir(dir) };
  });

  after(() => {
    model?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('caption batches hold the scenes of the answer batches, with their captions as word ids', () => {
    const captions = makeCaptionBatch(ctx, 'train', 10, 3);
    const answers = makeBatch(ctx, 'train', 10, 3, 1);
    expect(Array.from(captions.patches)).to.deep.equal(Array.from(answers.patches));
    captions.scenes.forEach((s, i) => {
      expect(captions.captions[i]).to.equal(sceneCaption(s));
      const ids = Array.from(captions.words.subarray(i * 20, i * 20 + captions.lengths[i]));
      expect(ctx.tokenizer.decode(ids)).to.equal(sceneCaption(s));
      expect(Array.from(captions.words.subarray(i * 20 + captions.lengths[i], (i + 1) * 20)).every((id) => id === SHAPES_MODEL.padId)).to.equal(true);
    });
  });

  it('the loss is the mean of the image->caption and caption->image cross-entropies of the logits', () => {
    const batch = makeCaptionBatch(ctx, 'val', 0, 4);
    const logits = tf.tidy(() => contrastiveLogits(model, batch, 2).arraySync());
    const ce = (rows: number[][]) => rows.reduce((acc, row, i) => {
      const m = Math.max(...row);
      return acc + (Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0)) + m - row[i]);
    }, 0) / rows.length;
    const transposed = logits[0].map((_, j) => logits.map((row) => row[j]));
    const expected = (ce(logits) + ce(transposed)) / 2;
    const loss = tf.tidy(() => contrastiveLoss(model, batch, 2).dataSync()[0]);
    expect(loss).to.be.closeTo(expected, 1e-5);
    // exp(log(1 / 0.07)) x cosine: every logit within +-1/0.07
    logits.flat().forEach((v) => expect(Math.abs(v)).to.be.at.most(1 / 0.07 + 1e-3));
  });

  it('the model folder has no contrastive weights; the trained variables are the tower and the text side', () => {
    const file = SafetensorsFile.open(join(dir, 'model.safetensors'));
    const names = [...file.names()];
    file.close();
    expect(names.some((n) => n.startsWith(CONTRASTIVE_PREFIX))).to.equal(false);
    expect(names.length).to.equal(model.params.size - [...model.params.keys()].filter((n) => n.startsWith(CONTRASTIVE_PREFIX)).length);
    const vars = trainedVariables(model, 'clip');
    expect(vars.length).to.equal([...model.params.keys()].filter((n) => n.startsWith('vision_tower.') || n.startsWith(CONTRASTIVE_PREFIX)).length);
    expect(() => trainedVariables(new TrainableLlava(SHAPES_MODEL, 0), 'clip')).to.throw(/no contrastive weights/);
  });

  it('data-parallel clip step: the two halves average to the gradients computed here', async () => {
    const opts: StepOptions = { mode: 'clip', aux: 0, group: 2 };
    const vars = trainedVariables(model, 'clip');
    const spec = { split: 'train' as const, start: 20, numImages: 8, perImage: 1, maxShapes: 4, turns: 1 };
    const worker = await GradientWorker.start({ shape: SHAPES_MODEL, filesDir: dir, step: opts });
    try {
      const both = await parallelLossAndGradients(model, ctx, vars, spec, opts, worker);
      const first = lossAndGradients(model, ctx, vars, { ...spec, numImages: 4 }, opts);
      const second = lossAndGradients(model, ctx, vars, { ...spec, start: 24, numImages: 4 }, opts);
      expect(both.loss).to.be.closeTo((first.loss + second.loss) / 2, 1e-5);
      let worst = 0;
      vars.forEach((_, i) => {
        const diff = tf.tidy(() => {
          const expected = tf.mul(tf.add(first.grads[i], second.grads[i]), 0.5);
          return tf.max(tf.abs(tf.sub(both.grads[i], expected))).dataSync()[0] / Math.max(1e-12, tf.max(tf.abs(expected)).dataSync()[0]);
        });
        worst = Math.max(worst, diff);
      });
      expect(worst).to.be.lessThan(1e-5);
      tf.dispose([...both.grads, ...first.grads, ...second.grads]);
    } finally {
      await worker.close();
    }
  });
});
