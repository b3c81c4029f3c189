// Weight residency: decoder layers whose weights stay outside the tensor heap.
//
// A streamed layer is built once, at load, with the loader's own code (src/load.ts: transposed to
// [in, out], q/k/v packed and split per head with 1/sqrt(d) folded into q, MLP chunks), exactly as
// a resident layer is. Its tensors' values, in that final layout, are then copied to the host and
// the tensors disposed: as fp16 bits (plus the column scale folded into q heads) wherever that
// reproduces every float32 value exactly (fp16-stored checkpoints), else as float32 (F32 / BF16
// storage). At each call every Linear block is re-created from its host copy (fp16 -> float32 by
// table) just before its matmul and disposed right after it: the same float32 values and the same
// kernels as a resident layer, so the outputs are bit-identical, while the tensor heap holds one
// block (at most a few MiB, plus XNNPACK's packed copy) instead of a layer (0.8 GB for LLaMA-7B,
// 1.6 GB with the packed copy). Whole-layer uploads aborted the full 7B-shaped run: one layer next
// to the resident ViT-L and lm_head left the 4 GiB wasm heap no room. The price is the conversion,
// the upload and XNNPACK's re-packing at every forward call (prefill once, then every decode step).
// With a worker pool (threads: 2) the MLP halves live in the worker's heap: such layers are still
// rebuilt from their stored bytes per call.
//
// Residency is chosen by chooseResidency(): 'resident' when the model's float32 weights fit the
// backend's budget, else 'streamed'; LoadOptions.weights overrides it.
import { hostMemoryBytes } from './backend.js';
import * as tf from '@tensorflow/tfjs-core';
import { GatedMlp, Linear, type KVCache, type LinearBlock, type RMSNorm } from '../layers/index.js';
import { readRaw, bytesToFloat32, exactF16Words, f16WordsToFloat32, type RawTensor, type TensorInfo, type WeightSource } from '../weights/index.js';
import type { LlavaConfig } from './config.js';
import { visionLayersRun } from './config.js';
import type { DecoderLayer, LlamaDecoderLayer, RopeTables } from './decoder.js';

export type Residency = 'resident' | 'streamed';
export type ResidencyOption = Residency | 'auto';

/** A WeightSource over stored bytes held in memory (one layer's tensors). */
export class MemoryWeightSource implements WeightSource {
  constructor(
    readonly origin: string,
    private readonly tensors: ReadonlyMap<string, RawTensor>,
  ) {}

  /** Copies the stored bytes of `names` out of `source`. */
  static take(source: WeightSource, names: readonly string[], origin: string): MemoryWeightSource {
    return new MemoryWeightSource(origin, new Map(names.map((n) => [n, readRaw(source, n)])));
  }

  names(): string[] {
    return [...this.tensors.keys()].sort();
  }

  info(name: string): TensorInfo | undefined {
    const t = this.tensors.get(name);
    return t ? { name, dtype: t.dtype, shape: [...t.shape] } : undefined;
  }

  private get(name: string): RawTensor {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`${this.origin}: tensor '${name}' is missing`);
    return t;
  }

  readFloat32(name: string): Float32Array {
    const t = this.get(name);
    return bytesToFloat32(t.dtype, t.bytes);
  }

  readRaw(name: string): RawTensor {
    const t = this.get(name);
    return { dtype: t.dtype, shape: [...t.shape], bytes: t.bytes.slice() };
  }

  /** Bytes held (stored dtype). */
  get bytes(): number {
    let n = 0;
    for (const t of this.tensors.values()) n += t.bytes.length;
    return n;
  }

  /** Number of values held. */
  get parameters(): number {
    let n = 0;
    for (const t of this.tensors.values()) n += t.shape.reduce((a, b) => a * b, 1);
    return n;
  }

  close(): void {}
}

/** One tensor of a streamed layer on the host, in its final layout: value i = fround(f16[i] x scale), or f32[i]. */
interface HostTensor {
  readonly shape: number[];
  readonly f16: Uint16Array | null;
  readonly f32: Float32Array | null;
  readonly scale: number;
}

/** A tensor field of a built layer: its host copy, and how to put a fresh tensor in its place. */
interface Slot {
  readonly host: HostTensor;
  readonly set: (t: tf.Tensor) => void;
}

/** A host copy of `t`'s values: fp16 bits when fround(f16 x scale) gives back every value exactly, else float32. */
function toHost(t: tf.Tensor, scale: number): HostTensor {
  const data = t.dataSync() as Float32Array;
  const words = exactF16Words(data, scale);
  return words ? { shape: [...t.shape], f16: words, f32: null, scale: Math.fround(scale) } : { shape: [...t.shape], f16: null, f32: data.slice(), scale: 1 };
}

/** Scratch float32 arrays by length (wasm copies a tensor's values into its heap at creation, so they can be reused). */
const scratch = new Map<number, Float32Array>();

function upload(h: HostTensor): tf.Tensor {
  if (h.f32) return tf.tensor(h.f32, h.shape, 'float32');
  const f16 = h.f16 as Uint16Array;
  let out: Float32Array | undefined;
  if (tf.getBackend() === 'wasm') {
    out = scratch.get(f16.length);
    if (!out) scratch.set(f16.length, (out = new Float32Array(f16.length)));
  }
  return tf.tensor(f16WordsToFloat32(f16, out, h.scale), h.shape, 'float32');
}

/**
 * Moves a built decoder layer's weights to the host. Every Linear block (q/k/v per head, o_proj,
 * MLP chunks) gets a `fetch` that uploads it just before its matmul (blockMatMul disposes it right
 * after), so the heap holds one block at a time; the norm weights (a few KiB) become slots that
 * apply() uploads per call. Null when the MLP is not a GatedMlp on this thread (a worker pool's
 * ParallelMlp).
 */
function moveToHost(layer: LlamaDecoderLayer): { slots: Slot[]; hostBytes: number } | null {
  const mlp = layer.mlp;
  const attn = layer.attn;
  if (!(mlp instanceof GatedMlp) || !(attn.qkv instanceof Linear) || !(attn.outProj instanceof Linear)) return null;
  const qkv = attn.qkv;
  const outProj = attn.outProj;
  const slots: Slot[] = [];
  let hostBytes = 0;
  const held = (h: HostTensor) => {
    hostBytes += h.f16 ? h.f16.byteLength : (h.f32 as Float32Array).byteLength;
    return h;
  };
  const norm = (n: RMSNorm) => slots.push({ host: held(toHost(n.weight, 1)), set: (t) => ((n as { weight: tf.Tensor }).weight = t) });
  const linear = (l: Linear, scale: (block: number) => number) =>
    l.blocks.forEach((b: LinearBlock, j) => {
      const w = held(toHost(b.weight, scale(j)));
      const bias = b.bias ? held(toHost(b.bias, scale(j))) : null;
      b.fetch = () => ({ weight: upload(w) as tf.Tensor2D, bias: bias ? (upload(bias) as tf.Tensor1D) : null });
    });
  // LlamaAttention folds 1/sqrt(d) (a float32) into the q heads, its first numHeads blocks.
  const qScale = 1 / Math.sqrt(attn.rotary.headDim);
  norm(layer.inputNorm);
  linear(qkv, (j) => (j < attn.numHeads ? qScale : 1));
  linear(outProj, () => 1);
  norm(layer.postNorm);
  linear(mlp.gate, () => 1);
  linear(mlp.up, () => 1);
  mlp.downRows.forEach((l) => linear(l, () => 1));
  return { slots, hostBytes };
}

/** A decoder layer whose tensors are created from host copies for each call and disposed after it. */
export class StreamedDecoderLayer implements DecoderLayer {
  /** Values held off the tensor heap (counted by parameterCount). */
  readonly offHeapParameters: number;
  /** Host bytes held. */
  readonly hostBytes: number;
  /** The layer built at load; its tensors are disposed between calls (slots mode). */
  readonly #layer: LlamaDecoderLayer | null;
  readonly #slots: Slot[] | null;
  /** Rebuild mode (worker pool): stored bytes and the loader. */
  readonly #source: MemoryWeightSource | null;
  readonly #build: (source: WeightSource) => LlamaDecoderLayer;

  /** Builds the layer once from `source` (checking every shape against config.json) and keeps its final layout on the host. */
  constructor(source: MemoryWeightSource, build: (source: WeightSource) => LlamaDecoderLayer) {
    this.#build = build;
    this.offHeapParameters = source.parameters;
    const layer = build(source);
    let moved: ReturnType<typeof moveToHost>;
    try {
      moved = moveToHost(layer);
    } finally {
      layer.dispose(); // the Linear blocks keep disposed placeholders (shapes) and fetch from the host
    }
    this.#slots = moved ? moved.slots : null;
    this.#layer = moved ? layer : null;
    this.#source = moved ? null : source;
    this.hostBytes = moved ? moved.hostBytes : source.bytes;
  }

  apply(x: tf.Tensor2D, rope: RopeTables, cache: KVCache['layers'][number], mask: tf.Tensor2D | null, scoreRow: number | undefined): ReturnType<DecoderLayer['apply']> {
    if (!this.#slots || !this.#layer) {
      const layer = this.#build(this.#source as MemoryWeightSource);
      try {
        return layer.apply(x, rope, cache, mask, scoreRow);
      } finally {
        layer.dispose();
      }
    }
    const made: tf.Tensor[] = [];
    try {
      for (const slot of this.#slots) {
        const t = upload(slot.host);
        made.push(t);
        slot.set(t);
      }
      return this.#layer.apply(x, rope, cache, mask, scoreRow);
    } finally {
      made.forEach((t) => t.dispose());
    }
  }

  /** Values of the weights (all on the host between calls). */
  parameterCount(): number {
    return this.offHeapParameters;
  }

  dispose(): void {}
}

/** Float32 bytes of the weights loadModules makes tensors of (decoder layers separately; rest = vision + head). */
export function weightBytes(config: LlavaConfig): { decoderLayers: number; rest: number; vision: number; head: number } {
  const v = config.vision;
  const t = config.text;
  const C = v.hiddenSize;
  const visionLayer = 4 * C * C + 2 * C * v.intermediateSize + 10 * C;
  const patch = C * v.numChannels * v.patchSize * v.patchSize + ((v.imageSize / v.patchSize) ** 2 + 2) * C;
  const D = t.hiddenSize;
  const q = t.numHeads * t.headDim;
  const kv = t.numKvHeads * t.headDim;
  const decoderLayer = D * (q + 2 * kv) + q * D + 3 * D * t.intermediateSize + 2 * D;
  const projector = C * D + D * D + 2 * D;
  const head = D * t.vocabSize; // the embedding table stays on the host (LlamaDecoder.embedTable)
  const vision = 4 * (visionLayer * visionLayersRun(config) + patch + projector);
  return { decoderLayers: 4 * decoderLayer * t.numLayers, rest: vision + 4 * head, vision, head: 4 * head };
}

/**
 * 'resident' when every weight fits the tensor heap, else 'streamed' (decoder layers only).
 * wasm: the heap is 4 GiB; XNNPACK keeps a packed copy of each matmul weight (x2 unless
 * setReleaseUnpackedWeights is on); 3.25 GiB are allowed for weights, the rest is for
 * activations, the KV cache and one streamed layer (measured: the LLaVA-1.5-7B slice with 2 LLaMA
 * layers, 3.16 GiB of weights, ran resident with the heap ending at 4054 of 4096 MiB; a third
 * layer did not fit). Other backends: half the machine's memory.
 */
export function chooseResidency(config: LlavaConfig, backend: string, opts: { releaseWeights?: boolean; totalMemory?: number } = {}): { residency: Residency; reason: string } {
  const { decoderLayers, rest } = weightBytes(config);
  const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
  if (backend === 'wasm') {
    const factor = opts.releaseWeights ? 1 : 2;
    const need = factor * (decoderLayers + rest);
    const budget = 3.25 * 2 ** 30;
    return need <= budget
      ? { residency: 'resident', reason: `wasm: ${gib(need)} of weights in the heap fit ${gib(budget)}` }
      : { residency: 'streamed', reason: `wasm: ${gib(need)} of weights in the heap exceed ${gib(budget)}` };
  }
  const budget = (opts.totalMemory ?? hostMemoryBytes()) / 2;
  const need = decoderLayers + rest;
  return need <= budget
    ? { residency: 'resident', reason: `${backend}: ${gib(need)} of weights fit half the memory (${gib(budget)})` }
    : { residency: 'streamed', reason: `${backend}: ${gib(need)} of weights exceed half the memory (${gib(budget)})` };
}
