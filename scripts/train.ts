// Trains the shapes LLaVA (src/train/) on the synthetic task, with checkpoints and resume
// (rerun the same command: it continues from <ckpt>/state.json). The shipped model came from:
//   1. image path pretraining (vision tower + projector + final norm + lm_head on the per-patch
//      colour / shape / quadrant words), 9 minutes on one core (797 steps):
//      node dist/scripts/train.js --mode vision --threads 1 --ckpt checkpoints/vision --images 16 \
//        --questions 1 --turns 1 --lr 0.001 --warmup 20 --decay-steps 900 --val-every 100 --minutes 9
//   2. projector + decoder on the answers (+ 0.3 x the per-patch loss), the vision tower frozen,
//      conversations of 4 then 6 questions, 1-shape then 2-shape scenes first (67 min in all):
//      node dist/scripts/train.js --threads 1 --qk-std 0.05 --ckpt checkpoints/joint \
//        --init checkpoints/vision/model.safetensors --images 8 --turns 4 --lr 0.001 --warmup 50 \
//        --decay-steps 4200 --curriculum 1:200,2:400 --val-every 100 --val-size 400 --minutes 10
//      then, resuming (same --ckpt), --threads 2 --images 16 --turns 6 --decay-steps 4800 until
//      step 4551 (the best validation, 95.0%, at step 4400 is the shipped model)
// The CLIP-style model (models/shapes-clip, issue 14; task v4 = the four types + count + relation),
// from a clean start (times: bench/eval/README.md):
//   1. contrastive pretraining of the whole vision tower against a small text encoder over the
//      scene captions (src/train/contrastive.ts), no per-patch target (600 steps, 525 s):
//      node dist/scripts/train.js --mode clip --ckpt checkpoints/clip --out checkpoints/clip-files \
//        --images 32 --lr 0.001 --warmup 30 --decay-steps 600 --steps 600 --val-every 50 --minutes 24
//   2. alignment (LLaVA's stage 1): projector + final norm + lm_head on the per-patch words, the
//      contrastive tower frozen (600 steps, 83 s):
//      node dist/scripts/train.js --mode align --ckpt checkpoints/clip-align --out checkpoints/clip-align-files \
//        --init checkpoints/clip/model.safetensors --init-part tower --images 16 --questions 1 --turns 1 \
//        --lr 0.001 --warmup 20 --decay-steps 600 --steps 600 --val-every 100 --minutes 6
//   3. projector + decoder on the answers (+ 0.3 x the per-patch loss), the tower frozen, as for
//      the default model:
//      node dist/scripts/train.js --threads 2 --qk-std 0.05 --ckpt checkpoints/clip-joint --out checkpoints/shapes-clip \
//        --init checkpoints/clip-align/model.safetensors --init-part image-path \
//        --types colour,shape,count,where,exist,relation --images 8 --turns 4 --lr 0.001 --warmup 50 \
//        --decay-steps 5000 --curriculum 1:200,2:400 --val-every 100 --val-size 400 --minutes 10
//      (stopped at step 520, 51.7 % on validation) then, resuming (same --ckpt), the same command
//      with --turns 6 --decay-steps 1600 --minutes 24, stopped by hand at step 1250, then (same
//      --ckpt) --images 16 --turns 6 --decay-steps 4800 --minutes 45, 105 and 12: step 4108, the
//      best validation (93.8 % at step 3900) is models/shapes-clip (9,530 s of joint step time)
//   (the first attempt, with no stage 2 and a random projector, sat at the answer prior for ~500
//   steps and reached 46.8 % after 1000: bench/eval/README.md)
// --threads 2 (the default) splits each step's images with a gradient worker thread on the other
// core (src/train/data-parallel.ts). Run with `nice -n 19` on a shared machine.
// Progress: one line per --log-every steps (loss, steps/s, examples seen), validation accuracy
// every --val-every steps; the best validation model is written to --out as a HF folder.
import * as tf from '@tensorflow/tfjs-core';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { scriptArgs, runScript } from './args.js';

const USAGE = `usage: node dist/scripts/train.js [--mode vision|align|joint|clip] [--minutes 45] [--steps N] [--images 8] [--questions 3] [--lr 0.0005]
  [--ckpt checkpoints/shapes] [--out models/default] [--backend wasm] [--threads 1|2] [--init FILE] ... (options: see the header of scripts/train.ts)`;
import { selectBackend } from '../src/backend.js';
import { ImageProcessor } from '../src/preprocess.js';
import { LlavaTokenizer } from '../src/tokenizer.js';
import { answerId, makeBatch, type BatchContext } from '../src/train/data.js';
import { SHAPES_MODEL, writeModelFiles, writeModelFolder } from '../src/train/export.js';
import { ALL_QUESTION_TYPES, COLOURS, QUADRANTS, QUESTION_TYPES, SHAPES, type QuestionType } from '../src/train/shapes.js';
import { TrainableLlava } from '../src/train/model.js';
import { predictAnswers } from '../src/train/loss.js';
import { parallelLossAndGradients, GradientWorker } from '../src/train/data-parallel.js';
import { trainedVariables, trainsOnPatchWords, type BatchSpec, type StepOptions } from '../src/train/step.js';
import { writeSafetensors } from '../src/train/safetensors-write.js';
import { SafetensorsFile } from '../weights/safetensors.js';
import { registerAllGradients } from '../src/train/gradients.js';
import { makeCaptionBatch, retrievalHits } from '../src/train/contrastive.js';

const args = scriptArgs('train', USAGE, {
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
    // dense per-patch targets; 'joint': the projector and decoder on the answers (+ --aux), the
    // vision tower frozen; 'align': as 'vision' with the tower frozen (projector, final norm, lm_head);
    // 'clip': contrastive tower pretraining (src/train/step.ts)
    mode: { type: 'string', default: 'joint' },
    // initial image-path weights (a --mode vision or align model.safetensors) when the checkpoint folder has no state yet
    init: { type: 'string' },
    // what --init imports: 'image-path' (vision tower, projector, final norm, lm_head: a --mode vision
    // or align model) or 'tower' (the vision tower only: a --mode clip checkpoint)
    'init-part': { type: 'string', default: 'image-path' },
    // curriculum: "1:700,2:1100" = at most 1 shape per training image before step 700, 2 before 1100, then 4
    curriculum: { type: 'string', default: '' },
    // weight of the dense auxiliary loss: at each image token, predict the colour and shape of the
    // shape covering that patch ('no' for background); training only, makes the image tokens carry content
    aux: { type: 'string', default: '0.3' },
    // questions per sequence (a multi-turn conversation about the image; validation asks one)
    turns: { type: 'string', default: '4' },
    // 2: data-parallel on both cores (a gradient worker thread takes half of each step's images)
    threads: { type: 'string', default: '2' },
    // question types to train on (default: the task's, shapes.QUESTION_TYPES), e.g. colour,shape,count,where,exist
    types: { type: 'string' },
    // init std of the decoder's q/k projections (new runs only)
    'qk-std': { type: 'string', default: '0.02' },
});
const num = (k: keyof typeof args) => Number(args[k]);

async function validate(model: TrainableLlava, ctx: BatchContext, size: number, group: number, types: readonly QuestionType[]): Promise<{ acc: number; byType: Record<string, string> }> {
  const per: Record<string, [number, number]> = {};
  let right = 0;
  for (let start = 0; start < size; start += 16) {
    const batch = makeBatch(ctx, 'val', start, Math.min(16, size - start), 1, 4, 1, types);
    const pred = predictAnswers(model, batch, group);
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
  // both checks before anything is written: writeModelFiles below replaces the folder's config and tokenizer
  if (!['vision', 'align', 'joint', 'clip'].includes(args.mode!)) throw new Error(`--mode must be vision, align, joint or clip, got '${args.mode}'`);
  if (out === resolve('models/default')) throw new Error('--out models/default would overwrite the shipped model: give another --out');
  mkdirSync(ckpt, { recursive: true });
  writeModelFiles(out, SHAPES_MODEL);
  const ctx: BatchContext = { shape: SHAPES_MODEL, processor: await ImageProcessor.fromFile(out), tokenizer: await LlavaTokenizer.fromDir(out) };
  const clipMode = args.mode === 'clip';
  const model = new TrainableLlava(SHAPES_MODEL, 0, { decoderQkStd: num('qk-std'), contrastive: clipMode });
  // 'align' validates as 'vision' does (per-patch words), its tower frozen
  const visionMode = trainsOnPatchWords(args.mode as StepOptions['mode']);
  const stepOptions: StepOptions = { mode: args.mode as StepOptions['mode'], aux: num('aux'), group: num('group') };
  const vars = trainedVariables(model, stepOptions.mode);
  const threads = num('threads');
  if (threads !== 1 && threads !== 2) throw new Error(`--threads must be 1 or 2, got ${args.threads}`);
  const worker = threads === 2 ? await GradientWorker.start({ shape: SHAPES_MODEL, filesDir: out, step: stepOptions }) : null;
  const optimizer = tf.train.adam(num('lr'), 0.9, 0.98, num('eps'));
  const statePath = join(ckpt, 'state.json');
  let state = { step: 0, best: 0, lossEma: 0, seconds: 0 };
  if (!existsSync(statePath) && args.init) {
    const weights = SafetensorsFile.open(resolve(args.init));
    // the image path (vision tower, projector, final norm, lm_head: what --mode vision trains) or the tower only (--mode clip)
    const part = args['init-part'];
    if (part !== 'image-path' && part !== 'tower') throw new Error(`--init-part must be image-path or tower, got '${part}'`);
    model.importTensors((n) => (weights.entry(n) ? weights.readFloat32(n) : undefined), new Set(part === 'tower' ? model.towerVariables() : model.imagePathVariables()));
    weights.close();
    console.log(`${part} initialised from ${args.init}`);
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
  console.log(`training ${params.toLocaleString('en-US')} parameters on ${tf.getBackend()} (${threads} thread${threads === 2 ? 's' : ''}): ${num('images')} images x ${num('questions')} questions per step, lr ${num('lr')}`);
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
  const turns = num('turns');
  const types = args.types ? parseTypes(args.types) : QUESTION_TYPES;
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
    const spec: BatchSpec = { split: 'train', start: step * images, numImages: images, perImage, maxShapes, turns, types };
    const { loss: lossValue, grads } = await parallelLossAndGradients(model, ctx, vars, spec, stepOptions, worker);
    optimizer.applyGradients(vars.map((v, i) => ({ name: v.name, tensor: grads[i] })));
    tf.dispose(grads);
    const stepMs = performance.now() - t0;
    state.step++;
    state.seconds += stepMs / 1000;
    state.lossEma = step === 0 ? lossValue : 0.95 * state.lossEma + 0.05 * lossValue;
    windowSteps++;
    if (args.bench) console.log(`step ${state.step}: loss ${lossValue.toFixed(4)}, ${stepMs.toFixed(0)} ms, tensors ${tf.memory().numTensors}`);
    if (state.step % num('log-every') === 0) {
      const rate = windowSteps / ((performance.now() - windowStart) / 1000);
      console.log(`step ${state.step}: loss ${state.lossEma.toFixed(4)} (last ${lossValue.toFixed(4)}), ${rate.toFixed(2)} steps/s, ${(state.step * images * perImage * turns).toLocaleString('en-US')} questions seen, lr ${((optimizer as unknown as { learningRate: number }).learningRate).toExponential(2)}`);
      windowStart = performance.now();
      windowSteps = 0;
    }
    if (state.step % num('save-every') === 0) await saveCheckpoint();
    if (state.step % num('val-every') === 0 && clipMode) {
      // top-1 retrieval within batches of 32 validation images (chance 1/32)
      let i2t = 0;
      let t2i = 0;
      for (let start = 0; start < 128; start += 32) {
        const hits = retrievalHits(model, makeCaptionBatch(ctx, 'val', start, 32), group);
        i2t += hits.imageToText;
        t2i += hits.textToImage;
      }
      const scale = Math.exp(model.w('contrastive.logit_scale').dataSync()[0]);
      console.log(`contrastive validation @ ${state.step}: image->caption ${i2t}/128, caption->image ${t2i}/128 (in batches of 32), logit scale ${scale.toFixed(1)}`);
      await saveCheckpoint();
    } else if (state.step % num('val-every') === 0 && visionMode) {
      const b = makeBatch(ctx, 'val', 0, 32, 1);
      const logits = tf.tidy(() => model.imageTokenLogits(b.patches, b.numImages, group).arraySync());
      // per attribute: is the target the most likely word of its kind (colour, shape, quadrant)?
      const kinds = [COLOURS, SHAPES, QUADRANTS].map((words) => words.map((w) => answerId(ctx, w)));
      const hits = [0, 0, 0];
      let total = 0, bg = 0, bgTotal = 0;
      b.patchTargets.forEach((t, i) => t.forEach((x, n) => {
        const row = logits[i * t.length + n];
        const best = row.indexOf(Math.max(...row));
        if (!x) { bgTotal++; bg += best === b.noId ? 1 : 0; return; }
        total++;
        kinds.forEach((ids, k) => (hits[k] += ids.reduce((a, id) => (row[id] > row[a] ? id : a), ids[0]) === x[k] ? 1 : 0));
      }));
      console.log(`vision validation @ ${state.step}: shape patches (colour/shape/quadrant) ${hits.join('/')} of ${total}, background ${bg}/${bgTotal}`);
      await saveCheckpoint();
    } else if (state.step % num('val-every') === 0) {
      const val = await validate(model, ctx, num('val-size'), group, types);
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
  await worker?.close();
  console.log(`stopped at step ${state.step}; best validation accuracy ${state.best.toFixed(3)}`);
}

function parseTypes(list: string): QuestionType[] {
  const types = list.split(',').map((t) => t.trim());
  for (const t of types) if (!(ALL_QUESTION_TYPES as readonly string[]).includes(t)) throw new Error(`--types: unknown question type '${t}' (known: ${ALL_QUESTION_TYPES.join(', ')})`);
  return types as QuestionType[];
}

runScript('train', main);
