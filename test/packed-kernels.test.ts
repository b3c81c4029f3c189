// The WebAssembly SIMD kernels (kernels/matmul.ts, kernels/panel.ts) through PackedLinear, against the plain
// TypeScript reference of weights/quantized.ts (referenceMatmul: float64 sums of the same
// quantized values), for every format, shapes that are not multiples of the block (K = 33, 1) or
// tile sizes (N = 7, M = 1 and 5 on the integer kernels, M = 1 on the f16 one, the rest on the float32 panels), one and two threads, on the wasm and cpu backends and on the
// dequantizing fallback. Tensors are not leaked, and a disposed layer refuses work.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../src/backend.js';
import { PackedLinear, PackedRuntime, PACKED_MATMUL, PANEL_MIN_ROWS } from '../layers/packed/index.js';
import { quantizeMatrix, referenceMatmul, type PackedFormat } from '../weights/index.js';
import { randomUniform } from '../scripts/random-model.js';
import { maxRelDiff } from './helpers/fixture.js';

const FORMATS: PackedFormat[] = ['f16', 'q8_0', 'q4_0'];


describe('packed kernels: WebAssembly SIMD matmuls on packed weights', function () {
  this.timeout(60000);
  const runtimes: PackedRuntime[] = [];
  const runtime = (threads: number) => {
    const r = new PackedRuntime(threads, 1 << 20);
    runtimes.push(r);
    return r;
  };
  before(async () => {
    await selectBackend('wasm');
  });
  after(async () => {
    await Promise.all(runtimes.map((r) => r.dispose()));
    await selectBackend('wasm');
  });

  for (const threads of [1, 2]) {
    for (const format of FORMATS) {
      for (const [M, K, N] of [[1, 33, 7], [5, 33, 7], [5, 1, 3], [4, 64, 8], [9, 96, 13], [70, 40, 6]]) {
        it(`${format}, ${threads} thread(s): [${M}, ${K}] x [${K}, ${N}] with bias matches the reference`, () => {
          const w = randomUniform(N * K, 1, 11 + K + N);
          const x = randomUniform(M * K, 2, 7 + M);
          const bias = randomUniform(N, 0.5, 3);
          const layer = PackedLinear.fromTorch(runtime(threads), format, w, N, K, bias);
          // M >= PANEL_MIN_ROWS: the float32-panel kernel (float32 activations); fewer: 16-bit activations
          const expected = referenceMatmul(x, M, quantizeMatrix(w, N, K, format), bias, M >= PANEL_MIN_ROWS[format] ? 'float32' : 'int16');
          const got = tf.tidy(() => layer.apply(tf.tensor2d(x, [M, K])).dataSync() as Float32Array);
          expect(maxRelDiff(got, Float32Array.from(expected))).to.be.below(1e-5);
          layer.dispose();
        });
      }
    }
  }

  it('output blocks and a column scale: applyBlocks gives the columns of apply, scaled', () => {
    const [M, K, N] = [3, 50, 10];
    const w = randomUniform(N * K, 1, 5);
    const x = randomUniform(M * K, 1, 6);
    const r = runtime(2);
    const plain = PackedLinear.fromTorch(r, 'q8_0', w, N, K, null);
    const scaled = PackedLinear.fromTorch(r, 'q8_0', w, N, K, null, { widths: [4, 4, 2], columnScale: (c) => (c < 4 ? 0.5 : 1) });
    tf.tidy(() => {
      const xt = tf.tensor2d(x, [M, K]);
      const full = plain.apply(xt).arraySync();
      const blocks = scaled.applyBlocks(xt).map((b) => b.arraySync());
      expect(blocks.map((b) => b[0].length)).to.deep.equal([4, 4, 2]);
      for (let m = 0; m < M; m++) {
        for (let c = 0; c < N; c++) {
          const block = c < 4 ? 0 : c < 8 ? 1 : 2;
          const v = blocks[block][m][c - [0, 4, 8][block]];
          expect(v).to.equal(Math.fround(full[m][c] * (c < 4 ? 0.5 : 1)));
        }
      }
    });
  });

  it('runs as a tfjs op: tidy releases everything, 50 calls leak no tensor', () => {
    const layer = PackedLinear.fromTorch(runtime(2), 'q4_0', randomUniform(64 * 96, 1, 1), 64, 96, null);
    const x = tf.tensor2d(randomUniform(2 * 96, 1, 2), [2, 96]);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 50; i++) tf.tidy(() => {
      layer.apply(x);
    });
    expect(tf.memory().numTensors).to.equal(before);
    const y = layer.apply(x);
    expect(tf.memory().numTensors).to.equal(before + 1);
    y.dispose();
    x.dispose();
    layer.dispose();
    expect(() => layer.apply(tf.zeros([1, 96]))).to.throw(/after dispose/);
  });

  it('the cpu backend runs the same kernel; a backend without it falls back to dequantized float32', async () => {
    const [M, K, N] = [5, 33, 7];
    const w = randomUniform(N * K, 1, 21);
    const x = randomUniform(M * K, 1, 22);
    const layer = PackedLinear.fromTorch(runtime(1), 'q8_0', w, N, K, null);
    const wasm = tf.tidy(() => layer.apply(tf.tensor2d(x, [M, K])).dataSync() as Float32Array);
    await selectBackend('cpu');
    expect(tf.getKernel(PACKED_MATMUL, 'cpu')).to.not.equal(undefined);
    const cpu = tf.tidy(() => layer.apply(tf.tensor2d(x, [M, K])).dataSync() as Float32Array);
    expect(Array.from(cpu)).to.deep.equal(Array.from(wasm));
    // The fallback: float32 x times the dequantized weight (x is not quantized there).
    tf.unregisterKernel(PACKED_MATMUL, 'cpu');
    try {
      const fallback = tf.tidy(() => layer.apply(tf.tensor2d(x, [M, K])).dataSync() as Float32Array);
      expect(maxRelDiff(fallback, wasm)).to.be.below(2e-2);
    } finally {
      const k = tf.getKernel(PACKED_MATMUL, 'wasm');
      if (k) tf.registerKernel({ ...k, backendName: 'cpu' });
    }
    await selectBackend('wasm');
  });

  it('weights spread over many small memories compute as in one', () => {
    const r = new PackedRuntime(2, 1 << 16, 1 << 20);
    runtimes.push(r);
    const layers = [0, 1, 2, 3, 4, 5].map((i) => {
      const w = randomUniform(96 * 3000, 1, 40 + i);
      return { w, layer: PackedLinear.fromTorch(r, 'q8_0', w, 96, 3000, null) };
    });
    expect(r.arena.memories.length).to.be.greaterThan(2);
    expect(new Set(layers.map((l) => l.layer.matrix().data.buffer)).size).to.be.greaterThan(2);
    const x = randomUniform(3 * 3000, 1, 9);
    for (const { w, layer } of layers) {
      const got = tf.tidy(() => layer.apply(tf.tensor2d(x, [3, 3000])).dataSync() as Float32Array);
      expect(maxRelDiff(got, Float32Array.from(referenceMatmul(x, 3, quantizeMatrix(w, 96, 3000, 'q8_0'))))).to.be.below(1e-5);
    }
  });

  it('both builds (relaxed SIMD and plain, as ILLAVA_KERNELS picks) match the reference on every path', () => {
    // A child per build: the module is chosen once per process.
    const modules = new URL('../', import.meta.url).href;
    const script = `
      import * as tf from '@tensorflow/tfjs-core';
      const { selectBackend } = await import('${modules}src/backend.js');
      const { PackedLinear, PackedRuntime, kernelVariant } = await import('${modules}layers/packed/index.js');
      const { quantizeMatrix, referenceMatmul } = await import('${modules}weights/index.js');
      const { randomUniform } = await import('${modules}scripts/random-model.js');
      await selectBackend('wasm');
      const runtime = new PackedRuntime(2, 1 << 20);
      let worst = 0;
      for (const format of ['f16', 'q8_0', 'q4_0']) for (const M of [1, 9]) {
        const [K, N] = [70, 11];
        const w = randomUniform(N * K, 1, 3), x = randomUniform(M * K, 1, 4);
        const layer = PackedLinear.fromTorch(runtime, format, w, N, K, null);
        const want = referenceMatmul(x, M, quantizeMatrix(w, N, K, format), null, M >= runtime.panelMinRows[format] ? 'float32' : 'int16');
        const got = tf.tidy(() => layer.apply(tf.tensor2d(x, [M, K])).dataSync());
        let d = 0, top = 0;
        for (let i = 0; i < got.length; i++) { d = Math.max(d, Math.abs(got[i] - want[i])); top = Math.max(top, Math.abs(want[i])); }
        worst = Math.max(worst, d / top);
      }
      await runtime.dispose();
      console.log(JSON.stringify({ variant: kernelVariant(), worst }));`;
    const run = (variant: string) => spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, ILLAVA_KERNELS: variant }, encoding: 'utf8' });
    for (const variant of ['plain', 'relaxed']) {
      const child = run(variant);
      expect(child.status, child.stderr).to.equal(0);
      const out = JSON.parse(child.stdout.trim()) as { variant: string; worst: number };
      expect(out.variant).to.equal(variant);
      expect(out.worst).to.be.below(1e-5);
    }
    const bad = run('fast');
    expect(bad.status).to.not.equal(0);
    expect(bad.stderr).to.match(/ILLAVA_KERNELS must be auto, plain or relaxed, got 'fast'/);
  });

  it('refuses an input of the wrong width', () => {
    const layer = PackedLinear.fromTorch(runtime(1), 'f16', randomUniform(8 * 32, 1, 1), 8, 32, null);
    expect(() => layer.apply(tf.zeros([1, 31]))).to.throw(/input must be \[T, 32\]/);
  });
});
