// tfjs-backend-wasm memory: heap size, and freeing the unpacked copy of matmul weights.
//
// On the wasm backend XNNPACK packs every matmul weight into its own buffer at the first call and
// keeps it (keyed by the weight's tensor id and bias id) until the weight tensor is disposed; the
// tensor's own data is only read again if a new XNNPACK operator must be made for it. So every
// weight sits twice in the ~4 GB wasm heap. With setReleaseUnpackedWeights(true), weightMatMul
// (linear.ts) frees a weight's data right after its first call: a LLaMA-7B layer then takes
// 0.8 GB instead of 1.6 GB. The tensor stays registered (shape, id, XNNPACK operator), but its
// values can no longer be read, and it must never meet another bias or activation. This relies on
// tfjs-backend-wasm 4.x internals (BackendWasm.dataIdMap, wasm._malloc/_free); when they are not
// there (another backend, another version) nothing is released.
import * as tf from '@tensorflow/tfjs-core';

interface WasmTensorData {
  id: number;
  memoryOffset: number | null;
  refCount: number;
}

interface WasmBackendInternals {
  dataIdMap: { get(dataId: object): WasmTensorData | undefined };
  wasm: { _malloc(bytes: number): number; _free(ptr: number): void; HEAPU8: Uint8Array };
}

let releaseEnabled = false;

/** Frees each weight's unpacked copy after its first matmul (wasm backend only; see above). */
export function setReleaseUnpackedWeights(on: boolean): void {
  releaseEnabled = on;
}

export function releaseUnpackedWeightsEnabled(): boolean {
  return releaseEnabled && tf.getBackend() === 'wasm';
}

function wasmInternals(): WasmBackendInternals | null {
  if (tf.getBackend() !== 'wasm') return null;
  const backend = tf.backend() as unknown as Partial<WasmBackendInternals>;
  const wasm = backend.wasm;
  if (!backend.dataIdMap || !wasm || typeof wasm._malloc !== 'function' || typeof wasm._free !== 'function') return null;
  return backend as WasmBackendInternals;
}

/**
 * Frees the data of a float32 tensor whose values XNNPACK already holds packed. The tensor keeps
 * a 4-byte placeholder so disposing it later frees nothing twice. Returns false (and does nothing)
 * off wasm, for shared data (refCount > 1) or when the internals are not recognised.
 */
export function releaseUnpacked(t: tf.Tensor): boolean {
  const internals = wasmInternals();
  if (!internals || t.isDisposed) return false;
  const data = internals.dataIdMap.get(t.dataId);
  if (!data || data.memoryOffset === null || data.refCount !== 1) return false;
  const placeholder = internals.wasm._malloc(4) >>> 0;
  internals.wasm._free(data.memoryOffset);
  data.memoryOffset = placeholder;
  return true;
}

/** Current size of the wasm heap in bytes (it grows, never shrinks), or 0 off wasm. */
export function wasmHeapBytes(): number {
  return wasmInternals()?.wasm.HEAPU8.length ?? 0;
}

// The heap guard. tfjs-backend-wasm's heap is 32-bit: past 4 GiB its allocations wrap around and
// overwrite live tensors with no error (measured: the 43rd 96 MiB tensor overwrote the first).
// What illava puts there is tracked (tfjs's tensor bytes, plus the packed copy XNNPACK keeps of
// each matmul weight unless setReleaseUnpackedWeights is on), and whatever would take it past the
// limit is refused first (reserveWasmHeap): the loader before each weight tensor, generate before
// the prefill. The limit is below 4 GiB to leave room for tfjs's own buffers and fragmentation.

/** The most the wasm heap can address. */
export const WASM_HEAP_MAX_BYTES = 4 * 2 ** 30;
/** Default limit on what illava lets the wasm heap hold (4 GiB less 128 MiB). */
export const DEFAULT_WASM_HEAP_LIMIT = WASM_HEAP_MAX_BYTES - 128 * 2 ** 20;

let heapLimit: number | null = null;

/**
 * Sets the guard's limit in bytes (at most WASM_HEAP_MAX_BYTES; tests lower it to exercise the
 * guard cheaply); null restores the default: $ILLAVA_WASM_HEAP_LIMIT_MB when set, else
 * DEFAULT_WASM_HEAP_LIMIT.
 */
export function setWasmHeapLimit(bytes: number | null): void {
  if (bytes !== null && (!Number.isSafeInteger(bytes) || bytes < 1 || bytes > WASM_HEAP_MAX_BYTES)) {
    throw new Error(`the wasm heap limit must be an integer from 1 to ${WASM_HEAP_MAX_BYTES} bytes, got ${String(bytes)}`);
  }
  heapLimit = bytes;
}

/** The guard's limit in bytes (see setWasmHeapLimit). */
export function wasmHeapLimit(): number {
  if (heapLimit !== null) return heapLimit;
  const env = process.env.ILLAVA_WASM_HEAP_LIMIT_MB;
  if (env === undefined || env === '') return DEFAULT_WASM_HEAP_LIMIT;
  const mb = Number(env);
  if (!Number.isInteger(mb) || mb < 1 || mb * 2 ** 20 > WASM_HEAP_MAX_BYTES) {
    throw new Error(`ILLAVA_WASM_HEAP_LIMIT_MB must be an integer from 1 to ${WASM_HEAP_MAX_BYTES / 2 ** 20}, got '${env}'`);
  }
  return mb * 2 ** 20;
}

/** Weights whose packed copy XNNPACK holds besides their own data (pruned when disposed). */
const xnnpackCopies = new Set<tf.Tensor>();

/** weightMatMul: XNNPACK now keeps a packed copy of `weight` (wasm, weights not released). */
export function noteXnnpackCopy(weight: tf.Tensor): void {
  if (tf.getBackend() === 'wasm' && !releaseUnpackedWeightsEnabled()) xnnpackCopies.add(weight);
}

/** Bytes illava holds in the wasm heap now (tensors and XNNPACK's weight copies), 0 off wasm. */
export function wasmHeapInUse(): number {
  if (tf.getBackend() !== 'wasm') return 0;
  let copies = 0;
  for (const t of xnnpackCopies) {
    if (t.isDisposed) xnnpackCopies.delete(t);
    else copies += t.size * 4;
  }
  return tf.memory().numBytes + copies;
}

export const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(0)} MiB`;

/**
 * Throws, on the wasm backend, when `bytes` more would take the heap past the limit. `what`
 * names the allocation ("decoder layer 3", "the prefill of 600 tokens"); `advice` says what
 * would fit. Off wasm it does nothing.
 */
export function reserveWasmHeap(bytes: number, what: string, advice = ''): void {
  if (tf.getBackend() !== 'wasm') return;
  const used = wasmHeapInUse();
  const limit = wasmHeapLimit();
  if (used + bytes > limit) {
    throw new Error(`${what} needs ${mib(bytes)} more of the wasm heap, which holds ${mib(used)} already: over its ${mib(limit)} limit (tfjs-wasm corrupts memory silently past 4 GiB)${advice ? `; ${advice}` : ''}`);
  }
}
