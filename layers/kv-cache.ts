// Per-layer key/value cache for decoding, batch 1.
//
// Each layer keeps its own length: after a language-stage merge at layer K, layers < K cache the
// full prompt and layers >= K the shortened one. Keys are stored after RoPE, per key/value head
// as [S, d], which is what multiHeadAttention reads without any per-step transpose.
//
// With packed attention weights, decoding moves the rows into arena memory (toArena: an ArenaKV
// that our decode-attention kernel reads); asking for tensors again brings them back.
import * as tf from '@tensorflow/tfjs-core';
import { ArenaKV } from './packed/arena-kv.js';
import type { PackedRuntime } from './packed/runtime.js';

export class LayerKVCache {
  /** Rows expected in all (prompt + new tokens): the arena cache is sized for it (0: unknown). */
  capacityHint = 0;
  #keys: tf.Tensor2D[] = [];
  #values: tf.Tensor2D[] = [];
  #arena: ArenaKV | null = null;

  /** Per key/value head [S, d] tensors (brought back from the arena if the rows are there). */
  get keys(): tf.Tensor2D[] {
    this.fromArena();
    return this.#keys;
  }

  get values(): tf.Tensor2D[] {
    this.fromArena();
    return this.#values;
  }

  get length(): number {
    if (this.#arena) return this.#arena.length;
    return this.#keys.length === 0 ? 0 : this.#keys[0].shape[0];
  }

  /** The rows as an ArenaKV of `runtime` (moved there on the first call; tensors are disposed). */
  toArena(runtime: PackedRuntime, heads: number, headDim: number): ArenaKV {
    if (this.#arena) return this.#arena;
    const arena = new ArenaKV(runtime, heads, headDim, Math.max(this.length + 16, this.capacityHint));
    if (this.#keys.length > 0) {
      if (this.#keys.length !== heads) {
        arena.dispose();
        throw new Error(`KV cache: ${this.#keys.length} cached heads, the arena cache was asked for ${heads}`);
      }
      arena.appendHeads(this.#keys.map((k) => k.dataSync() as Float32Array), this.#values.map((v) => v.dataSync() as Float32Array), this.length);
      this.disposeTensors();
    }
    this.#arena = arena;
    return arena;
  }

  private fromArena(): void {
    const arena = this.#arena;
    if (!arena) return;
    this.#arena = null;
    const d = arena.headDim;
    for (let h = 0; h < arena.heads; h++) {
      const { keys, values } = arena.head(h);
      this.#keys.push(tf.keep(tf.tensor2d(keys, [arena.length, d])));
      this.#values.push(tf.keep(tf.tensor2d(values, [arena.length, d])));
    }
    arena.dispose();
  }

  private disposeTensors(): void {
    this.#keys.forEach((t) => t.dispose());
    this.#values.forEach((t) => t.dispose());
    this.#keys = [];
    this.#values = [];
  }

  /**
   * Appends new rows (per head [T, d]); takes ownership of the given tensors. Stored tensors are
   * tf.keep()-ed: the cache outlives any tf.tidy the caller may run a layer in.
   */
  append(keys: tf.Tensor2D[], values: tf.Tensor2D[]): void {
    this.fromArena();
    if (this.#keys.length === 0) {
      this.#keys = keys.map((k) => tf.keep(k));
      this.#values = values.map((v) => tf.keep(v));
      return;
    }
    const grow = (old: tf.Tensor2D[], add: tf.Tensor2D[]) =>
      old.map((o, h) => {
        const joined = tf.keep(tf.concat([o, add[h]], 0));
        o.dispose();
        add[h].dispose();
        return joined;
      });
    this.#keys = grow(this.#keys, keys);
    this.#values = grow(this.#values, values);
  }

  /** Keeps the first `length` rows (benchmarks restore a cache this way after each step). */
  truncate(length: number): void {
    if (!Number.isInteger(length) || length < 0 || length > this.length) throw new Error(`KV cache: cannot truncate ${this.length} rows to ${length}`);
    if (this.#arena) {
      this.#arena.length = length;
      return;
    }
    const cut = (ts: tf.Tensor2D[]) =>
      ts.map((k) => {
        const t = tf.keep(tf.slice(k, [0, 0], [length, -1]) as tf.Tensor2D);
        k.dispose();
        return t;
      });
    this.#keys = cut(this.#keys);
    this.#values = cut(this.#values);
  }

  /** Bytes held (float32). */
  get bytes(): number {
    if (this.#arena) return this.#arena.bytes;
    return [...this.#keys, ...this.#values].reduce((sum, t) => sum + t.size * 4, 0);
  }

  dispose(): void {
    this.disposeTensors();
    this.#arena?.dispose();
    this.#arena = null;
  }
}

export class KVCache {
  readonly layers: LayerKVCache[];

  /** @param capacityHint rows expected in all (prompt + new tokens), 0 when unknown */
  constructor(numLayers: number, capacityHint = 0) {
    this.layers = Array.from({ length: numLayers }, () => new LayerKVCache());
    this.layers.forEach((l) => (l.capacityHint = capacityHint));
  }

  get bytes(): number {
    return this.layers.reduce((sum, l) => sum + l.bytes, 0);
  }

  dispose(): void {
    this.layers.forEach((l) => l.dispose());
  }
}
