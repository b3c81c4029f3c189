// Trains the shapes LLaVA (src/train/) on the synthetic task, with checkpoints and resume
// (rerun the same command: it continues from <ckpt>/state.json). The shipped model came from:
//   1. image path pretraining (vision tower + projector + lm_head on per-patch colour/shape words):
//      node dist/scripts/train.js --mode vision --ckpt checkpoints/vision --images 16 --questions 1 \
//        --lr 0.0003 --warmup 20 --decay-steps 100000 --val-every 25 --minutes 3      (200 steps)
//   2. the whole model on the answers (+ 0.3 x the per-patch loss), simple scenes first:
//      node dist/scripts/train.js --ckpt checkpoints/joint --init checkpoints/vision/model.safetensors \
//        --curriculum 1:150,2:300 --minutes 27                                       (best: step 700)
// Run with `nice -n 19` on a shared machine.
// Progress: one line per --log-every steps (loss, steps/s, examples seen), validation accuracy
// every --val-every steps; the best validation model is written to --out as a HF folder.
import * as tf from '@tensorflow/tfjs-core';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { selectBackend } from '../src/backend.js';
import { ImageProcessor } from '../src/preprocess.js';
import { LlavaTokenizer } from '../src/tokenizer.js';
import { makeBatch, type BatchContext, type LabelledBatch } from '../src/train/data.js';
import { SHAPES_MODEL, writeModelFiles, writeModelFolder } from '../src/train/export.js';
import { TrainableLlava } from '../src/train/model.js';
import { writeSafetensors } from '../src/train/safetensors-write.js';
import { SafetensorsFile } from '../weights/safetensors.js';
import { registerAllGradients } from '../src/train/gradients.js';

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '45' },
    steps: { type: 'string', default: '100000' },
    images: { type: 'string', default: '8' },
    questions: { type: 'string', default: '3' },
    lr: { type: 'string', default: '0.0005' },
    eps: { type: 'string', default: '1e-8' },
    warmup: { type: 'string', default: '50' },
    'decay-steps': { type: 'string', default: '1500' },
    ckpt: { type: 'string', default: 'checkpoints/shapes' },
    out: { type: 'string', default: 'models/default' },
    'val-every': { type: 'string', default: '100' },
    'val-size': { type: 'string', default: '400' },
    'save-every': { type: 'string', default: '50' },
    'log-every': { type: 'string', default: '10' },
    target: { type: 'string', default: '1.01' },
    group: { type: 'string', default: '2' },
    backend: { type: 'string', default: 'wasm' },
    bench: { type: 'boolean', default: false },
    // 'vision': pretrain the image path only (vision tower, projector, final norm, lm_head) on the
    // dense per-patch targets; 'joint': the whole model on the answers (+ --aux)
    mode: { type: 'string', default: 'joint' },
    // initial weights (a model.safetensors) when the checkpoint folder has no state yet
    init: { type: 'string' },
    // curriculum: "1:700,2:1100" = at most 1 shape per training image before step 700, 2 before 1100, then 4
    curriculum: { type: 'string', default: '' },
    // weight of the dense auxiliary loss: at each image token, predict the colour and shape of the
    // shape covering that patch ('no' for background); training only, makes the image tokens carry content
    aux: { type: 'string', default: '0.3' },
  },
});
const num = (k: keyof typeof args) => Number(args[k]);

/** Cross-entropy on the answer token and the EOS after it. */
function loss(logits: tf.Tensor2D, batch: LabelledBatch, vocab: number): tf.Scalar {
  const T = 3 + (SHAPES_MODEL.vision.imageSize / SHAPES_MODEL.vision.patchSize) ** 2 + batch.suffixLength;
  const rows = logits.shape[0];
  const target = new Float32Array(rows * vocab);
  let count = 0;
  batch.answerRow.forEach((r, s) => {
    const row = s * T + 3 + 64 + r;
    target[row * vocab + batch.answerId[s]] = 1;
    target[(row + 1) * vocab + batch.eosId] = 0.5;
    count++;
  });
  const aux = num('aux');
  if (aux > 0) {
    const N = 64;
    const w = (aux * count) / (batch.numImages * N);
    batch.patchTargets.forEach((targets, i) => {
      const s = i * batch.perImage; // the first sequence of each image
      targets.forEach((t, n) => {
        const row = s * T + 3 + n;
        if (t) {
          target[row * vocab + t[0]] += 0.5 * w;
          target[row * vocab + t[1]] += 0.5 * w;
        } else target[row * vocab + batch.noId] += w;
      });
    });
  }
  return tf.div(tf.neg(tf.sum(tf.mul(tf.logSoftmax(logits), tf.tensor2d(target, [rows, vocab])))), count) as tf.Scalar;
}

/** Dense per-patch loss on the image-only logits: colour + shape of the covering shape, 'no' for background. */
function patchLoss(logits: tf.Tensor2D, batch: LabelledBatch, vocab: number): tf.Scalar {
  const rows = logits.shape[0];
  const target = new Float32Array(rows * vocab);
  batch.patchTargets.forEach((targets, i) =>
    targets.forEach((t, n) => {
      const row = i * 64 + n;
      if (t) {
        // shape patches are rare: weight them up
        target[row * vocab + t[0]] = 2;
        target[row * vocab + t[1]] = 2;
      } else target[row * vocab + batch.noId] = 1;
    }),
  );
  return tf.div(tf.neg(tf.sum(tf.mul(tf.logSoftmax(logits), tf.tensor2d(target, [rows, vocab])))), rows) as tf.Scalar;
}

/** Greedy answers (argmax at the answer row) for a batch. */
export function predict(model: TrainableLlava, batch: LabelledBatch, group: number): number[] {
  const N = (SHAPES_MODEL.vision.imageSize / SHAPES_MODEL.vision.patchSize) ** 2;
  const T = 3 + N + batch.suffixLength;
  return tf.tidy(() => {
    const logits = model.forward(batch, { vision: group, text: group });
    const rows = batch.answerRow.map((r, s) => s * T + 3 + N + r);
    const arg = tf.argMax(logits, 1).dataSync();
    return rows.map((r) => arg[r]);
  });
}

async function validate(model: TrainableLlava, ctx: BatchContext, size: number, group: number): Promise<{ acc: number; byType: Record<string, string> }> {
  const per: Record<string, [number, number]> = {};
  let right = 0;
  for (let start = 0; start < size; start += 16) {
    const batch = makeBatch(ctx, 'val', start, Math.min(16, size - start), 1);
    const pred = predict(model, batch, group);
    pred.forEach((p, i) => {
      const ok = p === batch.answerId[i];
      right += ok ? 1 : 0;
      const t = (per[batch.questions[i].type] ??= [0, 0]);
      t[0] += ok ? 1 : 0;
      t[1]++;
    });
  }
  return { acc: right / size, byType: Object.fromEntries(Object.entries(per).map(([k, [a, b]]) => [k, (a / b).toFixed(2)])) };
}

async function main(): Promise<void> {
  await selectBackend(args.backend as 'wasm' | 'cpu');
  await registerAllGradients();
  const out = resolve(args.out!);
  const ckpt = resolve(args.ckpt!);
  mkdirSync(ckpt, { recursive: true });
  writeModelFiles(out, SHAPES_MODEL);
  const ctx: BatchContext = { shape: SHAPES_MODEL, processor: await ImageProcessor.fromFile(out), tokenizer: await LlavaTokenizer.fromDir(out) };
  const model = new TrainableLlava(SHAPES_MODEL, 0);
  const visionMode = args.mode === 'vision';
  const vars = visionMode ? model.imagePathVariables() : model.trainable();
  const optimizer = tf.train.adam(num('lr'), 0.9, 0.98, num('eps'));
  const statePath = join(ckpt, 'state.json');
  let state = { step: 0, best: 0, lossEma: 0, seconds: 0 };
  if (!existsSync(statePath) && args.init) {
    const weights = SafetensorsFile.open(resolve(args.init));
    model.importTensors((n) => (weights.entry(n) ? weights.readFloat32(n) : undefined));
    weights.close();
    console.log(`initialised from ${args.init}`);
  }
  if (existsSync(statePath)) {
    state = JSON.parse(readFileSync(statePath, 'utf8'));
    const weights = SafetensorsFile.open(join(ckpt, 'model.safetensors'));
    model.importTensors((n) => (weights.entry(n) ? weights.readFloat32(n) : undefined));
    weights.close();
    const opt = SafetensorsFile.open(join(ckpt, 'optimizer.safetensors'));
    const names = [...opt.names()].sort((a, b) => Number(a.split('/')[0]) - Number(b.split('/')[0]));
    await optimizer.setWeights(names.map((n) => ({ name: n.split('/').slice(1).join('/'), tensor: tf.tensor(opt.readFloat32(n), opt.entry(n)!.shape) })));
    opt.close();
    console.log(`resumed from ${ckpt} at step ${state.step} (best validation ${state.best.toFixed(3)})`);
  }
  const params = vars.reduce((a, v) => a + v.size, 0);
  console.log(`training ${params.toLocaleString('en-US')} parameters on ${tf.getBackend()}: ${num('images')} images x ${num('questions')} questions per step, lr ${num('lr')}`);
  const saveCheckpoint = async () => {
    writeSafetensors(join(ckpt, 'model.safetensors'), model.exportTensors());
    const ow = await optimizer.getWeights();
    writeSafetensors(
      join(ckpt, 'optimizer.safetensors'),
      ow.map((w, i) => ({ name: `${i}/${w.name}`, shape: w.tensor.shape.length === 0 ? [1] : w.tensor.shape, data: Float32Array.from(w.tensor.dataSync() as Float32Array) })),
    );
    writeFileSync(statePath, JSON.stringify(state));
  };
  const deadline = Date.now() + num('minutes') * 60_000;
  const group = num('group');
  let windowStart = performance.now();
  let windowSteps = 0;
  const images = num('images');
  const perImage = num('questions');
  while (state.step < num('steps') && Date.now() < deadline) {
    const step = state.step;
    const warm = Math.min(1, (step + 1) / num('warmup'));
    const decay = 0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI * Math.min(1, step / num('decay-steps'))));
    (optimizer as unknown as { learningRate: number }).learningRate = num('lr') * warm * decay;
    const t0 = performance.now();
    let maxShapes = 4;
    for (const part of (args.curriculum ?? '').split(',').filter(Boolean).reverse()) {
      const [n, until] = part.split(':').map(Number);
      if (step < until) maxShapes = n;
    }
    const batch = makeBatch(ctx, 'train', step * images, images, perImage, maxShapes);
    const tData = performance.now() - t0;
    const lossValue = tf.tidy(() => {
      const f = visionMode
        ? () => patchLoss(model.imageTokenLogits(batch.patches, batch.numImages, group), batch, SHAPES_MODEL.text.vocab)
        : () => loss(model.forward(batch, { vision: group, text: group }), batch, SHAPES_MODEL.text.vocab);
      const { value, grads } = tf.variableGrads(f, vars);
      optimizer.applyGradients(grads as unknown as tf.NamedTensorMap as never);
      return value.dataSync()[0];
    });
    const stepMs = performance.now() - t0;
    state.step++;
    state.seconds += stepMs / 1000;
    state.lossEma = step === 0 ? lossValue : 0.95 * state.lossEma + 0.05 * lossValue;
    windowSteps++;
    if (args.bench) console.log(`step ${state.step}: loss ${lossValue.toFixed(4)}, ${stepMs.toFixed(0)} ms (data ${tData.toFixed(0)} ms), tensors ${tf.memory().numTensors}`);
    if (state.step % num('log-every') === 0) {
      const rate = windowSteps / ((performance.now() - windowStart) / 1000);
      console.log(`step ${state.step}: loss ${state.lossEma.toFixed(4)} (last ${lossValue.toFixed(4)}), ${rate.toFixed(2)} steps/s, ${(state.step * images * perImage).toLocaleString('en-US')} questions seen, lr ${((optimizer as unknown as { learningRate: number }).learningRate).toExponential(2)}`);
      windowStart = performance.now();
      windowSteps = 0;
    }
    if (state.step % num('save-every') === 0) await saveCheckpoint();
    if (state.step % num('val-every') === 0 && visionMode) {
      const b = makeBatch(ctx, 'val', 0, 16, 1);
      const arg = tf.tidy(() => tf.argMax(model.imageTokenLogits(b.patches, b.numImages, group), 1).dataSync());
      let hit = 0, total = 0, bg = 0, bgTotal = 0;
      b.patchTargets.forEach((t, i) => t.forEach((x, n) => {
        const p = arg[i * 64 + n];
        if (x) { total++; hit += p === x[0] || p === x[1] ? 1 : 0; } else { bgTotal++; bg += p === b.noId ? 1 : 0; }
      }));
      console.log(`vision validation @ ${state.step}: shape patches ${hit}/${total}, background ${bg}/${bgTotal}`);
      await saveCheckpoint();
    } else if (state.step % num('val-every') === 0) {
      const val = await validate(model, ctx, num('val-size'), group);
      console.log(`validation @ ${state.step}: accuracy ${val.acc.toFixed(3)} ${JSON.stringify(val.byType)}`);
      if (val.acc > state.best) {
        state.best = val.acc;
        writeModelFolder(out, model, { step: String(state.step), validation_accuracy: val.acc.toFixed(4) });
        console.log(`  saved ${out} (best so far)`);
      }
      await saveCheckpoint();
      if (val.acc >= num('target')) {
        console.log(`reached target validation accuracy ${num('target')}`);
        break;
      }
    }
  }
  await saveCheckpoint();
  console.log(`stopped at step ${state.step}; best validation accuracy ${state.best.toFixed(3)}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
