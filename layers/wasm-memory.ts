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
