#!/usr/bin/env node
// Weight-format benchmark: `npm run bench:formats -- [options]` (see --help and bench/README.md).
//
// For each weight format (f32 = the float32 reference path, f16, q8_0, q4_0) a child process
// loads the model (random seeded weights at LLaVA-1.5-7B's sizes, --arch, optionally a slice of
// the depth, served as an fp16 checkpoint like the real one), measures the memory bandwidth with a
// v128 read loop on the same threads, then runs the benchmark prompt (one 336 px image + the
// question: 612 tokens with LLaVA-1.5's template) with each merge preset, and reports: load time,
// the ViT forward alone (unmerged, once per round), vision (tower + projector, per preset), prefill, first token, decode tokens/s, peak RSS (the OS high-water
// mark of the child: load included), and decode's fraction of the memory-bandwidth limit (decoder
// + lm_head weight bytes per token / measured bandwidth, over the measured time per token).
// Children run one after the other, so each format's RSS is its own; the bandwidth is measured
// once, in the parent, before them.
import { intOption, runScript } from './args.js';
import { Command, Option } from 'commander';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { selectBackend } from '../src/backend.js';
import { LlavaModel } from '../src/llava.js';
import { PackedRuntime, kernelVariant } from '../layers/packed/index.js';
import { BENCH_PROMPT, REPO_ROOT, TINY_LLAVA_DIR, randomModelParts } from './random-model.js';
import type { WeightFormat } from '../weights/index.js';

interface Options {
  arch: 'llava-1.5-7b';
  llmLayers?: number;
  vitLayers?: number;
  formats: string;
  visionFormat?: string;
  threads: number;
  presets: string;
  newTokens: number;
  rounds: number;
  image: string;
  out: string;
  child?: string;
}

interface RunTimes {
  visionMs: number;
  prefillMs: number;
  firstTokenMs: number;
  decodeTokensPerSecond: number;
  totalMs: number;
}

/** One preset: token counts, the best of its rounds (shortest times, fastest decode) and every round. */
interface PresetResult extends RunTimes {
  preset: string;
  imageTokens: number;
  sequenceAfterMerge: number;
  promptTokens: number;
  rounds: RunTimes[];
}

interface FormatResult {
  format: WeightFormat;
  visionFormat: WeightFormat;
  residency: string;
  threads: number;
  loadMs: number;
  /** OS high-water mark of RSS right after load, and at the end (load included). */
  loadPeakRssBytes: number;
  peakRssBytes: number;
  packedBytes: number;
  /** Decoder + lm_head weight bytes one decode step reads. */
  bytesPerToken: number;
  /** The vision tower's forward alone (unmerged; `vision` adds the projector and text embeddings), best round and each round. */
  towerMs: number;
  towerRoundsMs: number[];
  presets: PresetResult[];
}


const BYTES_PER_WEIGHT: Record<WeightFormat, number> = { f32: 4, f16: 2, q8_0: 34 / 32, q4_0: 18 / 32 };

/** Bytes per second of a v128 read loop over 1 GiB on `threads` threads (best of 5). */
function bandwidth(threads: number): number {
  const runtime = new PackedRuntime(threads);
  const bytes = 1 << 30;
  const slice = runtime.arena.allocate(bytes);
  runtime.arena.bytes(slice).fill(1); // commit the pages
  let best = Infinity;
  for (let r = 0; r < 5; r++) {
    const t = performance.now();
    runtime.pool.run('readLoop', slice.memory, bytes / 64, (_t, n0, n1) => [slice.offset + n0 * 64, (n1 - n0) * 64], 1 << 14);
    best = Math.min(best, performance.now() - t);
  }
  void runtime.dispose();
  return bytes / (best / 1000);
}

async function child(o: Options, format: WeightFormat): Promise<FormatResult> {
  await selectBackend('wasm');
  const parts = await randomModelParts(o.arch, { llmLayers: o.llmLayers, vitLayers: o.vitLayers }, 0, 'F16');
  const t = performance.now();
  const model = await LlavaModel.fromParts(parts, { weightFormat: format, visionWeightFormat: (o.visionFormat as WeightFormat | undefined) ?? (format === 'f32' ? 'f32' : format), threads: o.threads as 1 | 2, quantizedCache: false });
  const loadMs = performance.now() - t;
  const loadPeakRssBytes = process.resourceUsage().maxRSS * 1024;
  parts.source.close();
  const c = model.config.text;
  const decoderWeights = c.numLayers * (c.hiddenSize * (c.numHeads + 2 * c.numKvHeads) * c.headDim + c.numHeads * c.headDim * c.hiddenSize + 3 * c.hiddenSize * c.intermediateSize) + c.hiddenSize * c.vocabSize;
  const names = o.presets.split(',').map((n) => n.trim());
  const presets: PresetResult[] = [];
  const pixels = await model.pixelValues(o.image);
  const towerMs: number[] = [];
  // Rounds interleave the presets (none, illava, none, illava, ...) so a slow stretch of a shared
  // machine falls on both; the table shows each preset's best round.
  for (let round = 0; round < o.rounds; round++) {
    for (const [i, preset] of names.entries()) {
      process.stderr.write(`  ${format}: ${preset}, round ${round + 1} of ${o.rounds}...\n`);
      const out = await model.generate({ prompt: BENCH_PROMPT, images: [o.image], maxNewTokens: o.newTokens, stopIds: [], merge: preset as 'none' });
      const tm = out.timings;
      const run: RunTimes = { visionMs: tm.visionMs, prefillMs: tm.prefillMs, firstTokenMs: tm.firstTokenMs, decodeTokensPerSecond: tm.decodeTokensPerSecond, totalMs: tm.totalMs };
      presets[i] ??= {
        preset,
        imageTokens: out.merges[0]?.vision.at(-1)?.tokens ?? out.merges[0]?.patches ?? 0,
        sequenceAfterMerge: out.sequenceLength.afterMerge,
        promptTokens: out.sequenceLength.input,
        ...run,
        rounds: [],
      };
      const p = presets[i];
      p.rounds.push(run);
      p.visionMs = Math.min(p.visionMs, run.visionMs);
      p.prefillMs = Math.min(p.prefillMs, run.prefillMs);
      p.firstTokenMs = Math.min(p.firstTokenMs, run.firstTokenMs);
      p.totalMs = Math.min(p.totalMs, run.totalMs);
      p.decodeTokensPerSecond = Math.max(p.decodeTokensPerSecond, run.decodeTokensPerSecond);
    }
    // The vision tower alone (ViT forward, unmerged, no projector, no text embeddings), once a round
    const t0 = performance.now();
    model.visionFeatures(pixels).dispose();
    towerMs.push(performance.now() - t0);
  }
  const result: FormatResult = {
    format,
    visionFormat: model.layout.formats.vision,
    residency: model.residency.residency,
    threads: o.threads,
    loadMs,
    loadPeakRssBytes,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    packedBytes: model.layout.packedBytes,
    bytesPerToken: decoderWeights * BYTES_PER_WEIGHT[format],
    towerMs: Math.min(...towerMs),
    towerRoundsMs: towerMs,
    presets,
  };
  model.dispose();
  return result;
}

const gb = (b: number) => `${(b / 1e9).toFixed(2)} GB`;
const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

function table(results: FormatResult[], bandwidthAll: number): string {
  const header = ['format (vision)', 'preset', 'tokens vision/LLM', 'load', 'ViT forward', 'vision', 'prefill', 'prefill speed-up', 'first token', 'decode tok/s', 'of limit', 'peak RSS (after load)'];
  const rows = results.flatMap((r) =>
    r.presets.map((p) => {
      const limit = bandwidthAll / r.bytesPerToken; // tokens/s the bandwidth allows
      const first = r.presets[0];
      // Per round against the first preset's same round (min-max over rounds), then best against best.
      const perRound = p.rounds.map((run, i) => first.rounds[i].prefillMs / run.prefillMs);
      const speedup = p === first ? '' : `${(first.prefillMs / p.prefillMs).toFixed(2)}x (rounds ${Math.min(...perRound).toFixed(2)}-${Math.max(...perRound).toFixed(2)})`;
      return [`${r.format} (${r.visionFormat})`, p.preset, `${p.imageTokens}/${p.sequenceAfterMerge - (p.promptTokens - p.imageTokens)}`, s(r.loadMs), p === first ? `${(r.towerMs / 1000).toFixed(2)} s` : '', s(p.visionMs), s(p.prefillMs), speedup, s(p.firstTokenMs), p.decodeTokensPerSecond.toFixed(3), `${((100 * p.decodeTokensPerSecond) / limit).toFixed(0)} % of ${limit.toFixed(2)}`, `${gb(r.peakRssBytes)} (${gb(r.loadPeakRssBytes)})`];
    }),
  );
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

const program = new Command()
  .name('bench-formats')
  .description('weight formats (f32 reference, f16, q8_0, q4_0): load, vision, prefill, decode, RSS, bandwidth limit')
  .addOption(new Option('--arch <name>', 'random seeded weights at real sizes').choices(['llava-1.5-7b']).default('llava-1.5-7b'))
  .option('--llm-layers <n>', 'build only the first N decoder layers (a slice)', intOption('llm-layers', 1))
  .option('--vit-layers <n>', 'build only the first N vision encoder layers', intOption('vit-layers', 1))
  .option('--formats <list>', 'comma-separated weight formats', 'f32,f16,q8_0,q4_0')
  .addOption(new Option('--vision-format <f>', 'format of the vision tower and projector (default: as the decoder)').choices(['f32', 'f16', 'q8_0', 'q4_0']))
  .addOption(new Option('--threads <n>', 'threads').choices(['1', '2']).default(2).argParser(Number))
  .option('--presets <list>', 'merge presets, comma-separated', 'none,illava')
  .option('--new-tokens <n>', 'tokens generated per run (EOS ignored)', intOption('new-tokens', 2), 16)
  .option('--rounds <n>', 'runs of every preset, interleaved; the table shows the best of each', intOption('rounds', 1), 1)
  .option('--image <file>', 'the image', join(TINY_LLAVA_DIR, 'image.png'))
  .option('--out <dir>', 'folder for the JSON result', join(REPO_ROOT, 'bench', 'results'))
  .addOption(new Option('--child <format>').hideHelp());

async function main(): Promise<void> {
  program.parse();
  const o = program.opts<Options>();
  if (o.child) {
    process.stdout.write(`${JSON.stringify(await child(o, o.child as WeightFormat))}\n`);
    return;
  }
  const formats = o.formats.split(',').map((f) => f.trim()) as WeightFormat[];
  // The bandwidth probe runs here, not in the children, so their peak RSS is the model's alone.
  await selectBackend('wasm');
  const bw = { oneThread: bandwidth(1), allThreads: bandwidth(o.threads) };
  const results: FormatResult[] = [];
  const self = fileURLToPath(import.meta.url);
  for (const format of formats) {
    process.stderr.write(`${format}: loading and running in a child process...\n`);
    const args = [self, ...process.argv.slice(2), '--child', format];
    const out = execFileSync(process.execPath, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24 });
    results.push(JSON.parse(out.trim().split('\n').at(-1) as string) as FormatResult);
  }
  const slice = `${o.llmLayers ?? 32} decoder layers, ${o.vitLayers ?? 24} ViT layers`;
  const head = `${o.arch} random weights (${slice}), ${o.threads} thread(s), ${kernelVariant()} kernels, ${o.newTokens} new tokens, best of ${o.rounds} interleaved round(s), ${cpus().length} cores, ${gb(totalmem())} RAM`;
  process.stdout.write(`${head}\n\n${table(results, bw.allThreads)}\n\nbandwidth (v128 read loop over 1 GiB, best of 5, in this process before the children): ${gb(bw.oneThread)}/s on 1 thread, ${gb(bw.allThreads)}/s on ${o.threads}\n`);
  mkdirSync(o.out, { recursive: true });
  const stamp = new Date().toISOString().slice(0, 16).replace(/[:T]/g, '-');
  const file = join(o.out, `formats-${o.arch}-${o.llmLayers ?? 32}l-${stamp}.json`);
  writeFileSync(file, `${JSON.stringify({ description: head, command: `npm run bench:formats -- ${process.argv.slice(2).join(' ')}`, bandwidth: bw, results }, null, 2)}\n`);
  process.stdout.write(`wrote ${file}\n`);
}

runScript('bench-formats', main);
