// WeightSource + LlavaConfig -> the tfjs modules of a LLaVA-1.5 model (CLIP + LLaMA) or of a
// LLaVA-OneVision model's SigLIP tower, projector and Qwen2 decoder.
//
// Every tensor's shape is checked against config.json before use; linear weights are transposed
// to [in, out] on the host (wasm's fast matmul path) and q/k/v (and gate/up) are packed side by
// side so each projection is one matmul.
import * as tf from '@tensorflow/tfjs-core';
import {
  ClipAttention,
  GatedMlp,
  LayerNorm,
  Linear,
  LlamaAttention,
  PatchEmbedding,
  RMSNorm,
  RotaryEmbedding,
  TwoLayerMlp,
  activation,
  hostActivation,
  transposeToInOut,
} from '../layers/index.js';
import { ParallelMlp, type ParallelPool } from '../layers/parallel.js';
import { PackedGatedMlp, PackedLinear, PackedTwoLayerMlp, type PackedLinearOptions, type PackedRuntime } from '../layers/packed/index.js';
import { headBlocks } from '../layers/linear.js';
import { releaseUnpackedWeightsEnabled, reserveWasmHeap } from '../layers/wasm-memory.js';
import { exactF16Words, type PackedFormat, type QuantizedFile } from '../weights/index.js';
import { MemoryWeightSource, StreamedDecoderLayer, type Residency } from './streamed.js';
import { CANONICAL_PREFIX, readChecked, type WeightSource } from '../weights/index.js';
import { visionLayersRun, type LlavaConfig } from './config.js';
import { ClipEncoderLayer, VisionTower } from './vision.js';
import { LlamaDecoder, LlamaDecoderLayer, type DecoderLayer } from './decoder.js';
import { Projector } from './projector.js';

export interface LoadProgress {
  loaded: number;
  total: number;
  name: string;
}

export interface LoadedModules {
  vision: VisionTower;
  projector: Projector;
  decoder: LlamaDecoder;
  /** The packed layers among them (LoadModulesOptions.packed). */
  packedLayers: PackedLinear[];
  /** Formats some packed layer was quantized in (rather than read from the cache). */
  quantizedFormats: ReadonlySet<PackedFormat>;
}

const { vision: V, projector: P, language: L } = CANONICAL_PREFIX;

const HEAP_ADVICE = "load it with weights 'streamed' or a packed weightFormat ('q8_0', 'q4_0', 'f16': outside the heap), or free the heap first (dispose other models)";

/** Reads tensors by canonical name with their shapes checked against config.json. */
class ParamReader {
  loaded = 0;
  /** Set: MLPs are split with this pool's worker (LoadModulesOptions.pool). */
  pool: ParallelPool | undefined;
  /** LoadModulesOptions.residency. */
  residency: Residency = 'resident';
  /** LoadModulesOptions.packed. */
  packed: PackedWeights | undefined;
  /** Every packed layer made (the packed cache is written from them). */
  readonly packedLayers: PackedLinear[] = [];
  /** Formats some layer was quantized in at this load (not read from the cache). */
  readonly quantizedFormats = new Set<PackedFormat>();
  /** Every tensor and module made so far: disposed together if loading fails half way (a module
   *  may re-lay its tensors out at construction, so modules are tracked as well as tensors). */
  readonly created: Array<{ dispose(): void }> = [];

  constructor(
    readonly source: WeightSource,
    readonly total: number,
    private readonly onProgress?: (p: LoadProgress) => void,
  ) {}

  read(name: string, shape: number[], why: string): Float32Array {
    const data = readChecked(this.source, name, shape, `config.json (${why})`);
    this.loaded++;
    this.onProgress?.({ loaded: this.loaded, total: this.total, name });
    return data;
  }

  sourceNames(): string[] {
    return this.source.names();
  }

  /** Records a tensor or module for cleanup on failure. */
  track<T extends { dispose(): void }>(t: T): T {
    this.created.push(t);
    return t;
  }

  vector(name: string, size: number, why: string): tf.Tensor1D {
    const data = this.read(name, [size], why);
    reserveWasmHeap(4 * size, `loading '${name}'`, HEAP_ADVICE);
    return this.track(tf.tensor1d(data));
  }

  /** A PyTorch Linear [out, in] (+ bias) as [in, out]. */
  linear(prefix: string, inF: number, outF: number, bias: boolean, why: string): Linear {
    return this.packedLinear([prefix], inF, [outF], bias, why);
  }

  /** Several Linears reading the same input, packed side by side into one [in, sum(out)]. */
  packedLinear(prefixes: string[], inF: number, outs: number[], bias: boolean, why: string): Linear {
    const { weight, bias: biasData } = this.packedHost(prefixes, inF, outs, bias, why);
    // The weight, XNNPACK's packed copy of it (unless released after its first call) and the bias.
    reserveWasmHeap(4 * (weight.length * (releaseUnpackedWeightsEnabled() ? 1 : 2) + (biasData?.length ?? 0)), `loading '${prefixes.join('+')}'`, HEAP_ADVICE);
    return this.track(Linear.fromHost(weight, inF, weight.length / inF, biasData));
  }

  /** packedLinear's weight [in, sum(out)] and bias as host arrays. */
  packedHost(prefixes: string[], inF: number, outs: number[], bias: boolean, why: string): { weight: Float32Array; bias: Float32Array | null } {
    const total = outs.reduce((a, b) => a + b, 0);
    const weight = new Float32Array(inF * total);
    let col = 0;
    prefixes.forEach((prefix, i) => {
      const w = transposeToInOut(this.read(`${prefix}.weight`, [outs[i], inF], why), outs[i], inF);
      for (let r = 0; r < inF; r++) weight.set(w.subarray(r * outs[i], (r + 1) * outs[i]), r * total + col);
      col += outs[i];
    });
    return { weight, bias: bias ? this.stackedBias(prefixes, outs, why) : null };
  }

  /** The biases of Linears packed side by side, concatenated [sum(out)]. */
  stackedBias(prefixes: string[], outs: number[], why: string): Float32Array {
    const out = new Float32Array(outs.reduce((a, b) => a + b, 0));
    let col = 0;
    prefixes.forEach((prefix, i) => {
      out.set(this.read(`${prefix}.bias`, [outs[i]], why), col);
      col += outs[i];
    });
    return out;
  }

  /**
   * PyTorch Linears reading the same input, their [out, in] rows stacked into one packed
   * [sum(out), in] weight (row stacking is packing in PyTorch layout). Read from the packed cache
   * when it holds this matrix, else quantized from the checkpoint.
   */
  packedTorch(prefixes: string[], inF: number, outs: number[], bias: boolean, why: string, format: PackedFormat, options: PackedLinearOptions = {}): PackedLinear {
    const biasData = bias ? this.stackedBias(prefixes, outs, why) : null;
    const parts = prefixes.map((prefix, i) => ({ rows: outs[i], weight: () => this.read(`${prefix}.weight`, [outs[i], inF], why) }));
    return this.packedMatrix(prefixes.join('+'), inF, biasData, format, options, parts);
  }

  /**
   * A packed [N, K] layer under cache key `key`: read from the packed cache when it holds this
   * matrix, else quantized from its parts (PyTorch layout [rows][K] each, stacked as rows).
   */
  packedMatrix(key: string, K: number, bias: Float32Array | null, format: PackedFormat, options: PackedLinearOptions, parts: ReadonlyArray<{ rows: number; weight: () => Float32Array; fromSource?: boolean }>): PackedLinear {
    const packed = this.packed as PackedWeights;
    const N = parts.reduce((n, p) => n + p.rows, 0);
    const cached = packed.cache?.get(format);
    const info = cached?.info(key);
    if (cached && info && info.rows === N && info.cols === K) {
      this.loaded += parts.filter((p) => p.fromSource !== false).length;
      return this.trackPacked(PackedLinear.fill(packed.runtime, format, N, K, bias, (data, scales) => cached.readInto(key, data, scales), { ...options, cacheKey: key }));
    }
    this.quantizedFormats.add(format);
    return this.trackPacked(PackedLinear.fromTorchParts(packed.runtime, format, parts, K, bias, { ...options, cacheKey: key }));
  }

  trackPacked(layer: PackedLinear): PackedLinear {
    this.packedLayers.push(layer);
    return this.track(layer);
  }

  /** A Linear in the given format: float32 tensors (null) or packed. */
  anyLinear(prefixes: string[], inF: number, outs: number[], bias: boolean, why: string, format: PackedFormat | null): Linear | PackedLinear {
    return format ? this.packedTorch(prefixes, inF, outs, bias, why, format) : this.packedLinear(prefixes, inF, outs, bias, why);
  }

  layerNorm(prefix: string, size: number, eps: number, why: string): LayerNorm {
    return new LayerNorm(this.vector(`${prefix}.weight`, size, why), this.vector(`${prefix}.bias`, size, why), eps);
  }
}

/** An MLP split between this thread and the pool's worker: first layer from `firsts` (packed), second from `second`. */
function parallelMlp(reader: ParamReader, pool: ParallelPool, kind: 'mlp' | 'gated', firsts: string[], second: string, C: number, inter: number, bias: boolean, act: string, why: string): ParallelMlp {
  const one = reader.packedHost(firsts, C, firsts.map(() => inter), bias, why);
  const two = reader.packedHost([second], inter, [C], bias, why);
  return ParallelMlp.fromHost(pool, kind, { w1: one.weight, b1: one.bias, w2: two.weight, b2: two.bias }, C, inter, C, act);
}

/** The activation on one value, or undefined when it has no host version (the tensor path is used then). */
function hostActivationOrNone(name: string): ((x: number) => number) | undefined {
  try {
    return hostActivation(name);
  } catch {
    return undefined;
  }
}

/** Decoder layer i (the reader tracks what it makes). */
function buildDecoderLayer(reader: ParamReader, config: LlavaConfig, i: number, rotary: RotaryEmbedding): LlamaDecoderLayer {
  const t = config.text;
  const D = t.hiddenSize;
  const qDim = t.numHeads * t.headDim;
  const kvDim = t.numKvHeads * t.headDim;
  const act = activation(t.hiddenAct);
  const p = `${L}layers.${i}.`;
  const w = `text_config hidden_size=${D}, heads=${t.numHeads}/${t.numKvHeads}, head_dim=${t.headDim}, intermediate_size=${t.intermediateSize}`;
  const format = reader.packed?.decoder ?? null;
  const qkvNames = ['q_proj', 'k_proj', 'v_proj'].map((n) => `${p}self_attn.${n}`);
  const qkv = format
    ? reader.packedTorch(qkvNames, D, [qDim, kvDim, kvDim], t.qkvBias, w, format, headBlocks(t.numHeads, 2 * t.numKvHeads, t.headDim))
    : reader.packedLinear(qkvNames, D, [qDim, kvDim, kvDim], t.qkvBias, w);
  const I = t.intermediateSize;
  const gateUp = [`${p}mlp.gate_proj`, `${p}mlp.up_proj`];
  let mlp: GatedMlp | ParallelMlp | PackedGatedMlp;
  if (format) {
    mlp = new PackedGatedMlp(reader.packedTorch(gateUp, D, [I, I], t.mlpBias, w, format, { widths: [I, I] }), reader.packedTorch([`${p}mlp.down_proj`], I, [D], t.mlpBias, w, format), act, hostActivationOrNone(t.hiddenAct));
  } else if (reader.pool) {
    mlp = parallelMlp(reader, reader.pool, 'gated', gateUp, `${p}mlp.down_proj`, D, I, t.mlpBias, t.hiddenAct, w);
  } else {
    mlp = new GatedMlp(reader.packedLinear(gateUp, D, [I, I], t.mlpBias, w), reader.linear(`${p}mlp.down_proj`, I, D, t.mlpBias, w), act);
  }
  return reader.track(new LlamaDecoderLayer(
    new RMSNorm(reader.vector(`${p}input_layernorm.weight`, D, w), t.rmsNormEps),
    reader.track(new LlamaAttention(qkv, reader.anyLinear([`${p}self_attn.o_proj`], qDim, [D], t.attentionBias, w, format), t.numHeads, t.numKvHeads, rotary)),
    new RMSNorm(reader.vector(`${p}post_attention_layernorm.weight`, D, w), t.rmsNormEps),
    reader.track(mlp),
  ));
}

/** Number of tensors loadModules reads (for progress bars). */
function tensorCount(config: LlavaConfig): number {
  const t = config.text;
  const lm = t.tieWordEmbeddings ? 0 : 1;
  // CLIP: patch conv, CLS, positions, pre-LN weight and bias; SigLIP: patch conv and bias, positions.
  const embeddings = config.vision.kind === 'clip' ? 5 : 3;
  const perLayer = 9 + (t.qkvBias ? 3 : 0) + (t.attentionBias ? 1 : 0) + (t.mlpBias ? 3 : 0);
  const projector = (config.projectorBias ? 4 : 2) + (config.anyres ? 1 : 0); // + image_newline
  return embeddings + visionLayersRun(config) * 16 + projector + 2 + lm + t.numLayers * perLayer;
}

export interface LoadModulesOptions {
  /**
   * With a pool (layers/parallel.ts), the MLPs of the vision tower and of the decoder are split
   * between this thread and the pool's worker (half the intermediate width each, in the worker's
   * own wasm heap). Attention, norms, embedding, projector and lm_head stay on this thread.
   */
  pool?: ParallelPool;
  /** 'streamed': decoder layers keep their weights on the host (final layout, fp16 where exact) and upload them per call (src/streamed.ts). Default 'resident'. */
  residency?: Residency;
  /** Packed weights (f16 / q8_0 / q4_0 in our own kernels' memories) for the decoder and/or the vision side. */
  packed?: PackedWeights;
}

/** Which linear layers are packed, and where. */
export interface PackedWeights {
  runtime: PackedRuntime;
  /** Decoder layers and lm_head (null: float32 tensors). */
  decoder: PackedFormat | null;
  /** Vision tower and projector (null: float32 tensors). */
  vision: PackedFormat | null;
  /** Already-packed matrices by format (a quantized cache file), read instead of quantizing. */
  cache?: ReadonlyMap<PackedFormat, QuantizedFile>;
}

export function loadModules(source: WeightSource, config: LlavaConfig, onProgress?: (p: LoadProgress) => void, options: LoadModulesOptions = {}): LoadedModules {
  const reader = new ParamReader(source, tensorCount(config), onProgress);
  reader.pool = options.pool;
  reader.residency = options.residency ?? 'resident';
  reader.packed = options.packed;
  try {
    return { vision: loadVision(reader, config), projector: loadProjector(reader, config), decoder: loadDecoder(reader, config), packedLayers: reader.packedLayers, quantizedFormats: reader.quantizedFormats };
  } catch (e) {
    reader.created.forEach((t) => t.dispose());
    throw e;
  }
}

function loadVision(reader: ParamReader, config: LlavaConfig): VisionTower {
  const c = config.vision;
  const C = c.hiddenSize;
  const grid = Math.floor(c.imageSize / c.patchSize); // SigLIP: a remainder fills no patch
  const why = `vision_config hidden_size=${C}`;
  const clip = c.kind === 'clip';
  const conv = reader.read(`${V}embeddings.patch_embedding.weight`, [C, c.numChannels, c.patchSize, c.patchSize], `${why}, patch_size=${c.patchSize}`);
  const convBias = clip ? null : reader.read(`${V}embeddings.patch_embedding.bias`, [C], why);
  const patch = reader.track(PatchEmbedding.fromTorch(conv, C, c.numChannels, c.patchSize, convBias, !clip));
  const cls = clip ? reader.track(tf.tensor2d(reader.read(`${V}embeddings.class_embedding`, [C], why), [1, C])) : null;
  const tokens = grid * grid + (clip ? 1 : 0);
  const pos = reader.track(tf.tensor2d(reader.read(`${V}embeddings.position_embedding.weight`, [tokens, C], `${why}, ${grid * grid} patches${clip ? ' + CLS' : ''}`), [tokens, C]));
  // SigLIP has no pre-LN (and its post_layernorm is not part of LLaVA's features).
  const pre = clip ? reader.layerNorm(`${V}pre_layrnorm`, C, c.layerNormEps, why) : null;
  const act = activation(c.hiddenAct);
  const layers: ClipEncoderLayer[] = [];
  const format = reader.packed?.vision ?? null;
  const H = c.numHeads;
  for (let i = 0; i < visionLayersRun(config); i++) {
    const p = `${V}encoder.layers.${i}.`;
    const w = `${why}, intermediate_size=${c.intermediateSize}`;
    const qkvNames = ['q_proj', 'k_proj', 'v_proj'].map((n) => `${p}self_attn.${n}`);
    const qkv = format ? reader.packedTorch(qkvNames, C, [C, C, C], true, w, format, headBlocks(H, 2 * H, C / H)) : reader.packedLinear(qkvNames, C, [C, C, C], true, w);
    const outProj = reader.anyLinear([`${p}self_attn.out_proj`], C, [C], true, w, format);
    const I = c.intermediateSize;
    const mlp = format
      ? new PackedTwoLayerMlp(reader.packedTorch([`${p}mlp.fc1`], C, [I], true, w, format), reader.packedTorch([`${p}mlp.fc2`], I, [C], true, w, format), act)
      : reader.pool
        ? parallelMlp(reader, reader.pool, 'mlp', [`${p}mlp.fc1`], `${p}mlp.fc2`, C, I, true, c.hiddenAct, w)
        : new TwoLayerMlp(reader.linear(`${p}mlp.fc1`, C, I, true, w), reader.linear(`${p}mlp.fc2`, I, C, true, w), act);
    layers.push(
      reader.track(new ClipEncoderLayer(
        reader.layerNorm(`${p}layer_norm1`, C, c.layerNormEps, w),
        reader.track(new ClipAttention(qkv, outProj, H)),
        reader.layerNorm(`${p}layer_norm2`, C, c.layerNormEps, w),
        reader.track(mlp),
      )),
    );
  }
  return new VisionTower(patch, cls, pos, pre, layers, c.numHeads, clip && config.visionFeatureSelectStrategy === 'default');
}

function loadProjector(reader: ParamReader, config: LlavaConfig): Projector {
  const why = `vision hidden_size=${config.vision.hiddenSize}, text hidden_size=${config.text.hiddenSize}`;
  const D = config.text.hiddenSize;
  const Cv = config.vision.hiddenSize;
  const act = activation(config.projectorHiddenAct);
  const format = reader.packed?.vision ?? null;
  const bias = config.projectorBias;
  const mlp = format
    ? new PackedTwoLayerMlp(reader.packedTorch([`${P}linear_1`], Cv, [D], bias, why, format), reader.packedTorch([`${P}linear_2`], D, [D], bias, why, format), act)
    : new TwoLayerMlp(reader.linear(`${P}linear_1`, Cv, D, bias, why), reader.linear(`${P}linear_2`, D, D, bias, why), act);
  const newline = config.anyres ? reader.vector('image_newline', D, `text hidden_size=${D}`) : null;
  return reader.track(new Projector(mlp, newline));
}

function loadDecoder(reader: ParamReader, config: LlavaConfig): LlamaDecoder {
  const t = config.text;
  const D = t.hiddenSize;
  const why = `text_config hidden_size=${D}, vocab_size=${t.vocabSize}`;
  const embed = reader.read(`${L}embed_tokens.weight`, [t.vocabSize, D], why);
  const rotary = new RotaryEmbedding(t.headDim, t.ropeTheta);
  const layers: DecoderLayer[] = [];
  for (let i = 0; i < t.numLayers; i++) {
    if (reader.residency === 'streamed') {
      // This layer's stored bytes, read once; the StreamedDecoderLayer builds it and keeps its final layout on the host (src/streamed.ts).
      const p = `${L}layers.${i}.`;
      const names = reader.sourceNames().filter((n) => n.startsWith(p));
      const host = MemoryWeightSource.take(reader.source, names, `${reader.source.origin} (decoder layer ${i}, streamed)`);
      reader.loaded += names.length;
      const pool = reader.pool;
      const build = (source: WeightSource) => {
        const r = new ParamReader(source, names.length);
        r.pool = pool;
        try {
          return buildDecoderLayer(r, config, i, rotary);
        } catch (e) {
          r.created.forEach((m) => m.dispose());
          throw e;
        }
      };
      // Built once now (checks every shape against config.json at load, as a resident layer is)
      // and kept on the host in its final layout.
      layers.push(new StreamedDecoderLayer(host, build));
    } else {
      layers.push(buildDecoderLayer(reader, config, i, rotary));
    }
  }
  const norm = new RMSNorm(reader.vector(`${L}norm.weight`, D, why), t.rmsNormEps);
  const format = reader.packed?.decoder ?? null;
  let head: Linear | PackedLinear;
  if (format && t.tieWordEmbeddings) {
    head = reader.packedMatrix(`${L}embed_tokens`, D, null, format, {}, [{ rows: t.vocabSize, weight: () => embed, fromSource: false }]);
  } else if (format) {
    head = reader.packedTorch(['language_model.lm_head'], D, [t.vocabSize], false, why, format);
  } else {
    head = t.tieWordEmbeddings
      ? reader.track(Linear.fromHost(transposeToInOut(embed, t.vocabSize, D), D, t.vocabSize, null))
      : reader.linear('language_model.lm_head', D, t.vocabSize, false, why);
  }
  return new LlamaDecoder(exactF16Words(embed) ?? embed, // fp16 words when exact (an fp16 checkpoint): half the memory
     t.vocabSize, D, layers, norm, head, rotary);
}
