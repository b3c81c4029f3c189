#!/usr/bin/env node
// Benchmark of token merging: `npm run bench -- [options]` (see --help and bench/README.md).
//
// Model: a Hugging Face LLaVA-1.5 folder (--model), the tiny fixture (--arch tiny), or random seeded
// weights at real sizes built in memory (--arch llava-1.5-7b; --arch llava-onevision-0.5b runs
// scripts/bench-onevision.ts: anyres tiles, none vs the OneVision presets), optionally cut to a slice of the
// depth (--llm-layers N, --vit-layers N). For each merge config (presets none, illava, tome, fastv,
// plus any --merge JSON) it runs one image + a ~20-token question + 32 greedy new tokens (EOS
// ignored, so every run decodes the same count), a warm-up and then --runs timed runs, and reports
// the medians: image tokens after the vision and the language stage, vision-tower time (tower +
// projector), prefill, time to first token, decode tokens/s, end-to-end, memory, and the ratios
// against `none` measured in the same process. With --arch it first times the full CLIP
// ViT-L/14-336 forward (all 24 layers, 577 tokens) unmerged and merged.
//
// Memory figures: tfjs tensor bytes are sampled at every tensor the engine registers (a wrapper
// around Engine.trackTensor), so the peak is exact; "activations" is that peak minus what was held
// before the run (the weights). The wasm heap and the process RSS only grow (the heap never
// shrinks), so they are the high-water mark so far: for them only the first config is isolated.
import { intOption, runScript } from './args.js';
import { Command, Option } from 'commander';
import cliProgress from 'cli-progress';
import * as tf from '@tensorflow/tfjs-core';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem, release, platform } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { selectBackend, type BackendName } from '../src/backend.js';
import { parseLlavaConfig, readLlavaConfig, visionLayersRun, patchesPerImage, type LlavaConfig } from '../src/config.js';
import { LlavaModel, type GenerateOutput, type LoadOptions, type ModelParts } from '../src/llava.js';
import { parseMergeOption, resolveModelMerge } from '../src/merging.js';
import { ImageProcessor } from '../src/preprocess.js';
import { LlavaTokenizer } from '../src/tokenizer.js';
import { openWeights } from '../weights/index.js';
import { setReleaseUnpackedWeights, wasmHeapBytes } from '../layers/index.js';
import { MergeSession, type MergeConfig, type MergeOption } from '../merge/index.js';
import { benchOnevision } from './bench-onevision.js';
import { ARCHS, BENCH_PROMPT, REPO_ROOT, TINY_LLAVA_DIR, RandomWeightSource, archConfig, randomModelParts, type ArchName } from './random-model.js';


interface Options {
  model?: string;
  threads: number;
  weights: string;
  arch?: string;
  llmLayers?: number;
  vitLayers?: number;
  presets: string;
  merge: string[];
  runs: number;
  warmup: number;
  newTokens: number;
  image: string;
  prompt: string;
  clipForward?: boolean;
  clipRuns: number;
  out: string;
  name?: string;
  seed: number;
  dtype: 'f32' | 'f16';
  backend: string;
  releaseWeights: boolean;
  json: boolean;
  photoSide: number;
}

/** The command line: --help, and the options with their defaults. */
function parseOptions(argv: string[]): Options {
  return new Command()
    .name('bench')
    .description('token-merging benchmark: speed and memory of each merge preset against none')
    .option('--model <dir>', 'a Hugging Face LLaVA-1.5 folder')
    .addOption(new Option('--arch <name>', 'random seeded weights at real sizes, or the tiny fixture').choices([...ARCHS, 'tiny']))
    .option('--llm-layers <n>', 'build only the first N decoder layers (a slice; said in the output)', intOption('llm-layers', 1))
    .option('--vit-layers <n>', 'build only the first N vision encoder layers (the feature layer, e.g. -2, still applies)', intOption('vit-layers', 1))
    .option('--presets <list>', 'merge presets, comma-separated (none is always run first)', 'none,illava,tome,fastv')
    .option('--merge <json|file>', 'an extra merge config (repeatable)', (v: string, prev: string[]) => [...prev, v], [])
    .option('--runs <n>', 'timed runs per config (the median is reported)', intOption('runs', 1), 3)
    .option('--warmup <n>', 'warm-up runs per config', intOption('warmup', 0), 1)
    .option('--new-tokens <n>', 'tokens generated per run (EOS ignored)', intOption('new-tokens', 1), 32)
    .option('--image <file>', 'the image', join(TINY_LLAVA_DIR, 'image.png'))
    .option('--prompt <text>', 'the question (~20 tokens)', BENCH_PROMPT)
    .option('--clip-forward', 'time the full 24-layer CLIP ViT-L/14-336 forward first (default with --arch llava-1.5-7b)')
    .option('--no-clip-forward', 'skip it')
    .option('--clip-runs <n>', 'timed runs of the CLIP forward per config', intOption('clip-runs', 1), 3)
    .option('--out <dir>', 'folder for the JSON results', join(REPO_ROOT, 'bench/results'))
    .option('--name <name>', 'results file name prefix (default: from the model)')
    .option('--seed <n>', 'seed of the random weights', intOption('seed', 0), 0)
    .option('--backend <name>', 'tfjs backend', 'wasm')
    .option('--no-release-weights', "keep each weight's unpacked copy next to XNNPACK's packed one (wasm; twice the memory)")
    .option('--no-json', 'do not write the JSON file')
    .option('--photo-side <px>', 'llava-onevision-0.5b: side of the synthetic square photo (1000: base + 3 x 3 tiles)', intOption('photo-side', 1), 1000)
    .option('--threads <n>', '2: MLPs split with a worker thread (layers/parallel.ts)', intOption('threads', 1), 1)
    .option('--weights <mode>', 'decoder weights: auto, resident or streamed (src/streamed.ts)', 'auto')
    .addOption(new Option('--dtype <dtype>', 'storage dtype of random weights (f16: rounded to half precision, served as fp16 bytes)').choices(['f32', 'f16']).default('f32'))
    .parse(argv)
    .opts<Options>();
}

// ---------------------------------------------------------------------------------------------
// Measurement helpers

/** Peak of tfjs's tensor bytes (exact: updated at every tensor the engine registers) and of the RSS. */
class MemoryProbe {
  peakTensorBytes = 0;
  peakRss = 0;
  private calls = 0;

  constructor() {
    const engine = tf.engine() as unknown as { trackTensor: (...args: unknown[]) => void; state: { numBytes: number } };
    const original = engine.trackTensor.bind(engine);
    engine.trackTensor = (...args: unknown[]) => {
      original(...args);
      if (engine.state.numBytes > this.peakTensorBytes) this.peakTensorBytes = engine.state.numBytes;
      if ((this.calls++ & 63) === 0) this.sampleRss();
    };
  }

  sampleRss(): void {
    const rss = process.memoryUsage.rss();
    if (rss > this.peakRss) this.peakRss = rss;
  }

  reset(): void {
    this.peakTensorBytes = tf.memory().numBytes;
    this.peakRss = process.memoryUsage.rss();
  }
}

/** Times the given layer objects' apply() (wasm kernels are synchronous, so wall time is kernel time). */
function instrument<T extends { apply: (x: tf.Tensor2D, ...rest: never[]) => unknown }>(layers: readonly T[], onlyMultiRow: boolean): { reset(): void; times(): number[] } {
  const times = layers.map(() => 0);
  layers.forEach((layer, i) => {
    const original = layer.apply.bind(layer) as (x: tf.Tensor2D, ...rest: unknown[]) => unknown;
    (layer as unknown as { apply: (x: tf.Tensor2D, ...rest: unknown[]) => unknown }).apply = (x: tf.Tensor2D, ...rest: unknown[]) => {
      if (onlyMultiRow && x.shape[0] <= 1) return original(x, ...rest);
      const t = performance.now();
      const r = original(x, ...rest);
      times[i] += performance.now() - t;
      return r;
    };
  });
  return { reset: () => times.fill(0), times: () => [...times] };
}

function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

const MB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// FLOP model: what the token counts predict

/** CLIP encoder FLOPs for one image, given the tokens (CLS included) entering the attention and the MLP of each layer. */
function clipFlops(C: number, I: number, attnTokens: number[], mlpTokens: number[]): number {
  let f = 0;
  attnTokens.forEach((n, l) => {
    f += 2 * n * C * 4 * C + 4 * n * n * C; // q, k, v, out projections + scores and weighted sum
    f += 2 * mlpTokens[l] * C * I * 2; // fc1 + fc2
  });
  return f;
}

/** Tokens per layer (CLS included) for the vision tower from a merge report's counts (merge after the attention). */
function visionTokensPerLayer(layers: number, patches: number, counts: ReadonlyArray<{ layer: number; tokens: number }>): { attn: number[]; mlp: number[] } {
  const attn: number[] = [];
  const mlp: number[] = [];
  let n = patches + 1;
  for (let l = 0; l < layers; l++) {
    attn.push(n);
    const c = counts.find((x) => x.layer === l);
    if (c) n = c.tokens + 1;
    mlp.push(n);
  }
  return { attn, mlp };
}

/** LLaMA prefill FLOPs: tokens per layer, causal attention (half the square). */
function llamaFlops(D: number, I: number, kvD: number, tokens: number[]): number {
  return tokens.reduce((f, t) => f + 2 * t * D * (2 * D + 2 * kvD) + 2 * t * D * I * 3 + 2 * t * t * D, 0);
}

// ---------------------------------------------------------------------------------------------
// Models

interface ModelDescription {
  kind: 'folder' | 'random' | 'fixture';
  name: string;
  /** What ran, in words (slices said plainly). */
  summary: string;
  visionLayers: { built: number; run: number; total: number };
  llmLayers: { built: number; total: number };
}

async function buildParts(o: Options): Promise<{ parts: ModelParts; description: ModelDescription; close: () => void }> {
  const slice = { llmLayers: o.llmLayers, vitLayers: o.vitLayers };
  if (o.arch && o.arch !== 'tiny') {
    const full = archConfig(o.arch as ArchName);
    const parts = await randomModelParts(o.arch as ArchName, slice, o.seed, o.dtype === 'f16' ? 'F16' : 'F32');
    return { parts, description: describe('random', o.arch, parts.config, full), close: () => parts.source.close() };
  }
  const dir = resolve(o.model ?? TINY_LLAVA_DIR);
  if (!existsSync(dir)) throw new Error(`model folder '${dir}' does not exist`);
  const full = readLlavaConfig(dir);
  const config: LlavaConfig = {
    ...full,
    vision: { ...full.vision, numLayers: o.vitLayers ?? full.vision.numLayers },
    text: { ...full.text, numLayers: o.llmLayers ?? full.text.numLayers },
  };
  if (o.llmLayers !== undefined && o.llmLayers > full.text.numLayers) throw new Error(`--llm-layers ${o.llmLayers}: the model has ${full.text.numLayers}`);
  if (o.vitLayers !== undefined && o.vitLayers > full.vision.numLayers) throw new Error(`--vit-layers ${o.vitLayers}: the model has ${full.vision.numLayers}`);
  const source = openWeights(dir);
  const parts: ModelParts = { name: dir, config, source, tokenizer: await LlavaTokenizer.fromDir(dir), imageProcessor: await ImageProcessor.fromFile(dir) };
  const kind = dir === resolve(TINY_LLAVA_DIR) ? 'fixture' : 'folder';
  return { parts, description: describe(kind, kind === 'fixture' ? 'tiny-llava fixture' : basename(dir), config, full), close: () => source.close() };
}

function describe(kind: ModelDescription['kind'], name: string, config: LlavaConfig, full: LlavaConfig): ModelDescription {
  const v = config.vision;
  const t = config.text;
  const vitSlice = v.numLayers < full.vision.numLayers;
  const llmSlice = t.numLayers < full.text.numLayers;
  const run = visionLayersRun(config);
  const parts = [
    `${name}${kind === 'random' ? ' with random seeded weights' : ''}`,
    `vision: CLIP ${v.hiddenSize}-wide, ${v.imageSize}px/${v.patchSize} (${patchesPerImage(config) + 1} tokens), ${run} of ${full.vision.numLayers} layers run${vitSlice ? ` (SLICE: ${v.numLayers} built, feature layer ${config.visionFeatureLayer})` : ` (feature layer ${config.visionFeatureLayer})`}`,
    `decoder: LLaMA ${t.hiddenSize}-wide, MLP ${t.intermediateSize}, ${t.numHeads} heads, vocab ${t.vocabSize}, ${t.numLayers} of ${full.text.numLayers} layers${llmSlice ? ' (SLICE: only these run; then the final norm and lm_head)' : ''}`,
  ];
  return { kind, name, summary: parts.join('; '), visionLayers: { built: v.numLayers, run, total: full.vision.numLayers }, llmLayers: { built: t.numLayers, total: full.text.numLayers } };
}

// ---------------------------------------------------------------------------------------------
// Progress

class Progress {
  private readonly bar: cliProgress.SingleBar;
  private started = false;

  constructor(readonly total: number) {
    this.bar = new cliProgress.SingleBar(
      { format: '{phase} [{bar}] {value}/{total} runs | {status}', stream: process.stderr, hideCursor: false, clearOnComplete: true, etaBuffer: 10 },
      cliProgress.Presets.shades_classic,
    );
  }

  status(phase: string, status: string, increment = 0): void {
    if (!this.started) {
      this.bar.start(this.total, 0, { phase, status });
      this.started = true;
    }
    if (increment) this.bar.increment(increment, { phase, status });
    else this.bar.update({ phase, status });
  }

  stop(): void {
    if (this.started) this.bar.stop();
    this.started = false;
  }
}

/** --threads / --weights, passed to every model load. */
type LoadExtras = Pick<LoadOptions, 'threads' | 'weights'>;

function loadExtras(o: Options): LoadExtras {
  return { threads: o.threads as 1 | 2, weights: o.weights as LoadOptions['weights'] };
}

async function loadWithBar(parts: ModelParts, backend: BackendName, extras: LoadExtras): Promise<LlavaModel> {
  const bar = new cliProgress.SingleBar({ format: 'loading {name} [{bar}] {value}/{total} tensors', stream: process.stderr, hideCursor: false, clearOnComplete: true }, cliProgress.Presets.shades_classic);
  let started = false;
  try {
    return await LlavaModel.fromParts(parts, {
      backend,
      ...extras,
      onProgress: (p) => {
        if (!started) {
          bar.start(p.total, 0, { name: parts.name.length > 40 ? `…${parts.name.slice(-39)}` : parts.name });
          started = true;
        }
        bar.update(p.loaded);
      },
    });
  } finally {
    if (started) bar.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// Phase 1: the full CLIP ViT-L/14-336 forward

interface ClipResult {
  what: string;
  layers: number;
  tokens: number;
  configs: Array<{ name: string; config: MergeConfig; tokensAfter: number; runsMs: number[]; medianMs: number; predictedSpeedup: number; measuredSpeedup: number }>;
}

async function clipForward(o: Options, backend: BackendName, progress: Progress): Promise<ClipResult> {
  // All 24 encoder layers (feature layer -1), and a minimal decoder that never runs (only the
  // vision tower + a 1024 -> 64 projector are timed).
  const json = {
    vision_feature_layer: -1,
    vision_config: { hidden_size: 1024, intermediate_size: 4096, num_hidden_layers: 24, num_attention_heads: 16, image_size: 336, patch_size: 14, hidden_act: 'quick_gelu' },
    text_config: { hidden_size: 64, intermediate_size: 128, num_hidden_layers: 1, num_attention_heads: 4, vocab_size: 32064 },
  };
  const config = parseLlavaConfig(json);
  const base = await randomModelParts('llava-1.5-7b', {}, o.seed);
  const parts: ModelParts = { ...base, name: 'CLIP ViT-L/14-336 (random weights)', config, source: new RandomWeightSource(config, o.seed, 'CLIP ViT-L/14-336') };
  const model = await loadWithBar(parts, backend, loadExtras(o));
  const px = await model.pixelValues(o.image);
  const timer = instrument(model.vision.layers, false);
  const result: ClipResult = { what: 'CLIP ViT-L/14-336 vision tower forward: patch embedding + 24 encoder layers at width 1024 (577 tokens), one image, batch 1; timed with its (1024 -> 64) projector', layers: 24, tokens: 577, configs: [] };
  const names = ['none', ...o.presets.split(',').map((s) => s.trim()).filter((s) => s !== 'none' && (s === 'illava' || s === 'tome'))];
  let noneMs = NaN;
  let noneFlops = NaN;
  for (const name of names) {
    const merge = resolveModelMerge(name as MergeOption, config);
    const runsMs: number[] = [];
    let tokensAfter = 576;
    let counts: ReadonlyArray<{ layer: number; tokens: number }> = [];
    for (let r = 0; r < o.warmup + o.clipRuns; r++) {
      progress.status('CLIP forward', `${name}: ${r < o.warmup ? 'warm-up' : `run ${r - o.warmup + 1}/${o.clipRuns}`}`);
      const session = new MergeSession(merge);
      timer.reset();
      const t = performance.now();
      const features = model.imageFeatures(px, session);
      features.dataSync();
      const ms = performance.now() - t;
      features.dispose();
      const report = session.reports([0])[0];
      counts = report.vision;
      tokensAfter = report.vision.length ? report.vision[report.vision.length - 1].tokens : 576;
      if (r >= o.warmup) runsMs.push(ms);
      progress.status('CLIP forward', `${name}: ${ms.toFixed(0)} ms`, 1);
    }
    const t = visionTokensPerLayer(24, 576, counts);
    const flops = clipFlops(1024, 4096, t.attn, t.mlp);
    const med = median(runsMs);
    if (name === 'none') {
      noneMs = med;
      noneFlops = flops;
    }
    result.configs.push({ name, config: merge, tokensAfter, runsMs, medianMs: med, predictedSpeedup: noneFlops / flops, measuredSpeedup: noneMs / med });
  }
  model.dispose();
  return result;
}

// ---------------------------------------------------------------------------------------------
// Phase 2: LLaVA generate per merge config

interface RunMetrics {
  visionMs: number;
  prefillMs: number;
  firstTokenMs: number;
  decodeTokensPerSecond: number;
  totalMs: number;
  newTokens: number;
  imageTokensAfterVision: number;
  imageTokensAfterLlm: number;
  sequenceIn: number;
  sequenceAfter: number;
  kvCacheBytes: number;
  peakTensorBytes: number;
  peakActivationBytes: number;
  heapBytes: number;
  peakRssBytes: number;
  prefillLayerMs: number[];
  visionLayerMs: number[];
}

interface ConfigResult {
  name: string;
  config: MergeConfig;
  runs: RunMetrics[];
  median: RunMetrics;
  predictedPrefillSpeedup?: number;
  vsNone?: Record<string, number>;
}

function medianMetrics(runs: RunMetrics[]): RunMetrics {
  const keys = Object.keys(runs[0]) as Array<keyof RunMetrics>;
  const out = {} as Record<keyof RunMetrics, number | number[]>;
  for (const k of keys) {
    const first = runs[0][k];
    out[k] = Array.isArray(first) ? first.map((_, i) => median(runs.map((r) => (r[k] as number[])[i]))) : median(runs.map((r) => r[k] as number));
  }
  return out as unknown as RunMetrics;
}

function describeConfig(c: MergeConfig): string {
  const parts: string[] = [];
  if (c.vision && c.vision.rule !== 'none') parts.push(`vision ${c.vision.rule} at layers [${c.vision.layers.join(',')}] removing ${c.vision.remove}/layer`);
  if (c.llm && c.llm.rule !== 'none') parts.push(`LLM ${c.llm.rule} before layer${c.llm.layers.length > 1 ? 's' : ''} [${c.llm.layers.join(',')}] keeping ${c.llm.keep}`);
  return parts.length ? parts.join('; ') : 'no merging';
}

/** The merge configs of the run: none first, the --presets, then each --merge. */
function mergeOptions(o: Options): { presetNames: string[]; configs: Array<{ name: string; option: MergeOption }> } {
  const presetNames = ['none', ...o.presets.split(',').map((s) => s.trim()).filter((s) => s && s !== 'none')];
  const configs = presetNames.map((n) => ({ name: n, option: parseMergeOption(n) }));
  o.merge.forEach((m, i) => configs.push({ name: `custom${o.merge.length > 1 ? i + 1 : ''}`, option: parseMergeOption(m) }));
  return { presetNames, configs };
}

/** The meters the runs share: tensor memory, per-layer timers, the progress bar. */
interface Probes {
  memory: MemoryProbe;
  prefill: ReturnType<typeof instrument>;
  vision: ReturnType<typeof instrument>;
  progress: Progress;
}

/** Warm-up and timed generate runs of one merge config; the median and the prefill FLOPs its token counts predict. */
async function runConfig(model: LlavaModel, name: string, option: MergeOption, o: Options, probes: Probes): Promise<{ result: ConfigResult; prefillFlops: number }> {
  const merge = resolveModelMerge(option, model.config);
  process.stdout.write(`config ${name}: ${describeConfig(merge)}\n`);
  const runs: RunMetrics[] = [];
  for (let r = 0; r < o.warmup + o.runs; r++) {
    const label = r < o.warmup ? 'warm-up' : `run ${r - o.warmup + 1}/${o.runs}`;
    probes.progress.status('generate', `${name} ${label}: vision + prefill`);
    probes.memory.reset();
    const before = tf.memory().numBytes;
    probes.prefill.reset();
    probes.vision.reset();
    let count = 0;
    const out: GenerateOutput = await model.generate({
      prompt: o.prompt,
      images: [o.image],
      maxNewTokens: o.newTokens,
      stopIds: [],
      merge,
      onToken: () => {
        if (++count % 4 === 0) probes.progress.status('generate', `${name} ${label}: decode ${count}/${o.newTokens}`);
      },
    });
    probes.memory.sampleRss();
    const metrics = runMetrics(out, probes, before);
    if (r >= o.warmup) runs.push(metrics);
    probes.progress.status('generate', `${name} ${label}: ${(metrics.totalMs / 1000).toFixed(1)} s`, 1);
  }
  const med = medianMetrics(runs);
  // Prefill tokens per decoder layer: full before the first LLM merge layer, merged after it.
  const t = model.config.text;
  const K = merge.llm && merge.llm.rule !== 'none' ? Math.min(...merge.llm.layers) : t.numLayers;
  const tokensPerLayer = Array.from({ length: t.numLayers }, (_, l) => (l < K ? med.sequenceIn : med.sequenceAfter));
  const prefillFlops = llamaFlops(t.hiddenSize, t.intermediateSize, t.numKvHeads * t.headDim, tokensPerLayer);
  return { result: { name, config: merge, runs, median: med }, prefillFlops };
}

function runMetrics(out: GenerateOutput, probes: Probes, bytesBefore: number): RunMetrics {
  const report = out.merges[0];
  return {
    visionMs: out.timings.visionMs,
    prefillMs: out.timings.prefillMs,
    firstTokenMs: out.timings.firstTokenMs,
    decodeTokensPerSecond: out.timings.decodeTokensPerSecond,
    totalMs: out.timings.totalMs,
    newTokens: out.tokenIds.length,
    imageTokensAfterVision: report.vision.length ? report.vision[report.vision.length - 1].tokens : report.patches,
    imageTokensAfterLlm: report.tokens,
    sequenceIn: out.sequenceLength.input,
    sequenceAfter: out.sequenceLength.afterMerge,
    kvCacheBytes: out.kvCacheBytes,
    peakTensorBytes: probes.memory.peakTensorBytes,
    peakActivationBytes: probes.memory.peakTensorBytes - bytesBefore,
    heapBytes: wasmHeapBytes(),
    peakRssBytes: probes.memory.peakRss,
    prefillLayerMs: probes.prefill.times(),
    visionLayerMs: probes.vision.times(),
  };
}

/** Ratios against none (same process, same model), in place. */
function compareWithNone(results: ConfigResult[], prefillFlops: ReadonlyMap<string, number>): void {
  const none = results.find((r) => r.name === 'none');
  if (!none) return;
  for (const r of results) {
    r.predictedPrefillSpeedup = (prefillFlops.get('none') as number) / (prefillFlops.get(r.name) as number);
    const a = none.median;
    const b = r.median;
    r.vsNone = {
      visionSpeedup: a.visionMs / b.visionMs,
      prefillSpeedup: a.prefillMs / b.prefillMs,
      firstTokenSpeedup: a.firstTokenMs / b.firstTokenMs,
      decodeSpeedup: b.decodeTokensPerSecond / a.decodeTokensPerSecond,
      endToEndSpeedup: a.totalMs / b.totalMs,
      activationMemoryRatio: b.peakActivationBytes / a.peakActivationBytes,
      kvCacheRatio: b.kvCacheBytes / a.kvCacheBytes,
      peakTensorRatio: b.peakTensorBytes / a.peakTensorBytes,
    };
  }
}

function machineInfo(): { cpu: string; cores: number; memoryGiB: number; os: string; node: string } {
  return { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memoryGiB: +(totalmem() / 2 ** 30).toFixed(1), os: `${platform()} ${release()}`, node: process.version };
}

interface RunRecord {
  started: Date;
  machine: ReturnType<typeof machineInfo>;
  backend: BackendName;
  description: ModelDescription;
  loadMs: number;
  loadPeakRss: number;
  parameters: number;
  clipResult?: ClipResult;
  results: ConfigResult[];
}

function writeJson(o: Options, run: RunRecord): void {
  mkdirSync(o.out, { recursive: true });
  const slug = o.name ?? slugFor(o, run.description);
  const stamp = run.started.toISOString().replace(/[:T]/g, '-').slice(0, 16);
  const file = join(o.out, `${slug}-${stamp}.json`);
  const payload = {
    date: run.started.toISOString(),
    machine: run.machine,
    backend: run.backend,
    releaseUnpackedWeights: run.backend === 'wasm' && o.releaseWeights,
    command: `npm run bench -- ${process.argv.slice(2).join(' ')}`,
    model: { ...run.description, loadMs: run.loadMs, parameters: run.parameters },
    osPeakRssBytes: { afterLoad: run.loadPeakRss, end: osPeakRss() },
    workload: { image: o.image, prompt: o.prompt, promptTokens: run.results[0]?.median.sequenceIn, newTokens: o.newTokens, greedy: true, eosIgnored: true, warmup: o.warmup, runs: o.runs },
    memoryNotes: 'peakTensorBytes: tf.memory().numBytes peak, sampled at every tensor registration; peakActivationBytes = that minus the bytes held before the run (weights); heapBytes: wasm heap size (never shrinks); peakRssBytes: process RSS sampled every 64 tensor registrations (high-water mark of the process so far); osPeakRssBytes: the kernel\'s maxRSS (getrusage), after load and at the end',
    clipForward: run.clipResult,
    results: run.results,
  };
  writeFileSync(file, JSON.stringify(payload, (_, v) => (typeof v === 'number' && !Number.isInteger(v) ? +v.toPrecision(5) : v), 1));
  process.stdout.write(`results: ${file}\n`);
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv);
  if (o.model && o.arch) throw new Error('give --model or --arch, not both');
  if (o.arch === 'llava-onevision-0.5b') {
    // Anyres tiles through the modules (scripts/bench-onevision.ts): --runs interleaved, one warm-up pass.
    await selectBackend(o.backend as BackendName);
    return benchOnevision({ presets: o.presets, merge: o.merge, runs: o.runs, newTokens: o.newTokens, seed: o.seed, threads: o.threads, out: o.out, name: o.name, json: o.json, llmLayers: o.llmLayers, vitLayers: o.vitLayers, photoSide: o.photoSide });
  }
  if (o.arch === 'tiny') o.model = TINY_LLAVA_DIR;
  const clip = o.clipForward ?? (o.arch !== undefined && o.arch !== 'tiny');
  const backend = (await selectBackend(o.backend as BackendName)).name;
  if (backend === 'wasm' && o.releaseWeights) setReleaseUnpackedWeights(true);
  const { presetNames, configs } = mergeOptions(o);

  const machine = machineInfo();
  const started = new Date();
  process.stdout.write(`illava bench, ${started.toISOString()}\nmachine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB; ${machine.os}; node ${machine.node}\n`);
  process.stdout.write(`backend: ${backend}${backend === 'wasm' ? ` (single-threaded SIMD, XNNPACK; unpacked weight copies ${o.releaseWeights ? 'released after packing' : 'kept'})` : ''}\n`);

  const memory = new MemoryProbe();
  const clipSteps = clip ? (1 + presetNames.filter((n) => n === 'illava' || n === 'tome').length) * (o.warmup + o.clipRuns) : 0;
  const progress = new Progress(clipSteps + configs.length * (o.warmup + o.runs));

  let clipResult: ClipResult | undefined;
  if (clip) {
    clipResult = await clipForward(o, backend, progress);
    progress.stop();
    printClip(clipResult);
  }

  const { parts, description, close } = await buildParts(o);
  process.stdout.write(`model: ${description.summary}\n`);
  const t0 = performance.now();
  const model = await loadWithBar(parts, backend, loadExtras(o));
  close();
  const loadMs = performance.now() - t0;
  const loadPeakRss = osPeakRss();
  process.stdout.write(`loaded in ${(loadMs / 1000).toFixed(1)} s: ${model.parameterCount().toLocaleString('en-US')} parameters held (float32); peak RSS so far ${gb(loadPeakRss)} (OS high-water mark)\n`);
  const probes: Probes = { memory, prefill: instrument(model.decoder.layers, true), vision: instrument(model.vision.layers, false), progress };

  const results: ConfigResult[] = [];
  const prefillFlops = new Map<string, number>();
  for (const { name, option } of configs) {
    const run = await runConfig(model, name, option, o, probes);
    results.push(run.result);
    prefillFlops.set(name, run.prefillFlops);
  }
  progress.stop();
  const parameters = model.parameterCount();
  model.dispose();

  compareWithNone(results, prefillFlops);
  printResults(description, results, o);
  if (o.json) writeJson(o, { started, machine, backend, description, loadMs, loadPeakRss, parameters, clipResult, results });
  process.stdout.write(`peak RSS of the whole run: ${gb(osPeakRss())} (OS high-water mark, load included)\n`);
}

/** The kernel's high-water mark of this process's resident set (bytes), load included. */
function osPeakRss(): number {
  return process.resourceUsage().maxRSS * 1024;
}

const gb = (bytes: number) => `${(bytes / 1e9).toFixed(2)} GB`;

function slugFor(o: Options, d: ModelDescription): string {
  const base = d.kind === 'random' ? (o.arch as string) : d.kind === 'fixture' ? 'tiny-llava' : basename(resolve(o.model as string));
  const slice = [d.llmLayers.built < d.llmLayers.total ? `llm${d.llmLayers.built}` : '', d.visionLayers.built < d.visionLayers.total ? `vit${d.visionLayers.built}` : ''].filter(Boolean).join('-');
  return slice ? `${base}-${slice}` : base;
}

// ---------------------------------------------------------------------------------------------
// Printing

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => '| ' + cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ') + ' |';
  return [line(header), '|' + widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : '-'.repeat(w + 1) + ':')).join('|') + '|', ...rows.map(line)].join('\n') + '\n';
}

const ms = (v: number) => (v >= 10000 ? `${(v / 1000).toFixed(1)} s` : `${v.toFixed(0)} ms`);
const x = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? '-' : `${v.toFixed(2)}x`);
const mb = (v: number) => (v / MB >= 10 ? (v / MB).toFixed(0) : (v / MB).toFixed(2));

function printClip(c: ClipResult): void {
  process.stdout.write(`\n${c.what}\n`);
  process.stdout.write(
    table(
      ['config', 'tokens after', 'forward (median)', 'runs', 'speed-up measured', 'predicted by FLOPs'],
      c.configs.map((r) => [r.name, `${r.tokensAfter}`, ms(r.medianMs), r.runsMs.map((v) => (v / 1000).toFixed(2)).join(' / ') + ' s', x(r.measuredSpeedup), x(r.predictedSpeedup)]),
    ),
  );
  for (const r of c.configs) if (r.name !== 'none') process.stdout.write(`  ${r.name}: ${describeConfig(r.config)}\n`);
  process.stdout.write('\n');
}

function printResults(d: ModelDescription, results: ConfigResult[], o: Options): void {
  const r0 = results[0]?.median;
  process.stdout.write(`\n${d.summary}\nworkload: 1 image + ${r0 ? r0.sequenceIn - r0.imageTokensAfterVision : '?'} text tokens + ${o.newTokens} new tokens (greedy, EOS ignored); median of ${o.runs} runs after ${o.warmup} warm-up\n`);
  process.stdout.write(
    table(
      ['config', 'img tokens vision/LLM', 'seq in/after', 'vision', 'prefill', 'first token', 'decode tok/s', 'end-to-end', 'act. peak MB', 'KV MB', 'tensors MB', 'heap MB', 'RSS MB'],
      results.map((r) => {
        const m = r.median;
        return [r.name, `${m.imageTokensAfterVision}/${m.imageTokensAfterLlm}`, `${m.sequenceIn}/${m.sequenceAfter}`, ms(m.visionMs), ms(m.prefillMs), ms(m.firstTokenMs), m.decodeTokensPerSecond.toFixed(2), ms(m.totalMs), mb(m.peakActivationBytes), mb(m.kvCacheBytes), mb(m.peakTensorBytes), mb(m.heapBytes), mb(m.peakRssBytes)];
      }),
    ),
  );
  process.stdout.write('\nagainst none (same process):\n');
  process.stdout.write(
    table(
      ['config', 'vision', 'prefill', 'prefill predicted', 'first token', 'decode', 'end-to-end', 'act. memory', 'KV cache', 'prefill ms per layer'],
      results.map((r) => {
        const v = r.vsNone ?? {};
        return [r.name, x(v.visionSpeedup), x(v.prefillSpeedup), x(r.predictedPrefillSpeedup), x(v.firstTokenSpeedup), x(v.decodeSpeedup), x(v.endToEndSpeedup), x(v.activationMemoryRatio), x(v.kvCacheRatio), r.median.prefillLayerMs.map((t) => t.toFixed(0)).join(' / ')];
      }),
    ),
  );
  for (const r of results) process.stdout.write(`  ${r.name}: ${describeConfig(r.config)}\n`);
  process.stdout.write('(speed-ups are none / config for times and config / none for tokens/s; memory ratios config / none)\n');
}

runScript('bench', main);
