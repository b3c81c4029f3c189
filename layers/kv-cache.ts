// Per-layer key/value cache for decoding, batch 1.
//
// Each layer keeps its own length: after a language-stage merge at layer K, layers < K cache the
// full prompt and layers >= K the shortened one. Keys are stored after RoPE, per key/value head
// as [S, d], which is what multiHeadAttention reads without any per-step transpose.
import * as tf from '@tensorflow/tfjs-core';

export class LayerKVCache {
  keys: tf.Tensor2D[] = [];
  values: tf.Tensor2D[] = [];

  get length(): number {
    return this.keys.length === 0 ? 0 : this.keys[0].shape[0];
  }

  /**
   * Appends new rows (per head [T, d]); takes ownership of the given tensors. Stored tensors are
   * tf.keep()-ed: the cache outlives any tf.tidy the caller may run a layer in.
   */
  append(keys: tf.Tensor2D[], values: tf.Tensor2D[]): void {
    if (this.keys.length === 0) {
      this.keys = keys.map((k) => tf.keep(k));
      this.values = values.map((v) => tf.keep(v));
      return;
    }
    const grow = (old: tf.Tensor2D[], add: tf.Tensor2D[]) =>
      old.map((o, h) => {
        const joined = tf.keep(tf.concat([o, add[h]], 0));
        o.dispose();
        add[h].dispose();
        return joined;
      });
    this.keys = grow(this.keys, keys);
    this.values = grow(this.values, values);
  }

  /** Bytes held (float32). */
  get bytes(): number {
    return [...this.keys, ...this.values].reduce((sum, t) => sum + t.size * 4, 0);
  }

  dispose(): void {
    this.keys.forEach((t) => t.dispose());
    this.values.forEach((t) => t.dispose());
    this.keys = [];
    this.values = [];
  }
}

export class KVCache {
  readonly layers: LayerKVCache[];

  constructor(numLayers: number) {
    this.layers = Array.from({ length: numLayers }, () => new LayerKVCache());
  }

  get bytes(): number {
    return this.layers.reduce((sum, l) => sum + l.bytes, 0);
  }

  dispose(): void {
    this.layers.forEach((l) => l.dispose());
  }
}
