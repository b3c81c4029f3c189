// One decoder layer's key/value cache in arena scratch memory, for decode attention in our own
// kernel (kernels/attention.ts) on every kernel thread.
//
// Layout: keys and values f32 [Hkv][capacity][d] (each head's rows contiguous, as the kernel reads
// them); rows [0, length) are valid. A full cache moves to slices 1.5x as large (the old ones
// stay until the runtime's scratch is reset: when the last open cache is disposed).
import type { ArenaSlice } from './arena.js';
import type { KeyValueRows } from './attention-prefill.js';
import type { PackedRuntime } from './runtime.js';

export class ArenaKV {
  length = 0;
  private capacity = 0;
  private keys: ArenaSlice | null = null;
  private values: ArenaSlice | null = null;
  #disposed = false;

  constructor(readonly runtime: PackedRuntime, readonly heads: number, readonly headDim: number, capacity: number) {
    if (headDim % 4 !== 0) throw new Error(`ArenaKV: head dim ${headDim} is not a multiple of 4`);
    runtime.openScratch();
    this.grow(Math.max(16, capacity));
  }

  private grow(capacity: number): void {
    const { arena } = this.runtime;
    const bytes = 4 * this.heads * capacity * this.headDim;
    const [keys, values] = arena.allocateTogether([bytes, bytes], true); // the kernel reads both from one memory
    if (this.keys && this.values) {
      const d = this.headDim;
      for (const [from, to] of [[this.keys, keys], [this.values, values]] as const) {
        const src = arena.floats(from);
        const dst = arena.floats(to);
        for (let h = 0; h < this.heads; h++) dst.set(src.subarray(h * this.capacity * d, (h * this.capacity + this.length) * d), h * capacity * d);
      }
    }
    this.keys = keys;
    this.values = values;
    this.capacity = capacity;
  }

  /** Appends T rows: k and v as [T][stride] with the heads in the first heads * d columns (the projection's row layout). */
  append(k: Float32Array, v: Float32Array, T = 1, stride = this.heads * this.headDim): void {
    if (this.#disposed) throw new Error('ArenaKV: used after dispose()');
    if (this.length + T > this.capacity) this.grow(Math.max(Math.ceil(1.5 * this.capacity), this.length + T));
    const { arena } = this.runtime;
    const d = this.headDim;
    const keys = arena.floats(this.keys as ArenaSlice);
    const values = arena.floats(this.values as ArenaSlice);
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < this.heads; h++) {
        const at = (h * this.capacity + this.length + t) * d;
        keys.set(k.subarray(t * stride + h * d, t * stride + (h + 1) * d), at);
        values.set(v.subarray(t * stride + h * d, t * stride + (h + 1) * d), at);
      }
    }
    this.length += T;
  }

  /** Appends rows given per head: keys[h], values[h] as [T][d]. */
  appendHeads(keys: readonly Float32Array[], values: readonly Float32Array[], T: number): void {
    const d = this.headDim;
    const k = new Float32Array(T * this.heads * d);
    const v = new Float32Array(T * this.heads * d);
    for (let h = 0; h < this.heads; h++) {
      for (let t = 0; t < T; t++) {
        k.set(keys[h].subarray(t * d, (t + 1) * d), (t * this.heads + h) * d);
        v.set(values[h].subarray(t * d, (t + 1) * d), (t * this.heads + h) * d);
      }
    }
    this.append(k, v, T);
  }

  /** Rows [0, length) of kv head h: keys and values [length][d] (copies). */
  head(h: number): { keys: Float32Array; values: Float32Array } {
    const { arena } = this.runtime;
    const d = this.headDim;
    const from = h * this.capacity * d;
    return {
      keys: arena.floats(this.keys as ArenaSlice).slice(from, from + this.length * d),
      values: arena.floats(this.values as ArenaSlice).slice(from, from + this.length * d),
    };
  }

  /** softmax(q k^T) v for one query: q [H][d] (scaled, rotated) -> [H][d], heads split over the kernel threads. */
  attend(q: Float32Array, H: number): Float32Array {
    if (this.#disposed) throw new Error('ArenaKV: used after dispose()');
    const { arena, pool } = this.runtime;
    const d = this.headDim;
    const keys = this.keys as ArenaSlice;
    const mem = keys.memory;
    const qAt = arena.ioOffset;
    const outAt = qAt + Math.ceil((H * d * 4) / 64) * 64;
    const scoresAt = outAt + Math.ceil((H * d * 4) / 64) * 64;
    const scoreBytes = Math.ceil((this.length * 4) / 64) * 64;
    if (scoresAt + pool.threads * scoreBytes > arena.ioOffset + arena.ioBytes) throw new Error(`ArenaKV: ${this.length} cached rows need more than the arena's io region`);
    arena.floatView(mem, qAt, H * d).set(q.subarray(0, H * d));
    const values = (this.values as ArenaSlice).offset;
    pool.run('attendDecode', mem, H, (t, h0, h1) => [qAt, keys.offset, values, this.length, this.capacity, d, H / this.heads, h0, h1, scoresAt + t * scoreBytes, outAt], 1);
    return arena.floatView(mem, outAt, H * d).slice();
  }

  /** Where the valid rows lie, for the prefill-attention kernel (attention-prefill.ts). */
  get rows(): KeyValueRows {
    if (this.#disposed) throw new Error('ArenaKV: used after dispose()');
    const keys = this.keys as ArenaSlice;
    const rowStride = 4 * this.headDim;
    return { memory: keys.memory, keys: keys.offset, values: (this.values as ArenaSlice).offset, rowStride, headStride: rowStride * this.capacity, heads: this.heads, length: this.length };
  }

  /** Bytes held for the valid rows. */
  get bytes(): number {
    return 2 * 4 * this.heads * this.length * this.headDim;
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.runtime.closeScratch();
  }
}
