// The wasm heap guard at the model level (the tracking itself is layers/wasm-memory.ts): before
// loading, the heap the weights would take in the chosen layout is compared with the limit, and a
// layout that does not fit is refused with the model's size and the options that would fit;
// before each prefill, the KV cache and the largest activations the prompt needs are reserved.
import { mib, reserveWasmHeap, wasmHeapInUse, wasmHeapLimit } from '../layers/wasm-memory.js';
import type { WeightFormat } from '../weights/index.js';
import type { LlavaConfig } from './config.js';
import { weightBytes, type Residency } from './streamed.js';

/** A weight layout: the formats of the decoder (and lm_head) and of the vision side, and where float32 decoder layers live. */
export interface HeapLayout {
  decoder: WeightFormat;
  vision: WeightFormat;
  residency: Residency;
  /** setReleaseUnpackedWeights is on: XNNPACK's packed copy replaces each weight (else both are held). */
  releaseWeights: boolean;
}

/**
 * Bytes of the wasm heap the weights take in `layout`: float32 tensors, twice over for matmul
 * weights unless they are released (XNNPACK's copy); packed formats live in our own memories
 * (layers/packed/); streamed decoder layers are uploaded one at a time and disposed after their
 * call (counted as one layer, an upper bound: most calls upload one block of it).
 */
export function weightHeapBytes(config: LlavaConfig, layout: HeapLayout): number {
  const { decoderLayers, vision, head } = weightBytes(config);
  const factor = layout.releaseWeights ? 1 : 2;
  const decoderPacked = layout.decoder !== 'f32';
  const streamed = !decoderPacked && layout.residency === 'streamed' ? decoderLayers / config.text.numLayers : 0;
  const resident = decoderPacked || layout.residency === 'streamed' ? 0 : decoderLayers;
  return streamed + factor * (resident + (layout.vision !== 'f32' ? 0 : vision) + (decoderPacked ? 0 : head));
}

const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(2)} GiB`;

/**
 * On wasm, throws when the weights in `layout` would not fit the heap's limit, naming the model's
 * size and the layouts that would fit (LoadOptions and CLI spellings).
 */
export function checkWeightsFitWasmHeap(name: string, config: LlavaConfig, layout: HeapLayout, backend: string): void {
  if (backend !== 'wasm') return;
  const need = weightHeapBytes(config, layout);
  const used = wasmHeapInUse(); // other models, other tensors
  const limit = wasmHeapLimit() - used;
  if (need <= limit) return;
  const { decoderLayers, vision, head } = weightBytes(config);
  const float32 = decoderLayers + vision + head + 4 * config.text.vocabSize * config.text.hiddenSize;
  const packedAll = (f: WeightFormat): HeapLayout => ({ ...layout, decoder: f, vision: f, residency: 'resident' });
  const options: Array<[string, HeapLayout]> = [
    ["weights: 'streamed' (--weights streamed)", { ...layout, decoder: 'f32', residency: 'streamed' }],
    ["weightFormat: 'q8_0' (--weight-format q8_0)", packedAll('q8_0')],
    ["weightFormat: 'q4_0' (--weight-format q4_0)", packedAll('q4_0')],
    ["weightFormat: 'f16' (--weight-format f16)", packedAll('f16')],
  ];
  const fit = options.filter(([, l]) => weightHeapBytes(config, l) <= limit).map(([s, l]) => `${s}: ${mib(weightHeapBytes(config, l))}`);
  const what = `weightFormat '${layout.decoder}'${layout.vision !== layout.decoder ? `, visionWeightFormat '${layout.vision}'` : ''}, weights '${layout.residency}'`;
  throw new Error(`${name}: the model (${(float32 / 4 / 1e9).toFixed(2)} B parameters, ${gib(float32)} as float32) needs ${mib(need)} of the wasm heap with ${what}${layout.releaseWeights ? '' : ' (XNNPACK keeps a packed copy of each float32 matmul weight)'}: over ${used > 0 ? `the ${mib(limit)} left of its ${mib(limit + used)} limit (${mib(used)} are in use)` : `its ${mib(limit)} limit`} (tfjs-wasm corrupts memory silently past 4 GiB); ${fit.length > 0 ? `options that fit: ${fit.join('; ')}` : 'no weight layout fits it: use the tensorflow backend (@tensorflow/tfjs-node)'}`);
}

/**
 * Upper bound of the heap one prefill of `promptTokens` (then `newTokens` decode steps) takes: the
 * float32 KV cache (unless the decoder is packed: its cache lives in the kernels' arena) and the
 * largest layer's activations at once (q/k/v, attention scores, the MLP's three widths).
 */
export function prefillHeapBytes(config: LlavaConfig, promptTokens: number, newTokens: number, decoderPacked: boolean): number {
  const t = config.text;
  const kvDim = t.numKvHeads * t.headDim;
  const kv = decoderPacked ? 0 : 4 * t.numLayers * 2 * (promptTokens + newTokens) * kvDim;
  const layer = (T: number, heads: number, width: number, inter: number, qkv: number) => 4 * T * (heads * T + 3 * inter + qkv + 4 * width);
  const v = config.vision;
  const visionTokens = (v.imageSize / v.patchSize) ** 2 + 1;
  const activations = Math.max(
    layer(promptTokens, t.numHeads, t.hiddenSize, t.intermediateSize, t.numHeads * t.headDim + 2 * kvDim),
    layer(visionTokens, v.numHeads, v.hiddenSize, v.intermediateSize, 3 * v.hiddenSize),
  );
  return kv + activations;
}

/** Reserves the heap of one prefill (see prefillHeapBytes) or throws naming the prompt. */
export function reservePrefillHeap(config: LlavaConfig, promptTokens: number, newTokens: number, decoderPacked: boolean): void {
  reserveWasmHeap(prefillHeapBytes(config, promptTokens, newTokens, decoderPacked), `a prompt of ${promptTokens} tokens with ${newTokens} new tokens (KV cache and activations)`, 'shorten the prompt, lower maxNewTokens, or load the model with a packed weightFormat (q8_0, q4_0: weights and KV cache outside the heap)');
}
