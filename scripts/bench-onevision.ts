// `npm run bench -- --arch llava-onevision-0.5b`: LLaVA-OneVision-0.5B at its real sizes with random
// seeded weights (scripts/random-model.ts: SigLIP-so400m-patch14-384 with 26 layers running, Qwen2-0.5B),
// weights packed as q8_0 in our kernels' memories (the float32 model and its prefill attention over
// ~7.4k tokens would not fit tfjs-wasm's 4 GiB heap), on a synthetic 1000 x 1000 photo that tiles as
// base + 3 x 3 = 10 tiles of 729 patches. Per config (none and the OneVision presets, runs
// interleaved none, illava, none, illava, ...): vision (10 tiles through the tower + projector +
// packing), prefill, decode tokens/s, image tokens (per tile, packed, after the LLM stage), RSS, and
// the speed-ups the FLOP counts predict. It drives the modules (src/anyres-features.ts, the path
// generate() runs for OneVision, plus the decoder), so no tokenizer or processor files are needed;
// the prompt's text ids stand in for the chat template's (random weights: the text does not matter,
// only the lengths): 14 before the image (the authors' qwen_1_5 prefix length), 24 after it.
import * as tf from '@tensorflow/tfjs-core';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, platform, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { KVCache } from '../layers/kv-cache.js';
import { PackedRuntime } from '../layers/packed/index.js';
import { MergeSession, type MergeConfig } from '../merge/index.js';
import { anyresPixelValues, anyresTileProcessor, packedLayout } from '../src/anyres.js';
import { visualFeatures, type VisualModules } from '../src/anyres-features.js';
import { modelShape, visionLayersRun, type LlavaConfig } from '../src/config.js';
import { loadModules, type LoadedModules } from '../src/load.js';
import { resolveModelMerge, parseMergeOption } from '../src/merging.js';
import type { RgbImage } from '../src/image.js';
import { archConfig, RandomWeightSource } from './random-model.js';

export interface OnevisionBenchOptions {
  presets: string;
  merge: string[];
  runs: number;
  newTokens: number;
  seed: number;
  threads: number;
  out: string;
  name?: string;
  json: boolean;
  /** Slices of the depth (for smoke runs; said in the output). */
  llmLayers?: number;
  vitLayers?: number;
  photoSide: number;
}

const PREFIX_TOKENS = 14;
const SUFFIX_TOKENS = 24;
/** A synthetic "photo" (gradients, discs and stripes), deterministic: 1000 x 1000 tiles as 3 x 3 + base. */
export function syntheticPhoto(side = 1000): RgbImage {
  const data = new Uint8Array(side * side * 3);
  const discs = [[0.3, 0.35, 0.18, [220, 60, 40]], [0.7, 0.3, 0.12, [40, 160, 220]], [0.55, 0.72, 0.2, [250, 210, 60]]] as const;
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      const u = x / side;
      const v = y / side;
      let rgb = [Math.round(90 + 100 * v), Math.round(140 + 60 * u), Math.round(200 - 80 * v)];
      if (v > 0.85) rgb = ((x >> 4) & 1) === 0 ? [70, 120, 60] : [90, 150, 70]; // striped ground
      for (const [cx, cy, r, c] of discs) if ((u - cx) ** 2 + (v - cy) ** 2 < r * r) rgb = [...c];
      data.set(rgb, (y * side + x) * 3);
    }
  }
  return { width: side, height: side, data };
}

/** LlavaOnevisionImageProcessor's settings for SigLIP 384 (preprocessor_config.json of the 0.5B). */
const PREPROCESSOR = {
  image_processor_type: 'LlavaOnevisionImageProcessor',
  do_resize: true,
  size: { height: 384, width: 384 },
  resample: 3,
  do_rescale: true,
  rescale_factor: 1 / 255,
  do_normalize: true,
  image_mean: [0.5, 0.5, 0.5],
  image_std: [0.5, 0.5, 0.5],
  do_convert_rgb: true,
  do_pad: true,
};

interface Run {
  visionMs: number;
  prefillMs: number;
  decodeTokensPerSecond: number;
  tileTokens: number;
  packedTokens: number;
  imageTokensAfterLlm: number;
  sequenceIn: number;
  sequenceAfter: number;
  rssBytes: number;
}

/** SigLIP FLOPs of one tile with `attn[l]` tokens in layer l's attention and `mlp[l]` in its MLP (no CLS). */
function siglipFlops(C: number, I: number, attn: number[], mlp: number[]): number {
  return attn.reduce((f, n, l) => f + 2 * n * C * 4 * C + 4 * n * n * C + 2 * mlp[l] * C * I * 2, 0);
}

/** Qwen2 prefill FLOPs: tokens per layer, causal attention (q, o: D x D; k, v: D x kvD; gated MLP). */
function qwenFlops(D: number, I: number, kvD: number, tokens: number[]): number {
  return tokens.reduce((f, t) => f + 2 * t * D * (2 * D + 2 * kvD) + 2 * t * D * I * 3 + 2 * t * t * D, 0);
}

function predictedFlops(config: LlavaConfig, merge: MergeConfig, tiles: number, run: Run): { vision: number; prefill: number } {
  const v = config.vision;
  const layers = visionLayersRun(config);
  const attn: number[] = [];
  const mlp: number[] = [];
  let n = Math.floor(v.imageSize / v.patchSize) ** 2;
  for (let l = 0; l < layers; l++) {
    attn.push(n);
    if (merge.vision && merge.vision.rule !== 'none' && merge.vision.layers.includes(l)) n -= merge.vision.remove;
    mlp.push(n);
  }
  const t = config.text;
  const K = merge.llm && merge.llm.rule !== 'none' ? Math.min(...merge.llm.layers) : t.numLayers;
  const perLayer = Array.from({ length: t.numLayers }, (_, l) => (l < K ? run.sequenceIn : run.sequenceAfter));
  return { vision: tiles * siglipFlops(v.hiddenSize, v.intermediateSize, attn, mlp), prefill: qwenFlops(t.hiddenSize, t.intermediateSize, t.numKvHeads * t.headDim, perLayer) };
}

function argmax(xs: Float32Array): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i] > xs[best]) best = i;
  return best;
}

/** One image through vision, prefill and `newTokens` greedy steps. */
function runOnce(modules: LoadedModules, config: LlavaConfig, merge: MergeConfig, pixels: { pixelValues: Float32Array; tiles: number }, size: { height: number; width: number }, newTokens: number): Run {
  const session = new MergeSession(merge);
  const t0 = performance.now();
  const visual: VisualModules = modules;
  const { features, tileTokens } = visualFeatures(visual, config, 'image', pixels, size, session);
  features.dataSync();
  const visionMs = performance.now() - t0;
  const packedTokens = features.shape[0];
  const ids = (n: number, from: number) => Array.from({ length: n }, (_, i) => 1000 + ((from + i) * 7919) % 50000);
  const x = tf.tidy(() => tf.concat([modules.decoder.embed(ids(PREFIX_TOKENS, 0)), features, modules.decoder.embed(ids(SUFFIX_TOKENS, PREFIX_TOKENS))], 0) as tf.Tensor2D);
  features.dispose();
  const T = x.shape[0];
  const cache = new KVCache(modules.decoder.layers.length, T + newTokens + 1);
  try {
    const t1 = performance.now();
    const hook = session.sequenceHook([[PREFIX_TOKENS, PREFIX_TOKENS + packedTokens]], T - 1);
    let logits = modules.decoder.forward(x, [...Array(T).keys()], cache, hook).logits;
    const prefillMs = performance.now() - t1;
    x.dispose();
    const sequenceAfter = cache.layers[cache.layers.length - 1].length;
    const t2 = performance.now();
    for (let step = 0; step < newTokens - 1; step++) {
      logits = modules.decoder.forward(modules.decoder.embed([argmax(logits)]), [T + step], cache).logits;
    }
    const decodeMs = performance.now() - t2;
    const report = session.reports([packedTokens])[0];
    return {
      visionMs,
      prefillMs,
      decodeTokensPerSecond: newTokens > 1 ? ((newTokens - 1) * 1000) / decodeMs : 0,
      tileTokens: tileTokens[0],
      packedTokens,
      imageTokensAfterLlm: report.tokens,
      sequenceIn: T,
      sequenceAfter,
      rssBytes: process.resourceUsage().maxRSS * 1024,
    };
  } finally {
    cache.dispose();
    if (!x.isDisposed) x.dispose();
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
const fmt = (ms: number) => (ms >= 10000 ? `${(ms / 1000).toFixed(1)} s` : `${ms.toFixed(0)} ms`);

export async function benchOnevision(o: OnevisionBenchOptions): Promise<void> {
  const started = new Date();
  const config = archConfig('llava-onevision-0.5b', { llmLayers: o.llmLayers, vitLayers: o.vitLayers });
  const slice = o.llmLayers !== undefined || o.vitLayers !== undefined ? ` SLICE: ${config.vision.numLayers} vision layers, ${config.text.numLayers} decoder layers built;` : '';
  const names = ['none', ...o.presets.split(',').map((s) => s.trim()).filter((s) => s && s !== 'none')];
  const configs = names.map((n) => ({ name: n, merge: resolveModelMerge(parseMergeOption(n), config) }));
  o.merge.forEach((m, i) => configs.push({ name: `custom${o.merge.length > 1 ? i + 1 : ''}`, merge: resolveModelMerge(parseMergeOption(m), config) }));
  const machine = `${cpus()[0]?.model ?? 'unknown'}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(1)} GiB; ${platform()} ${release()}; node ${process.version}`;
  process.stdout.write(`illava bench (OneVision), ${started.toISOString()}\nmachine: ${machine}\nbackend: ${tf.getBackend()}; weights q8_0 (vision tower, projector, decoder, lm_head), ${o.threads} kernel thread(s)\n`);
  process.stdout.write(`model:${slice} llava-onevision-qwen2-0.5b-ov-hf shape, random seeded weights (seed ${o.seed}): SigLIP 1152 wide, 16 heads, MLP 4304, ${visionLayersRun(config)} of ${config.vision.numLayers} layers run, 384 px / 14 = 729 patches per tile; Qwen2 896 wide, 14 heads (2 kv), MLP 4864, ${config.text.numLayers} layers, vocab ${config.text.vocabSize}, tied lm_head\n`);
  const runtime = new PackedRuntime(o.threads);
  const t0 = performance.now();
  const source = new RandomWeightSource(config, o.seed, 'llava-onevision-0.5b random weights');
  const modules = loadModules(source, config, undefined, { packed: { runtime, decoder: 'q8_0', vision: 'q8_0' } });
  source.close();
  const loadMs = performance.now() - t0;
  process.stdout.write(`loaded (and quantized) in ${(loadMs / 1000).toFixed(1)} s; RSS ${(process.memoryUsage.rss() / 1e9).toFixed(2)} GB\n`);

  const photo = syntheticPhoto(o.photoSide);
  const processor = anyresTileProcessor(PREPROCESSOR);
  const px = anyresPixelValues(config, processor, photo);
  const size = { height: photo.height, width: photo.width };
  const layout = packedLayout(config, size.height, size.width);
  process.stdout.write(`image: synthetic ${photo.width} x ${photo.height} photo -> ${px.tiles} tiles (base + ${layout.rows} x ${layout.cols}), ${layout.tokens} image tokens unmerged\n`);
  for (const c of configs) process.stdout.write(`config ${c.name}: ${JSON.stringify(c.merge)}\n`);

  // Warm-up: one tile (with each config's hooks) and a short prefill, so every weight is packed and every kernel compiled before timing.
  for (const c of configs) {
    const tiled = new MergeSession(c.merge).beginImage('image');
    const tile = tf.tensor3d(px.pixelValues.subarray(0, 3 * 384 * 384), [3, 384, 384]);
    const v = modules.vision.forward(tile, tiled.tile(modules.vision.tokens, modules.vision.clsToken, modules.vision.numHeads));
    const f = modules.projector.apply(v);
    const cache = new KVCache(modules.decoder.layers.length);
    modules.decoder.forward(tf.concat([modules.decoder.embed([1, 2, 3]), f]) as tf.Tensor2D, [...Array(3 + f.shape[0]).keys()], cache);
    [tile, v, f].forEach((t) => t.dispose());
    cache.dispose();
  }

  const runs = new Map<string, Run[]>(configs.map((c) => [c.name, []]));
  for (let r = 0; r < o.runs; r++) {
    for (const c of configs) {
      process.stderr.write(`run ${r + 1}/${o.runs} ${c.name} ...\n`);
      const run = runOnce(modules, config, c.merge, px, size, o.newTokens);
      runs.get(c.name)?.push(run);
      process.stderr.write(`  vision ${fmt(run.visionMs)}, prefill ${fmt(run.prefillMs)}, decode ${run.decodeTokensPerSecond.toFixed(2)} tok/s, tokens ${run.tileTokens}/tile -> ${run.packedTokens} -> ${run.imageTokensAfterLlm}\n`);
    }
  }
  modules.vision.dispose();
  modules.projector.dispose();
  modules.decoder.dispose();
  await runtime.dispose();

  const med = (name: string, k: keyof Run) => median((runs.get(name) ?? []).map((r) => r[k]));
  const none = configs[0].name;
  const base = runs.get(none)?.[0] as Run;
  const noneFlops = predictedFlops(config, configs[0].merge, px.tiles, base);
  const rows = configs.map((c) => {
    const first = runs.get(c.name)?.[0] as Run;
    const flops = predictedFlops(config, c.merge, px.tiles, first);
    return {
      name: c.name,
      config: c.merge,
      runs: runs.get(c.name),
      visionMs: med(c.name, 'visionMs'),
      prefillMs: med(c.name, 'prefillMs'),
      decodeTokensPerSecond: med(c.name, 'decodeTokensPerSecond'),
      tokens: { perTile: first.tileTokens, packed: first.packedTokens, afterLlm: first.imageTokensAfterLlm, sequenceIn: first.sequenceIn, sequenceAfter: first.sequenceAfter },
      flops,
      speedup: {
        vision: med(none, 'visionMs') / med(c.name, 'visionMs'),
        visionPredicted: noneFlops.vision / flops.vision,
        prefill: med(none, 'prefillMs') / med(c.name, 'prefillMs'),
        prefillPredicted: noneFlops.prefill / flops.prefill,
        decode: med(c.name, 'decodeTokensPerSecond') / med(none, 'decodeTokensPerSecond'),
      },
      rssBytes: Math.max(...(runs.get(c.name) ?? []).map((r) => r.rssBytes)),
    };
  });
  const line = (cells: string[]) => `| ${cells.join(' | ')} |\n`;
  process.stdout.write(`\nworkload: 1 image (${px.tiles} tiles) + ${PREFIX_TOKENS + SUFFIX_TOKENS} text tokens + ${o.newTokens} new tokens (greedy); median of ${o.runs} interleaved run(s) after a warm-up\n`);
  process.stdout.write(line(['config', 'tokens per tile', 'image tokens packed / after LLM', 'seq in / after', 'vision', 'prefill', 'decode tok/s', 'vision speed-up (FLOPs predict)', 'prefill speed-up (FLOPs predict)', 'peak RSS']));
  process.stdout.write(line(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']));
  for (const r of rows) {
    process.stdout.write(line([r.name, `${r.tokens.perTile}`, `${r.tokens.packed} / ${r.tokens.afterLlm}`, `${r.tokens.sequenceIn} / ${r.tokens.sequenceAfter}`, fmt(r.visionMs), fmt(r.prefillMs), r.decodeTokensPerSecond.toFixed(2), `${r.speedup.vision.toFixed(2)}x (${r.speedup.visionPredicted.toFixed(2)}x)`, `${r.speedup.prefill.toFixed(2)}x (${r.speedup.prefillPredicted.toFixed(2)}x)`, `${(r.rssBytes / 1e9).toFixed(2)} GB`]));
  }
  process.stdout.write('(peak RSS: the OS high-water mark of the process after the config\'s runs, load included; it only grows)\n');
  if (o.json) {
    mkdirSync(o.out, { recursive: true });
    const file = join(o.out, `${o.name ?? 'llava-onevision-0.5b'}-${started.toISOString().replace(/[:T]/g, '-').slice(0, 16)}.json`);
    const payload = { date: started.toISOString(), machine, command: `npm run bench -- ${process.argv.slice(2).join(' ')}`, shape: modelShape(config), loadMs, image: { side: o.photoSide, tiles: px.tiles, tokensUnmerged: layout.tokens }, textTokens: PREFIX_TOKENS + SUFFIX_TOKENS, newTokens: o.newTokens, results: rows };
    writeFileSync(file, JSON.stringify(payload, (_, v) => (typeof v === 'number' && !Number.isInteger(v) ? +v.toPrecision(5) : v), 1));
    process.stdout.write(`results: ${file}\n`);
  }
}
