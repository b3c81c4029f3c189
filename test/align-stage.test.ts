// The alignment stage (--mode align, LLaVA's stage 1 on the CLIP-style tower): Adam steps on the
// per-patch loss move the projector, final norm and lm_head and leave every vision tower weight
// bit-identical (and the decoder layers, which that stage does not train), on this thread and
// through the data-parallel worker.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../src/backend.js';
import { ImageProcessor } from '../src/preprocess.js';
import { LlavaTokenizer } from '../src/tokenizer.js';
import { type BatchContext } from '../src/train/data.js';
import { GradientWorker, parallelLossAndGradients } from '../src/train/data-parallel.js';
import { SHAPES_MODEL, writeModelFiles } from '../src/train/export.js';
import { registerAllGradients } from '../src/train/gradients.js';
import { TrainableLlava } from '../src/train/model.js';
import { lossAndGradients, trainedVariables, type BatchSpec, type StepOptions } from '../src/train/step.js';
import { REPO_ROOT } from './helpers/fixture.js';

const TOWER = 'vision_tower.';
const PROJECTOR = 'multi_modal_projector.';
const FINAL_NORM = 'language_model.model.norm.weight';
const LM_HEAD = 'language_model.lm_head.weight';

function snapshot(model: TrainableLlava): Map<string, Float32Array> {
  return new Map([...model.params].map(([name, v]) => [name, Float32Array.from(v.dataSync() as Float32Array)]));
}

function changed(a: Float32Array, b: Float32Array): boolean {
  return a.some((x, i) => x !== b[i]);
}

describe('alignment stage (--mode align): tower frozen, projector trained', function () {
  this.timeout(120_000);
  let dir: string;
  let ctx: BatchContext;
  const opts: StepOptions = { mode: 'align', aux: 0.3, group: 2 };
  const spec: BatchSpec = { split: 'train', start: 12, numImages: 4, perImage: 1, maxShapes: 4, turns: 1 };

  before(async () => {
    await selectBackend('wasm');
    await registerAllGradients();
    dir = mkdtempSync(join(tmpdir(), 'illava-align-'));
    writeModelFiles(dir, SHAPES_MODEL);
    ctx = { shape: SHAPES_MODEL, processor: await ImageProcessor.fromFile(dir), tokenizer: await LlavaTokenizer.fromDir(dir) };
  });

  after(() => rmSync(dir, { recursive: true, force: true }));

  it('trains exactly the projector, final norm and lm_head', () => {
    const model = new TrainableLlava(SHAPES_MODEL, 3);
    const byVariable = new Map([...model.params].map(([name, v]) => [v, name]));
    const names = trainedVariables(model, 'align').map((v) => byVariable.get(v)!);
    const expected = [...model.params.keys()].filter((n) => n.startsWith(PROJECTOR) || n === FINAL_NORM || n === LM_HEAD);
    expect(names.slice().sort()).to.deep.equal(expected.sort());
    expect(names.some((n) => n.startsWith(TOWER))).to.equal(false);
    model.dispose();
  });

  for (const threads of [1, 2]) {
    it(`two Adam steps (${threads} thread${threads === 2 ? 's' : ''}) leave every tower weight unchanged and move the projector`, async () => {
      const model = new TrainableLlava(SHAPES_MODEL, 5);
      const vars = trainedVariables(model, opts.mode);
      const optimizer = tf.train.adam(1e-2);
      const before = snapshot(model);
      const worker = threads === 2 ? await GradientWorker.start({ shape: SHAPES_MODEL, filesDir: dir, step: opts }) : null;
      try {
        for (let step = 0; step < 2; step++) {
          const s = { ...spec, start: spec.start + step * spec.numImages };
          const { loss, grads } = worker ? await parallelLossAndGradients(model, ctx, vars, s, opts, worker) : lossAndGradients(model, ctx, vars, s, opts);
          expect(Number.isFinite(loss), 'finite per-patch loss').to.equal(true);
          optimizer.applyGradients(vars.map((v, i) => ({ name: v.name, tensor: grads[i] })));
          tf.dispose(grads);
        }
      } finally {
        await worker?.close();
      }
      const after = snapshot(model);
      const towerNames = [...before.keys()].filter((n) => n.startsWith(TOWER));
      expect(towerNames.length).to.be.greaterThan(10);
      for (const n of towerNames) expect(changed(before.get(n)!, after.get(n)!), `${n} changed`).to.equal(false);
      for (const n of [...before.keys()].filter((k) => k.startsWith('language_model.model.layers.'))) {
        expect(changed(before.get(n)!, after.get(n)!), `${n} changed`).to.equal(false);
      }
      const projectorNames = [...before.keys()].filter((n) => n.startsWith(PROJECTOR));
      expect(projectorNames.length).to.be.greaterThan(0);
      for (const n of [...projectorNames, LM_HEAD]) expect(changed(before.get(n)!, after.get(n)!), `${n} changed`).to.equal(true);
      optimizer.dispose();
      model.dispose();
    });
  }

  it('scripts/train.js refuses a bad --mode and --out models/default in one line, before writing anything', () => {
    const shipped = join(REPO_ROOT, 'models/default');
    const read = () => new Map(readdirSync(shipped).map((f) => [f, readFileSync(join(shipped, f))]));
    const before = read();
    for (const [args, message] of [
      [['--mode', 'bogus'], "--mode must be vision, align, joint or clip, got 'bogus'"],
      [['--mode', 'align'], '--out models/default would overwrite the shipped model: give another --out'],
    ] as const) {
      const run = spawnSync(process.execPath, [join(REPO_ROOT, 'dist/scripts/train.js'), ...args, '--minutes', '0'], { cwd: REPO_ROOT, encoding: 'utf8' });
      expect(run.status).to.equal(1);
      expect(run.stderr).to.equal(`train: ${message}\n`);
    }
    expect(read()).to.deep.equal(before);
  });
});
