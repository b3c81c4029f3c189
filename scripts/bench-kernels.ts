#!/usr/bin/env node
// Kernel micro-benchmark: `node dist/scripts/bench-kernels.js [--threads 1,2] [--formats q8_0,...]`.
// PackedLinear calls (the tfjs op: copy in, quantize x, kernel split over threads, copy out) at the
// LLaMA-7B layer shapes, decode (1 row) and prefill (612 rows), against tfjs-wasm's float32
// matmul on a resident weight at the same shape; best and median of 7 calls. And one layer's
// attention (LLaMA-7B prefill, ViT-L/14-336) in tfjs against our prefill-attention kernel.
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../src/backend.js';
import { ArenaKV, PackedLinear, PackedRuntime, PANEL_MIN_ROWS, kernelVariant } from '../layers/packed/index.js';
import { attendRows } from '../layers/packed/attention-prefill.js';
import { attendHeads, causalMask } from '../layers/index.js';
import { randomUniform } from './random-model.js';
import { scriptArgs } from './args.js';
import { quantizeMatrix, type PackedFormat } from '../weights/index.js';

const args = scriptArgs(
  'bench-kernels',
  `usage: node dist/scripts/bench-kernels.js [--threads 1,2] [--formats q8_0,q4_0,f16] [--rows 612] [--only NAME]
  --threads  comma-separated thread counts to run each kernel with
  --formats  comma-separated packed formats
  --rows     rows of the prefill shape
  --only     run only the shapes whose name contains this (qkv, down, prefill, attention, quantize)`,
  {
    threads: { type: 'string', default: '1,2' },
    formats: { type: 'string', default: 'q8_0,q4_0,f16' },
    rows: { type: 'string', default: '612' },
    only: { type: 'string', default: '' },
  },
);
const threadsList = args.threads.split(',').map(Number);
const formats = args.formats.split(',') as PackedFormat[];
const allShapes: Array<[string, number, number, number]> = [
  ['qkv decode', 1, 4096, 12288],
  ['down decode', 1, 11008, 4096],
  ['gate+up prefill', Number(args.rows), 4096, 22016],
  ['down prefill', Number(args.rows), 11008, 4096],
  ['vit mlp prefill', 577, 1024, 4096],
  // where the float32 panels start to pay (PANEL_MIN_ROWS)
  ...[2, 4, 8, 16, 32].map((m): [string, number, number, number] => [`crossover ${m}`, m, 4096, 4096]),
];

const only = args.only;
const shapes = allShapes.filter(([n]) => !only || n.includes(only));
// Attention of one layer: [name, query rows, heads (= kv heads), head dim, causal]
const attentionShapes: Array<[string, number, number, number, boolean]> = [
  ['attention LLaMA-7B prefill', Number(args.rows), 32, 128, true],
  ['attention ViT-L/14-336', 577, 16, 64, false],
].filter(([n]) => !only || (n as string).includes(only)) as Array<[string, number, number, number, boolean]>;

/** One layer's attention: tfjs (attendHeads, this thread) against our kernel (attendRows, every thread), interleaved. */
async function benchAttention(name: string, T: number, H: number, d: number, causal: boolean): Promise<void> {
  const W = H * d;
  const q = randomUniform(T * W, 0.2, 41);
  const k = randomUniform(T * W, 1, 42);
  const v = randomUniform(T * W, 1, 43);
  const heads = (a: Float32Array) => Array.from({ length: H }, (_, h) => tf.tidy(() => tf.slice(tf.tensor2d(a, [T, W]), [0, h * d], [T, d]) as tf.Tensor2D));
  const [qh, kh, vh] = [heads(q), heads(k), heads(v)];
  const mask = causal ? causalMask(T) : null;
  const tfjs = () => {
    const { out } = attendHeads(qh, kh, vh, { mask });
    out.dataSync();
    out.dispose();
  };
  for (const threads of threadsList) {
    const runtime = new PackedRuntime(threads, 64 << 20);
    const kv = new ArenaKV(runtime, H, d, T);
    kv.append(k, v, T);
    const ours = () => attendRows(runtime, kv.rows, q, W, 0, T, H, d, causal);
    const a = time(tfjs, 3);
    const b = time(ours, 3);
    process.stdout.write(`${name} [${T} rows, ${H} heads x ${d}${causal ? ', causal' : ''}] tfjs ${a.best.toFixed(1)} ms, kernel ${threads}t ${b.best.toFixed(1)} ms: ${(a.best / b.best).toFixed(2)}x\n`);
    kv.dispose();
    await runtime.dispose();
  }
  [...qh, ...kh, ...vh].forEach((t) => t.dispose());
  mask?.dispose();
}

function time(fn: () => void, runs = 7): { best: number; median: number } {
  fn();
  const t: number[] = [];
  for (let r = 0; r < runs; r++) {
    const s = performance.now();
    fn();
    t.push(performance.now() - s);
  }
  t.sort((a, b) => a - b);
  return { best: t[0], median: t[Math.floor(runs / 2)] };
}

/** Load-time quantization of one LLaMA-7B MLP matrix: the TypeScript reference against the kernel (into the arena), interleaved. */
async function benchQuantize(): Promise<void> {
  const [N, K] = [11008, 4096];
  const w = randomUniform(N * K, 0.02, 5);
  const runtime = new PackedRuntime(1, 64 << 20);
  for (const format of formats.filter((f) => f !== 'f16')) {
    const ts = time(() => void quantizeMatrix(w, N, K, format), 3);
    const kernel = time(() => PackedLinear.fromTorch(runtime, format, w, N, K, null).dispose(), 3);
    process.stdout.write(`quantize ${format} [${N},${K}]: TypeScript best ${ts.best.toFixed(0)} ms, kernel best ${kernel.best.toFixed(0)} ms: ${(ts.best / kernel.best).toFixed(1)}x (${((N * K) / kernel.best / 1e3).toFixed(0)} M values/s)\n`);
  }
  await runtime.dispose();
}

await selectBackend('wasm');
process.stdout.write(`kernels: ${kernelVariant()} build\n`);
if (!only || 'quantize'.includes(only)) await benchQuantize();
for (const [name, T, H, d, causal] of attentionShapes) await benchAttention(name, T, H, d, causal);
for (const [name, M, K, N] of shapes) {
  const x = tf.tensor2d(randomUniform(M * K, 1, 1), [M, K]);
  const w = randomUniform(N * K, 0.02, 2);
  const runs = M > 1 ? 3 : 7;
  if (M === 1) {
    const wt = tf.tensor2d(randomUniform(K * N, 0.02, 3), [K, N]);
    const f = time(() => {
      const y = tf.matMul(x, wt);
      y.dataSync();
      y.dispose();
    }, runs);
    process.stdout.write(`${name} [${M},${K}]x[${K},${N}] tfjs f32: best ${f.best.toFixed(2)} ms, median ${f.median.toFixed(2)} ms\n`);
    wt.dispose();
  }
  for (const format of formats) {
    for (const threads of threadsList) {
      const runtime = new PackedRuntime(threads, 256 << 20);
      const layer = PackedLinear.fromTorch(runtime, format, w, N, K, null);
      const run = () => {
        const y = layer.apply(x);
        y.dataSync();
        y.dispose();
      };
      // M > 1: the float32-panel path against the integer/f16 one, interleaved, best of each
      const paths: Array<[string, number]> = M > 1 ? [['panel', 1], [format === 'f16' ? 'row-at-a-time' : 'integer', Infinity]] : [['', PANEL_MIN_ROWS[format]]];
      const best = new Map<string, { best: number; median: number }>();
      for (let round = 0; round < (M > 1 ? 2 : 1); round++) {
        for (const [path, minRows] of paths) {
          runtime.panelMinRows[format] = minRows;
          const r = time(run, runs);
          const prev = best.get(path);
          if (!prev || r.best < prev.best) best.set(path, r);
        }
      }
      for (const [path, r] of best) {
        const gflops = (2 * M * K * N) / r.best / 1e6;
        const gbs = layer.packedBytes / r.best / 1e6;
        process.stdout.write(`${name} [${M},${K}]x[${K},${N}] ${format} ${threads}t${path ? ' ' + path : ''}: best ${r.best.toFixed(2)} ms, median ${r.median.toFixed(2)} ms, ${gflops.toFixed(1)} GFLOP/s, ${gbs.toFixed(1)} GB/s\n`);
      }
      layer.dispose();
      await runtime.dispose();
    }
  }
  x.dispose();
}
