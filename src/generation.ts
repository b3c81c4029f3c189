// The decode loop of generate(): prefill (with language-stage merging), then one token per step on
// the KV cache, sampling, streaming detokenisation and stop conditions.
import * as tf from '@tensorflow/tfjs-core';
import { KVCache } from '../layers/index.js';
import type { LlamaDecoder } from './decoder.js';
import type { MergeSession } from '../merge/index.js';
import type { TokenSampler } from './sampling.js';
import { createStreamDecoder, type LlavaTokenizer } from './tokenizer.js';
import type { DecodeOptions } from './generate-types.js';

/** A prompt turned into decoder input: embeddings with the images spliced in. */
export interface PreparedPrompt {
  ids: number[];
  /** `ids` with every placeholder repeated to its feature rows (GenerateOutput.inputIds). */
  inputIds: number[];
  /** [T, D], consumed (disposed) by decodeTokens. */
  embeddings: tf.Tensor2D;
  /** [start, end) of each image's rows in `embeddings`. */
  spans: Array<[number, number]>;
  /** Position id of each row of `embeddings` (0..T-1 unless the vision stage keeps positions: MergeSession.prefillPositions). */
  positionIds: number[];
  session: MergeSession;
  timings: { preprocessMs: number; visionMs: number };
}

export interface Decoded {
  text: string;
  tokenIds: number[];
  finishReason: 'stop' | 'length';
  /** The logits that chose each token (only with returnLogits). */
  logits: Float32Array[];
  promptLength: number;
  /** Rows cached by the last layer after the prefill (prompt length after language-stage merging). */
  afterMerge: number;
  kvCacheBytes: number;
  prefillMs: number;
  /** performance.now() when the first token was chosen. */
  firstTokenAt: number;
  /** Steps after the first token. */
  decodeMs: number;
}

/** 0, 1, ..., n - 1: the position ids of an unmerged sequence. */
export function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

export async function decodeTokens(decoder: LlamaDecoder, tokenizer: LlavaTokenizer, prompt: PreparedPrompt, sampler: TokenSampler, options: DecodeOptions): Promise<Decoded> {
  const stopIds = new Set(options.stopIds ?? (tokenizer.eosId !== undefined ? [tokenizer.eosId] : []));
  const stops = (options.stop ?? []).filter((s) => s.length > 0);
  const useCache = options.useCache ?? true;
  const promptLength = prompt.embeddings.shape[0];
  if (prompt.positionIds.length !== promptLength) throw new Error(`decodeTokens: ${prompt.positionIds.length} position ids for ${promptLength} prompt rows`);
  /** The first generated token's position: after the prompt's last. */
  const nextPosition = promptLength > 0 ? prompt.positionIds[promptLength - 1] + 1 : 0;
  const stream = createStreamDecoder(tokenizer, { skipSpecialTokens: true });
  const out: Decoded = { text: '', tokenIds: [], finishReason: 'length', logits: [], promptLength, afterMerge: promptLength, kvCacheBytes: 0, prefillMs: 0, firstTokenAt: 0, decodeMs: 0 };
  // Without the cache every step re-runs the prompt embeddings plus the generated tokens, with the
  // same merge (scored by the last prompt token's row, as in the cached prefill).
  const promptEmbeddings = useCache ? null : tf.clone(prompt.embeddings);
  let cache = new KVCache(decoder.layers.length, promptLength + options.maxNewTokens + 1);
  try {
    const t0 = performance.now();
    let logits = decoder.forward(prompt.embeddings, prompt.positionIds, cache, prompt.session.sequenceHook(prompt.spans, promptLength - 1)).logits;
    out.afterMerge = cache.layers[cache.layers.length - 1].length;
    out.kvCacheBytes = cache.bytes;
    out.prefillMs = performance.now() - t0;
    for (let step = 0; step < options.maxNewTokens; step++) {
      if (options.signal) {
        // Let the event loop run (a server sees a client leave, answers other requests) and stop if asked.
        await new Promise((resolve) => setImmediate(resolve));
        options.signal.throwIfAborted();
      }
      const id = sampler.next(logits);
      if (options.returnLogits) out.logits.push(logits);
      if (step === 0) out.firstTokenAt = performance.now();
      if (stopIds.has(id)) {
        out.finishReason = 'stop';
        break;
      }
      out.tokenIds.push(id);
      const piece = stream.push(id);
      out.text += piece;
      const hit = stops.find((s) => out.text.includes(s));
      if (hit !== undefined) {
        out.text = out.text.slice(0, out.text.indexOf(hit));
        out.finishReason = 'stop';
        break;
      }
      if (piece) options.onToken?.(piece, id);
      if (step === options.maxNewTokens - 1) break;
      if (promptEmbeddings === null) {
        logits = decoder.forward(decoder.embed([id]), [nextPosition + step], cache).logits;
      } else {
        cache.dispose();
        cache = new KVCache(decoder.layers.length);
        const generated = decoder.embed(out.tokenIds);
        const all = tf.concat([promptEmbeddings, generated], 0);
        generated.dispose();
        logits = decoder.forward(all, [...prompt.positionIds, ...range(out.tokenIds.length).map((k) => nextPosition + k)], cache, prompt.session.sequenceHook(prompt.spans, promptLength - 1, false)).logits;
      }
    }
    if (out.finishReason === 'length') {
      const rest = stream.flush();
      out.text += rest;
      if (rest) options.onToken?.(rest, -1);
    }
  } finally {
    cache.dispose();
    promptEmbeddings?.dispose();
  }
  if (out.tokenIds.length > 1) out.decodeMs = performance.now() - out.firstTokenAt;
  return out;
}
