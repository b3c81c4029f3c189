#!/usr/bin/env node
// Profiles single transformer layers at real sizes on the active tfjs backend: one CLIP ViT-L/14-336
// encoder layer at 577 tokens and/or one LLaMA-7B decoder layer (prefill of T tokens, then one
// decode step on that cache). Prints the median wall time over runs after warm-ups and the time
// per kernel type of one run (tf.profile), with GFLOP/s of the matmuls.
//
//   node dist/scripts/bench-layers.js [--what vit,llama] [--tokens 577] [--llama-tokens 620] [--runs 5]
//     [--layers <path to a compiled layers/index.js>]  (e.g. an older copy, for before/after figures)
import { Command } from 'commander';
import * as tf from '@tensorflow/tfjs-core';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { selectBackend, type BackendName } from '../src/backend.js';
import { randomUniform } from './random-model.js';
import { runScript } from './args.js';

type LayersModule = typeof import('../layers/index.js');

interface Opts {
  what: string;
  tokens: number;
  vitDepth: number;
  llamaTokens: number;
  runs: number;
  warmup: number;
  layers?: string;
  backend: string;
  blockBytes?: number;
  json?: string;
}

const program = new Command()
  .name('bench-layers')
  .description('per-kernel profile of one ViT-L/14-336 and one LLaMA-7B layer')
  .option('--what <list>', 'vit, llama or vit,llama', 'vit,llama')
  .option('--tokens <n>', 'ViT tokens', (v) => parseInt(v, 10), 577)
  .option('--vit-depth <n>', 'ViT layers chained (24: the whole ViT-L encoder)', (v) => parseInt(v, 10), 1)
  .option('--llama-tokens <n>', 'LLaMA prefill tokens', (v) => parseInt(v, 10), 620)
  .option('--runs <n>', 'timed runs', (v) => parseInt(v, 10), 5)
  .option('--warmup <n>', 'warm-up runs', (v) => parseInt(v, 10), 2)
  .option('--layers <file>', 'compiled layers/index.js to use (default: this build)')
  .option('--backend <name>', 'tfjs backend', 'wasm')
  .option('--block-bytes <n>', 'weight block size in bytes (this build only; default 4 MiB)', (v) => parseInt(v, 10))
  .option('--json <file>', 'also write the figures as JSON');

let seed = 1;
const rand = (shape: number[], std = 0.02) => tf.tensor(randomUniform(shape.reduce((a, b) => a * b, 1), std, seed++), shape);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function timeIt(run: () => tf.Tensor, runs: number, warmup: number): Promise<{ median: number; min: number; all: number[] }> {
  for (let i = 0; i < warmup; i++) {
    const y = run();
    y.dataSync();
    y.dispose();
  }
  const all: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    const y = run();
    y.dataSync();
    y.dispose();
    all.push(performance.now() - t);
  }
  return { median: median(all), min: Math.min(...all), all };
}

interface KernelRow { kernel: string; calls: number; ms: number; gflops?: number }

/** Time per kernel name of one run (tf.profile; the wasm backend times each kernel synchronously). */
async function profileKernels(run: () => tf.Tensor): Promise<{ rows: KernelRow[]; totalMs: number }> {
  const info = await tf.profile(() => {
    const y = run();
    y.dataSync();
    y.dispose();
  });
  const by = new Map<string, KernelRow & { flops: number }>();
  for (const k of info.kernels) {
    // Ops that call kernels appear twice (op + kernel); keep the kernels (they have backend timings).
    if (k.name.endsWith('__op')) continue;
    const row = by.get(k.name) ?? { kernel: k.name, calls: 0, ms: 0, flops: 0 };
    row.calls++;
    row.ms += typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    if (k.name === 'BatchMatMul' || k.name === '_FusedMatMul') {
      const [a, b] = k.inputShapes as number[][];
      const M = a[a.length - 2];
      const K = a[a.length - 1];
      const N = b[b.length - 1];
      row.flops += 2 * M * K * N * (a.length === 3 ? a[0] : 1);
    }
    by.set(k.name, row);
  }
  const rows = [...by.values()].sort((x, y) => y.ms - x.ms).map(({ flops, ...r }) => (flops ? { ...r, gflops: flops / r.ms / 1e6 } : r));
  return { rows, totalMs: rows.reduce((a, r) => a + r.ms, 0) };
}

function printProfile(title: string, p: { rows: KernelRow[]; totalMs: number }): void {
  process.stdout.write(`  ${title}: kernels ${p.totalMs.toFixed(0)} ms\n`);
  for (const r of p.rows.slice(0, 12)) {
    process.stdout.write(`    ${r.kernel.padEnd(16)} ${String(r.calls).padStart(5)} calls ${r.ms.toFixed(1).padStart(8)} ms ${(100 * r.ms / p.totalMs).toFixed(1).padStart(5)} %${r.gflops ? `  ${r.gflops.toFixed(1)} GFLOP/s` : ''}\n`);
  }
}

async function vitLayer(L: LayersModule, N: number, o: Opts): Promise<Record<string, unknown>> {
  const C = 1024;
  const I = 4096;
  const H = 16;
  const linear = (i: number, out: number) => new L.Linear(rand([i, out]) as tf.Tensor2D, rand([out]) as tf.Tensor1D);
  const ln = () => new L.LayerNorm(tf.ones([C]) as tf.Tensor1D, tf.zeros([C]) as tf.Tensor1D, 1e-5);
  const depth = o.vitDepth;
  const layers = Array.from({ length: depth }, () => ({ ln1: ln(), ln2: ln(), attn: new L.ClipAttention(linear(C, 3 * C), linear(C, C), H), mlp: new L.TwoLayerMlp(linear(C, I), linear(I, C), L.quickGelu) }));
  const x = rand([N, C], 1) as tf.Tensor2D;
  const run = () =>
    tf.tidy(() => {
      let y = x;
      for (const { ln1, ln2, attn, mlp } of layers) {
        const a = attn.apply(ln1.apply(y)).out;
        const h = tf.add(y, a) as tf.Tensor2D;
        y = tf.add(h, mlp.apply(ln2.apply(h))) as tf.Tensor2D;
      }
      return y;
    });
  const t = await timeIt(run, o.runs, o.warmup);
  const flops = depth * (2 * N * C * (4 * C + 2 * I) + 4 * N * N * C);
  process.stdout.write(`ViT-L/14 ${depth === 1 ? 'layer' : `${depth} layers`}, ${N} tokens: median ${t.median.toFixed(1)} ms (min ${t.min.toFixed(1)}; runs ${t.all.map((v) => v.toFixed(0)).join(' ')}), ${(flops / t.median / 1e6).toFixed(1)} GFLOP/s overall\n`);
  const p = await profileKernels(run);
  printProfile('one run', p);
  layers.forEach((l) => [l.ln1, l.ln2, l.attn, l.mlp].forEach((m) => m.dispose()));
  x.dispose();
  return { tokens: N, depth, medianMs: t.median, minMs: t.min, runsMs: t.all, gflops: flops / t.median / 1e6, kernels: p.rows };
}

async function llamaLayer(L: LayersModule, T: number, o: Opts): Promise<Record<string, unknown>> {
  const D = 4096;
  const I = 11008;
  const H = 32;
  const d = 128;
  const rope = new L.RotaryEmbedding(d, 10000);
  const linear = (i: number, out: number) => new L.Linear(rand([i, out]) as tf.Tensor2D, null);
  const n1 = new L.RMSNorm(tf.ones([D]) as tf.Tensor1D, 1e-5);
  const n2 = new L.RMSNorm(tf.ones([D]) as tf.Tensor1D, 1e-5);
  const attn = new L.LlamaAttention(linear(D, 3 * D), linear(D, D), H, H, rope);
  const mlp = new L.GatedMlp(linear(D, 2 * I), linear(I, D), L.silu);
  const x = rand([T, D], 1) as tf.Tensor2D;
  const x1 = rand([1, D], 1) as tf.Tensor2D;
  let cache = new L.KVCache(1);
  const positions = Array.from({ length: T }, (_, i) => i);
  const block = (input: tf.Tensor2D, pos: number[], mask: tf.Tensor2D | null) =>
    tf.tidy(() => {
      const tables = rope.tables(pos);
      const a = attn.apply({ x: n1.apply(input), rope: tables, cache: cache.layers[0], mask }).out;
      const h = tf.add(input, a) as tf.Tensor2D;
      return tf.add(h, mlp.apply(n2.apply(h)));
    });
  const prefill = () => {
    cache.dispose();
    cache = new L.KVCache(1);
    const mask = L.causalMask(T);
    const y = block(x, positions, mask);
    mask.dispose();
    return y;
  };
  const tp = await timeIt(prefill, Math.max(1, Math.min(o.runs, 3)), 1);
  const flops = 2 * T * D * (4 * D + 3 * I) + 4 * T * T * D;
  process.stdout.write(`LLaMA-7B layer, prefill ${T} tokens: median ${tp.median.toFixed(0)} ms (min ${tp.min.toFixed(0)}), ${(flops / tp.median / 1e6).toFixed(1)} GFLOP/s overall\n`);
  const pp = await profileKernels(prefill);
  printProfile('prefill', pp);
  // Decode: one token on a cache of T (restored after each step so every step sees T).
  prefill().dispose();
  const decode = () => {
    const y = block(x1, [T], null);
    cache.layers[0].truncate(T);
    return y;
  };
  const td = await timeIt(decode, o.runs * 2, o.warmup);
  const bytes = 4 * D * (4 * D + 3 * I);
  process.stdout.write(`LLaMA-7B layer, decode 1 token (cache ${T}): median ${td.median.toFixed(1)} ms (min ${td.min.toFixed(1)}), weights read at ${(bytes / td.median / 1e6).toFixed(1)} GB/s\n`);
  const pd = await profileKernels(decode);
  printProfile('decode', pd);
  cache.dispose();
  [n1, n2, attn, mlp].forEach((m) => m.dispose());
  x.dispose();
  x1.dispose();
  return { prefillTokens: T, prefillMedianMs: tp.median, prefillMinMs: tp.min, prefillGflops: flops / tp.median / 1e6, prefillKernels: pp.rows, decodeMedianMs: td.median, decodeMinMs: td.min, decodeKernels: pd.rows };
}

async function main(): Promise<void> {
  const o = program.parse(process.argv).opts<Opts>();
  const backend = await selectBackend(o.backend as BackendName);
  const layersPath = o.layers ? pathToFileURL(resolve(o.layers)).href : '../layers/index.js';
  const L = (await import(layersPath)) as LayersModule;
  if (o.blockBytes !== undefined) L.setWeightBlockBytes(o.blockBytes);
  process.stdout.write(`backend ${backend.name}; layers from ${o.layers ?? 'this build'}${o.blockBytes ? `; weight blocks ${o.blockBytes} bytes` : ''}\n`);
  const what = o.what.split(',').map((s) => s.trim());
  const out: Record<string, unknown> = { backend: backend.name, layers: o.layers ?? 'this build', date: new Date().toISOString() };
  if (what.includes('vit')) out.vit = await vitLayer(L, o.tokens, o);
  if (what.includes('llama')) out.llama = await llamaLayer(L, o.llamaTokens, o);
  if (o.json) {
    const { writeFileSync } = await import('node:fs');
    writeFileSync(o.json, JSON.stringify(out, null, 1));
  }
}

runScript('bench-layers', main);
