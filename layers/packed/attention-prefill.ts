// Prefill attention (many query rows) in our kernel (kernels/attention.ts attendPrefill) on every
// kernel thread, heads split between them. Everything the kernel reads lies in one arena memory:
// keys/values in an ArenaKV (decoder) or, with the queries, in the io region (vision tower).
import type { PackedRuntime } from './runtime.js';

/** Where the keys and values lie (byte offsets and strides in arena memory `memory`). */
export interface KeyValueRows {
  memory: number;
  keys: number;
  values: number;
  /** Bytes from one row of a head to the next, and from one key/value head to the next. */
  rowStride: number;
  headStride: number;
  /** Key/value heads; query head h reads floor(h / (H / heads)). */
  heads: number;
  /** Rows in all (the queries are the last T of them when causal). */
  length: number;
}

const align = (n: number) => Math.ceil(n / 64) * 64;

/** Bytes of one thread's kernel scratch: keys transposed [d][S8] and 4 rows of scores [S8], S8 = S rounded up to 8. */
const scratchBytes = (S: number, d: number) => align((d + 4) * Math.ceil(S / 8) * 8 * 4);

/**
 * softmax(q k^T) v for T query rows of H heads of width d: q host [T][qStride] (head h at column
 * qOffset + h d, scaled and rotated), copied into the io region in chunks of rows that fit.
 * Causal: query i is row length - T + i and sees rows 0..length-T+i. Returns [T][H d].
 */
export function attendRows(runtime: PackedRuntime, kv: KeyValueRows, q: Float32Array, qStride: number, qOffset: number, T: number, H: number, d: number, causal: boolean): Float32Array {
  const { arena } = runtime;
  const width = H * d;
  const start = arena.ioOffset;
  const scoresPerThread = scratchBytes(kv.length, d);
  const room = arena.ioBytes - runtime.threads * scoresPerThread - 128;
  const chunk = Math.min(T, Math.floor(room / (8 * width)));
  if (chunk < 1) throw new Error(`attention: ${kv.length} keys need more than the arena's io region (${arena.ioBytes} bytes)`);
  const out = new Float32Array(T * width);
  for (let i0 = 0; i0 < T; i0 += chunk) {
    const rows = Math.min(chunk, T - i0);
    const qAt = start;
    const outAt = qAt + align(rows * width * 4);
    const scoresAt = outAt + align(rows * width * 4);
    const qView = arena.floatView(kv.memory, qAt, rows * width);
    for (let r = 0; r < rows; r++) qView.set(q.subarray((i0 + r) * qStride + qOffset, (i0 + r) * qStride + qOffset + width), r * width);
    // rows [i0, i0 + rows) of a causal block see the keys up to their own position
    const seen = causal ? kv.length - T + i0 + rows : kv.length;
    run(runtime, kv, { q: qAt, qRow: width * 4, out: outAt, outRow: width * 4, scores: scoresAt, scoresPerThread }, rows, seen, H, d, causal);
    out.set(arena.floatView(kv.memory, outAt, rows * width), i0 * width);
  }
  return out;
}

/**
 * Bidirectional attention of N tokens whose q, k and v heads lie side by side in each row of
 * `qkv` [N][3 H d] (q heads, then k heads, then v heads, as the vision tower's projection makes
 * them): all of it goes into the io region of arena memory `memory` at once (packedAttentionFits). Returns [N][H d].
 */
export function attendPacked(runtime: PackedRuntime, memory: number, qkv: Float32Array, N: number, H: number, d: number): Float32Array {
  if (!packedAttentionFits(runtime, N, H, d)) throw new Error(`attention: ${N} tokens of ${H} heads do not fit the arena's io region (${runtime.arena.ioBytes} bytes)`);
  const { arena } = runtime;
  const width = H * d;
  const at = packedLayout(N, H, d, runtime.threads);
  const base = arena.ioOffset;
  arena.floatView(memory, base, N * 3 * width).set(qkv.subarray(0, N * 3 * width));
  const kv: KeyValueRows = { memory, keys: base + width * 4, values: base + 2 * width * 4, rowStride: 3 * width * 4, headStride: d * 4, heads: H, length: N };
  run(runtime, kv, { q: base, qRow: 3 * width * 4, out: base + at.out, outRow: width * 4, scores: base + at.scratch, scoresPerThread: at.scratchPerThread }, N, N, H, d, false);
  return arena.floatView(memory, base + at.out, N * width).slice();
}

/** attendPacked's io region, byte offsets from its start: q/k/v rows at 0, the output, then each thread's scratch. */
function packedLayout(N: number, H: number, d: number, threads: number): { out: number; scratch: number; scratchPerThread: number; end: number } {
  const width = H * d;
  const out = align(N * 3 * width * 4);
  const scratch = out + align(N * width * 4);
  const scratchPerThread = scratchBytes(N, d);
  return { out, scratch, scratchPerThread, end: scratch + threads * scratchPerThread + 128 };
}

/** Whether attendPacked's N tokens fit the io region (else take the tensor path). */
export function packedAttentionFits(runtime: PackedRuntime, N: number, H: number, d: number): boolean {
  return d % 4 === 0 && d <= 256 && packedLayout(N, H, d, runtime.threads).end <= runtime.arena.ioBytes;
}

function checkShape(kv: KeyValueRows, H: number, d: number): void {
  if (d % 4 !== 0 || d > 256) throw new Error(`attention kernel: head dim ${d} must be a multiple of 4 up to 256`);
  if (H % kv.heads !== 0) throw new Error(`attention kernel: ${H} query heads cannot share ${kv.heads} key/value heads`);
}

interface QueryRows {
  q: number;
  qRow: number;
  out: number;
  outRow: number;
  scores: number;
  scoresPerThread: number;
}

function run(runtime: PackedRuntime, kv: KeyValueRows, at: QueryRows, T: number, S: number, H: number, d: number, causal: boolean): void {
  checkShape(kv, H, d);
  const group = H / kv.heads;
  runtime.pool.run('attendPrefill', kv.memory, H, (t, h0, h1) => [at.q, at.qRow, kv.keys, kv.values, kv.rowStride, kv.headStride, T, S, d, group, causal ? 1 : 0, h0, h1, at.scores + t * at.scoresPerThread, at.out, at.outRow], 1);
}
