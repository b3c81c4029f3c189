// Weight residency: decoder layers whose weights stay outside the tensor heap.
//
// A streamed layer keeps its tensors' *stored bytes* (fp16 / bf16 / fp32, as in the weight file)
// in host memory, and builds the ordinary LlamaDecoderLayer from them just before it runs
// (the same loader code as a resident layer, so the same float32 values and the same kernels:
// the outputs are bit-identical), then disposes it. The tensor heap then only ever holds one
// decoder layer's float32 weights (0.8 GB for LLaMA-7B, 1.6 GB with XNNPACK's packed copy) instead
// of all of them; the price is converting and re-packing that layer's weights at every forward
// call (prefill once, then every decode step).
//
// Residency is chosen by chooseResidency(): 'resident' when the model's float32 weights fit the
// backend's budget, else 'streamed'; LoadOptions.weights overrides it.
import * as os from 'node:os';
import type * as tf from '@tensorflow/tfjs-core';
import type { KVCache } from '../layers/index.js';
import { readRaw, bytesToFloat32, type RawTensor, type TensorInfo, type WeightSource } from '../weights/index.js';
import type { LlavaConfig } from './config.js';
import { visionLayersRun } from './config.js';
import type { LlamaDecoderLayer } from './decoder.js';

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

type DecoderLayerArgs = Parameters<LlamaDecoderLayer['apply']>;

/** A decoder layer built from host bytes for each call and disposed after it. */
export class StreamedDecoderLayer {
  /** Values held off the tensor heap (counted by LlavaModel.parameterCount). */
  readonly offHeapParameters: number;
  /** Host bytes held (stored dtype). */
  readonly hostBytes: number;
  readonly #source: MemoryWeightSource;
  readonly #build: (source: WeightSource) => LlamaDecoderLayer;

  constructor(source: MemoryWeightSource, build: (source: WeightSource) => LlamaDecoderLayer) {
    this.#source = source;
    this.#build = build;
    this.offHeapParameters = source.parameters;
    this.hostBytes = source.bytes;
  }

  apply(x: tf.Tensor2D, rope: DecoderLayerArgs[1], cache: KVCache['layers'][number], mask: tf.Tensor2D | null, scoreRow: number | undefined): ReturnType<LlamaDecoderLayer['apply']> {
    const layer = this.#build(this.#source);
    try {
      return layer.apply(x, rope, cache, mask, scoreRow);
    } finally {
      layer.dispose();
    }
  }

  dispose(): void {}
}

/** Float32 bytes of the weights loadModules makes tensors of (decoder layers separately). */
export function weightBytes(config: LlavaConfig): { decoderLayers: number; rest: number } {
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
  return { decoderLayers: 4 * decoderLayer * t.numLayers, rest: 4 * (visionLayer * visionLayersRun(config) + patch + projector + head) };
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
  const budget = (opts.totalMemory ?? os.totalmem()) / 2;
  const need = decoderLayers + rest;
  return need <= budget
    ? { residency: 'resident', reason: `${backend}: ${gib(need)} of weights fit half the memory (${gib(budget)})` }
    : { residency: 'streamed', reason: `${backend}: ${gib(need)} of weights exceed half the memory (${gib(budget)})` };
}
