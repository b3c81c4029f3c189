// Tensor-parallel layers on a worker thread (layers/parallel.ts): same results as the one-thread
// layers, clear errors instead of hangs, and a disposed (or never disposed) pool lets node exit.
import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { selectBackend } from '../src/backend.js';
import { GatedMlp, Linear, TwoLayerMlp, activation } from '../layers/index.js';
import { randomUniform } from '../scripts/random-model.js';
import { ParallelLinear, ParallelMlp, ParallelPool, splitPoint } from '../layers/parallel.js';
import { LlavaModel, type PixelValues } from '../src/llava.js';
import { expectedArray, maxRelDiff, REPO_ROOT, TINY_LLAVA_DIR } from './helpers/fixture.js';
import { rejects } from './helpers/assert.js';
import { workerTimeoutMs } from '../layers/worker-timeout.js';

const randomUniformForTest = (n: number, seed: number) => randomUniform(n, 0.5, seed);

describe('parallel: tensor-parallel layers on a worker thread', function () {
  let pool: ParallelPool;
  before(async () => {
    await selectBackend('wasm');
    pool = await ParallelPool.start({ timeoutMs: 20000 });
  });
  after(async () => {
    await pool?.dispose();
  });

  it('splits columns at a multiple of 64 near the middle', () => {
    expect(splitPoint(4096)).to.equal(2048);
    expect(splitPoint(200)).to.equal(128);
    expect(splitPoint(3)).to.equal(2);
    expect(splitPoint(2)).to.equal(1);
  });

  it('ParallelLinear equals Linear (1e-6 relative), with and without bias, one row and many', async () => {
    for (const [T, inF, outF, withBias] of [
      [7, 96, 300, true],
      [1, 256, 1100, false],
      [33, 64, 2, true],
    ] as const) {
      const w = randomUniformForTest(inF * outF, 1);
      const b = withBias ? randomUniformForTest(outF, 2) : null;
      const x = tf.tensor2d(randomUniformForTest(T * inF, 3), [T, inF]);
      const single = Linear.fromHost(w, inF, outF, b);
      const par = await ParallelLinear.fromHost(pool, w, inF, outF, b);
      const [y1, y2] = [single.apply(x), par.apply(x)];
      expect(y2.shape).to.deep.equal([T, outF]);
      expect(maxRelDiff(y2.dataSync(), y1.dataSync())).to.be.below(1e-6);
      const blocks = par.applyBlocks(x);
      expect(blocks.reduce((s, t) => s + t.shape[1], 0)).to.equal(outF);
      const joined = tf.concat(blocks, 1);
      expect(maxRelDiff(joined.dataSync(), y1.dataSync())).to.be.below(1e-6);
      [y1, y2, joined, x, ...blocks].forEach((t) => t.dispose());
      single.dispose();
      par.dispose();
    }
  });

  it('ParallelMlp equals TwoLayerMlp and GatedMlp (1e-6 relative)', async () => {
    const [T, C, I] = [9, 64, 1280];
    for (const kind of ['mlp', 'gated'] as const) {
      const cols1 = kind === 'gated' ? 2 * I : I;
      const act = kind === 'gated' ? 'silu' : 'quick_gelu';
      const w = {
        w1: randomUniformForTest(C * cols1, 4),
        b1: randomUniformForTest(cols1, 5),
        w2: randomUniformForTest(I * C, 6),
        b2: randomUniformForTest(C, 7),
      };
      const x = tf.tensor2d(randomUniformForTest(T * C, 8), [T, C]);
      const fc1 = Linear.fromHost(w.w1, C, cols1, w.b1);
      const fc2 = Linear.fromHost(w.w2, I, C, w.b2);
      const single = kind === 'gated' ? new GatedMlp(fc1, fc2, activation(act)) : new TwoLayerMlp(fc1, fc2, activation(act));
      const par = await ParallelMlp.fromHost(pool, kind, w, C, I, C, act);
      const [y1, y2] = [single.apply(x), par.apply(x)];
      expect(maxRelDiff(y2.dataSync(), y1.dataSync()), kind).to.be.below(1e-6);
      [y1, y2, x].forEach((t) => t.dispose());
      single.dispose();
      par.dispose();
    }
  });

  it('a worker error is reported, and a crashed worker gives an error, not a hang', async () => {
    const p = await ParallelPool.start({ timeoutMs: 5000 });
    try {
      const lin = await ParallelLinear.fromHost(p, randomUniformForTest(32 * 8, 1), 32, 8, null);
      // Wrong input width: the worker's half fails; the error comes back from the worker.
      const bad = tf.zeros([2, 16]) as tf.Tensor2D;
      expect(() => p.run(1, bad, 4, () => null)).to.throw(/parallel worker/);
      bad.dispose();
      const x = tf.ones([2, 32]) as tf.Tensor2D;
      lin.apply(x).dispose(); // still usable after an error in one call
      p.crashForTest();
      const t0 = Date.now();
      expect(() => lin.apply(x)).to.throw(/parallel (worker|pool)/);
      expect(Date.now() - t0).to.be.below(4000);
      expect(() => lin.apply(x)).to.throw(/not usable/);
      x.dispose();
    } finally {
      await p.dispose();
    }
  });

  it('a worker that never answers times out', async () => {
    const p = await ParallelPool.start({ timeoutMs: 300 });
    try {
      const lin = await ParallelLinear.fromHost(p, randomUniformForTest(64 * 64, 1), 64, 64, null);
      const x = tf.ones([1, 64]) as tf.Tensor2D;
      // The worker is kept busy by a blocking message it cannot finish within the timeout.
      (p as unknown as { worker: { postMessage(m: unknown): void } }).worker.postMessage({ op: 'sleep', ms: 2000 });
      expect(() => lin.apply(x)).to.throw(/did not answer in 300 ms/);
      x.dispose();
    } finally {
      await p.dispose();
    }
  });

  it('node exits after dispose, and also when a pool is never disposed', function () {
    this.timeout(60000);
    const mod = (p: string) => JSON.stringify(join(REPO_ROOT, 'dist', p));
    for (const disposeIt of [true, false]) {
      const script = `
        import * as tf from '@tensorflow/tfjs-core';
        import '@tensorflow/tfjs-backend-wasm';
        const { ParallelPool, ParallelLinear } = await import(${mod('layers/parallel.js')});
        await tf.setBackend('wasm');
        const pool = await ParallelPool.start();
        const lin = await ParallelLinear.fromHost(pool, new Float32Array(64 * 128).fill(1), 64, 128, null);
        const y = lin.apply(tf.ones([2, 64]));
        console.log('sum', tf.sum(y).dataSync()[0]);
        ${disposeIt ? 'lin.dispose(); await pool.dispose(); console.log("alive", pool.alive);' : ''}
      `;
      const file = join(REPO_ROOT, 'dist', 'test', `parallel-exit-${process.pid}.mjs`);
      writeFileSync(file, script);
      let out: string;
      try {
        out = execFileSync(process.execPath, [file], { cwd: REPO_ROOT, timeout: 30000, encoding: 'utf8' });
      } finally {
        rmSync(file, { force: true });
      }
      expect(out).to.contain('sum 16384');
      if (disposeIt) expect(out).to.contain('alive false');
    }
  });
});

describe('parallel: LlavaModel with threads: 2', function () {
  before(() => selectBackend('wasm'));

  it('gives the same tokens and logits (1e-5 relative) as threads: 1 on the tiny fixture, and a merge config too', async () => {
    const pixels: PixelValues = { pixelValues: expectedArray('pixel_values').data, height: 56, width: 56 };
    const one = await LlavaModel.fromPretrained(TINY_LLAVA_DIR);
    const two = await LlavaModel.fromPretrained(TINY_LLAVA_DIR, { threads: 2 });
    try {
      expect([one.threads, two.threads]).to.deep.equal([1, 2]);
      expect(two.parameterCount()).to.equal(one.parameterCount()); // the worker's halves are counted
      for (const merge of ['none', 'illava'] as const) {
        const input = { prompt: 'What is shown in this image?', images: [pixels], maxNewTokens: 8, stopIds: [], returnLogits: true, merge };
        const a = await one.generate(input);
        const b = await two.generate(input);
        expect(b.tokenIds, merge).to.deep.equal(a.tokenIds);
        a.logits!.forEach((row, i) => {
          let diff = 0;
          let scale = 0;
          row.forEach((v, j) => {
            diff = Math.max(diff, Math.abs(v - b.logits![i][j]));
            scale = Math.max(scale, Math.abs(v));
          });
          expect(diff / scale, `${merge} step ${i}`).to.be.below(1e-5);
        });
      }
    } finally {
      one.dispose();
      two.dispose();
    }
  });

  it('a stalled worker fails the call in workerTimeoutMs with a message naming the knob, and later calls at once', async () => {
    const model = await LlavaModel.fromPretrained(TINY_LLAVA_DIR, { threads: 2, weightFormat: 'f32', workerTimeoutMs: 400 });
    try {
      const input = { prompt: 'What is it?', images: [join(TINY_LLAVA_DIR, 'image.png')], maxNewTokens: 2 };
      await model.generate(input);
      // The worker blocks on a message it cannot finish within the timeout.
      (model as unknown as { pool: { worker: { postMessage(m: unknown): void } } }).pool.worker.postMessage({ op: 'sleep', ms: 10000 });
      const t0 = Date.now();
      await rejects(model.generate(input), /^parallel worker did not answer in 400 ms \(terminated\): it stalled, or the machine is too busy; raise workerTimeoutMs \/ \$ILLAVA_WORKER_TIMEOUT_MS, or run with threads 1 \(--threads 1\)$/);
      expect(Date.now() - t0).to.be.below(5000);
      await rejects(model.generate(input), /parallel pool is not usable/);
      // (The tensors of the interrupted forward pass are not freed: the model must be loaded again.)
    } finally {
      model.dispose();
    }
  });

  it('workerTimeoutMs and $ILLAVA_WORKER_TIMEOUT_MS reach both kinds of worker, checked', async () => {
    const model = await LlavaModel.fromPretrained(TINY_LLAVA_DIR, { threads: 2, weightFormat: 'q8_0', visionWeightFormat: 'f32', quantizedCache: false, workerTimeoutMs: 1234 });
    try {
      const m = model as unknown as { pool: { timeoutMs: number }; runtime: { pool: { timeoutMs: number } } };
      expect([m.pool.timeoutMs, m.runtime.pool.timeoutMs]).to.deep.equal([1234, 1234]);
    } finally {
      model.dispose();
    }
    await rejects(LlavaModel.fromPretrained(TINY_LLAVA_DIR, { threads: 2, workerTimeoutMs: 0 }), /workerTimeoutMs must be an integer >= 1 \(ms\), got 0/);
    process.env.ILLAVA_WORKER_TIMEOUT_MS = '2500';
    try {
      expect(workerTimeoutMs()).to.equal(2500);
      process.env.ILLAVA_WORKER_TIMEOUT_MS = 'soon';
      expect(() => workerTimeoutMs()).to.throw("ILLAVA_WORKER_TIMEOUT_MS must be an integer >= 1 (ms), got 'soon'");
    } finally {
      delete process.env.ILLAVA_WORKER_TIMEOUT_MS;
    }
    expect(workerTimeoutMs()).to.equal(60000);
  });

  it('rejects other thread counts', async () => {
    let error: unknown;
    try {
      await LlavaModel.fromPretrained(TINY_LLAVA_DIR, { threads: 3 as 2 });
    } catch (e) {
      error = e;
    }
    expect(String(error)).to.match(/threads must be 1 or 2/);
  });
});
