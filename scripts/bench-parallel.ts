// One core vs two: the heavy matmul layers run on the main thread alone (Linear, TwoLayerMlp,
// GatedMlp) and split between the main thread and one worker (layers/parallel.ts), in one run,
// same weights, interleaved repetitions (so background load hits both alike).
//
//   node dist/scripts/bench-parallel.js [--runs 7] [--warmup 2] [--out FILE] [--no-json] [--quick]
import * as fs from 'node:fs';
import { scriptArgs, runScript } from './args.js';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { ClipAttention, LayerNorm, Linear, GatedMlp, TwoLayerMlp, activation, setReleaseUnpackedWeights } from '../layers/index.js';
import { ClipEncoderLayer } from '../src/vision.js';
import { ParallelLinear, ParallelMlp, ParallelPool } from '../layers/parallel.js';

interface Case {
  name: string;
  shape: string;
  flops: number;
  /** Builds both variants on the same weights; returns [single, parallel] apply functions and a cleanup. */
  build(pool: ParallelPool): Promise<{ single: () => tf.Tensor2D; parallel: () => tf.Tensor2D; dispose(): void }>;
}

const flags = scriptArgs('bench-parallel', 'usage: node dist/scripts/bench-parallel.js [--runs 7] [--warmup 2] [--out FILE] [--no-json] [--quick] [--no-release-weights]', {
  runs: { type: 'string' },
  warmup: { type: 'string' },
  out: { type: 'string' },
  'no-json': { type: 'boolean' },
  quick: { type: 'boolean' },
  'no-release-weights': { type: 'boolean' },
});
function arg(name: 'runs' | 'warmup' | 'out', def: string): string {
  return flags[name] ?? def;
}
const has = (name: 'no-json' | 'quick' | 'no-release-weights') => flags[name] === true;

let seed = 12345;
function rand(n: number, std = 0.02): Float32Array {
  const out = new Float32Array(n);
  const a = std * Math.sqrt(12);
  for (let i = 0; i < n; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    out[i] = (seed / 4294967296 - 0.5) * a;
  }
  return out;
}

function linearCase(name: string, T: number, inF: number, outF: number): Case {
  return {
    name,
    shape: `[${T},${inF}] x [${inF},${outF}]`,
    flops: 2 * T * inF * outF,
    async build(pool) {
      const w = rand(inF * outF);
      const b = rand(outF);
      const x = tf.tensor2d(rand(T * inF, 1), [T, inF]);
      const single = Linear.fromHost(w, inF, outF, b);
      const par = await ParallelLinear.fromHost(pool, w, inF, outF, b);
      return { single: () => single.apply(x), parallel: () => par.apply(x), dispose: () => (single.dispose(), par.dispose(), x.dispose()) };
    },
  };
}

function mlpCase(name: string, kind: 'mlp' | 'gated', T: number, C: number, I: number, act: string): Case {
  const cols1 = kind === 'gated' ? 2 * I : I;
  return {
    name,
    shape: kind === 'gated' ? `[${T},${C}] -> gate/up ${I} -> ${C}` : `[${T},${C}] -> ${I} -> ${C}`,
    flops: 2 * T * C * cols1 + 2 * T * I * C,
    async build(pool) {
      const w = { w1: rand(C * cols1), b1: kind === 'mlp' ? rand(cols1) : null, w2: rand(I * C), b2: kind === 'mlp' ? rand(C) : null };
      const x = tf.tensor2d(rand(T * C, 1), [T, C]);
      const fc1 = Linear.fromHost(w.w1, C, cols1, w.b1);
      const fc2 = Linear.fromHost(w.w2, I, C, w.b2);
      const single = kind === 'gated' ? new GatedMlp(fc1, fc2, activation(act)) : new TwoLayerMlp(fc1, fc2, activation(act));
      const par = await ParallelMlp.fromHost(pool, kind, w, C, I, C, act);
      return { single: () => single.apply(x), parallel: () => par.apply(x), dispose: () => (single.dispose(), par.dispose(), x.dispose()) };
    },
  };
}

/** A whole CLIP encoder layer: attention (and norms) on the main thread in both; the MLP alone or split. */
function clipLayerCase(T: number, C: number, I: number, H: number): Case {
  return {
    name: 'ViT-L encoder layer (MLP split, attention not)',
    shape: `[${T},${C}], ${H} heads, MLP ${I}`,
    flops: 2 * T * C * (4 * C + 2 * I) + 4 * T * T * C,
    async build(pool) {
      const ln = () => new LayerNorm(tf.ones([C]) as tf.Tensor1D, tf.zeros([C]) as tf.Tensor1D, 1e-5);
      const [ln1, ln2] = [ln(), ln()];
      const attn = new ClipAttention(Linear.fromHost(rand(C * 3 * C), C, 3 * C, rand(3 * C)), Linear.fromHost(rand(C * C), C, C, rand(C)), H);
      const w = { w1: rand(C * I), b1: rand(I), w2: rand(I * C), b2: rand(C) };
      const mlp = new TwoLayerMlp(Linear.fromHost(w.w1, C, I, w.b1), Linear.fromHost(w.w2, I, C, w.b2), activation('quick_gelu'));
      const par = ParallelMlp.fromHost(pool, 'mlp', w, C, I, C, 'quick_gelu');
      const single = new ClipEncoderLayer(ln1, attn, ln2, mlp);
      const split = new ClipEncoderLayer(ln1, attn, ln2, par);
      const x = tf.tensor2d(rand(T * C, 1), [T, C]);
      return { single: () => single.apply(x), parallel: () => split.apply(x), dispose: () => (single.dispose(), par.dispose(), x.dispose()) };
    },
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function timeOnce(f: () => tf.Tensor2D): number {
  const t = performance.now();
  const y = f();
  y.dataSync();
  const ms = performance.now() - t;
  y.dispose();
  return ms;
}

async function main(): Promise<void> {
  const runs = Number(arg('runs', '7'));
  const warmup = Number(arg('warmup', '2'));
  if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend failed to initialise');
  setReleaseUnpackedWeights(!has('no-release-weights'));
  const t0 = performance.now();
  const pool = await ParallelPool.start();
  const startMs = performance.now() - t0;

  const cases: Case[] = [
    linearCase('latency: tiny linear', 1, 64, 64),
    linearCase('ViT-L qkv projection', 577, 1024, 3072),
    linearCase('ViT-L out projection', 577, 1024, 1024),
    mlpCase('ViT-L MLP (fc1, quick_gelu, fc2)', 'mlp', 577, 1024, 4096, 'quick_gelu'),
    clipLayerCase(577, 1024, 4096, 16),
    linearCase('LLaMA-7B decode matvec (gate-sized)', 1, 4096, 11008),
  ];
  if (!has('quick')) cases.push(mlpCase('LLaMA-7B MLP, decode', 'gated', 1, 4096, 11008, 'silu'));

  const rows: Array<Record<string, unknown>> = [];
  for (const c of cases) {
    const built = await c.build(pool);
    // Same result check (relative to the largest output value).
    const a = built.single();
    const b = built.parallel();
    const [da, db] = [a.dataSync(), b.dataSync()];
    let maxDiff = 0;
    let maxAbs = 0;
    for (let i = 0; i < da.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(da[i] - db[i]));
      maxAbs = Math.max(maxAbs, Math.abs(da[i]));
    }
    a.dispose();
    b.dispose();
    const n = c.flops < 1e6 ? runs * 20 : runs;
    for (let i = 0; i < warmup; i++) (timeOnce(built.single), timeOnce(built.parallel));
    const one: number[] = [];
    const two: number[] = [];
    for (let i = 0; i < n; i++) {
      one.push(timeOnce(built.single));
      two.push(timeOnce(built.parallel));
    }
    built.dispose();
    const m1 = median(one);
    const m2 = median(two);
    const row = {
      layer: c.name,
      shape: c.shape,
      gflop: c.flops / 1e9,
      oneCoreMs: m1,
      twoCoresMs: m2,
      speedup: m1 / m2,
      oneCoreGflops: c.flops / m1 / 1e6,
      twoCoresGflops: c.flops / m2 / 1e6,
      maxRelDiff: maxDiff / (maxAbs || 1),
      oneCoreRuns: one,
      twoCoresRuns: two,
    };
    rows.push(row);
    process.stderr.write(`${c.name}: ${m1.toFixed(2)} ms vs ${m2.toFixed(2)} ms\n`);
  }
  await pool.dispose();

  const cpu = os.cpus();
  const machine = `${cpu[0]?.model ?? 'unknown'}, ${cpu.length} cores, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}`;
  console.log(`wasm backend (tfjs-backend-wasm, XNNPACK, SIMD); ${machine}; worker start ${startMs.toFixed(0)} ms; load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log('| layer | shape | 1 core ms | 2 cores ms | speed-up | GFLOP/s 1 / 2 | max rel. diff |');
  console.log('|---|---|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    const f = (v: unknown, d = 1) => (v as number).toFixed(d);
    console.log(`| ${r.layer} | ${r.shape} | ${f(r.oneCoreMs, 2)} | ${f(r.twoCoresMs, 2)} | **${f(r.speedup, 2)}x** | ${f(r.oneCoreGflops)} / ${f(r.twoCoresGflops)} | ${(r.maxRelDiff as number).toExponential(1)} |`);
  }
  if (!has('no-json')) {
    const stamp = new Date().toISOString().slice(0, 16).replace(/[T:]/g, '-');
    const out = arg('out', path.join('bench', 'results', `parallel-${stamp}.json`));
    fs.mkdirSync(path.dirname(out), { recursive: true });
    const json = { machine, backend: 'wasm', date: new Date().toISOString(), command: process.argv.slice(1).join(' '), runs, warmup, workerStartMs: startMs, loadAverage: os.loadavg(), rows };
    fs.writeFileSync(out, JSON.stringify(json, null, 2));
    console.log(`wrote ${out}`);
  }
}

runScript('bench-parallel', main);
