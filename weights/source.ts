// Helpers shared by every WeightSource: the standard error messages, shape-checked reads and raw
// reads that work on any source (including in-memory ones without readRaw).
import { f16BytesToFloat32, float32ToBytesLE, float32ToF16Bits, uint16ToBytesLE } from './dtype.js';
import { shapeString } from './file-io.js';
import type { RawTensor, WeightSource } from './types.js';

/** `<origin>: tensor '<name>' is missing (looked for it under both naming schemes)`. */
export function missingTensorError(origin: string, name: string): Error {
  return new Error(`${origin}: tensor '${name}' is missing (looked for it under both naming schemes)`);
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * Reads `name` as float32 after checking its shape against the one the config implies. `why`
 * names that source, e.g. "config.json (hidden_size=64)". Throws
 * `<origin>: tensor '<name>' has shape [a,b] but <why> implies [c,d]` on mismatch.
 */
export function readChecked(source: WeightSource, name: string, expectedShape: readonly number[], why: string): Float32Array {
  const info = source.info(name);
  if (!info) throw missingTensorError(source.origin, name);
  if (!sameShape(info.shape, expectedShape)) {
    throw new Error(`${source.origin}: tensor '${name}' has shape ${shapeString(info.shape)} but ${why} implies ${shapeString(expectedShape)}`);
  }
  return checkFinite(source.origin, name, source.readFloat32(name));
}

/**
 * Returns `values` after checking every one is finite; throws naming the tensor, how many NaN and
 * infinite values it holds and where the first is. A NaN weight makes every logit NaN (the
 * answer silently comes out empty), an infinite one soon does: such a checkpoint is refused.
 */
export function checkFinite(origin: string, name: string, values: Float32Array): Float32Array {
  let first = -1;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v - v !== 0) { // NaN and +-Infinity only
      first = i;
      break;
    }
  }
  if (first < 0) return values;
  let nan = 0;
  let inf = 0;
  for (let i = first; i < values.length; i++) {
    if (Number.isNaN(values[i])) nan++;
    else if (!Number.isFinite(values[i])) inf++;
  }
  throw new Error(`${origin}: tensor '${name}' holds ${nan} NaN and ${inf} infinite value(s) (the first at index ${first}): the checkpoint is corrupt, refused`);
}

/** The tensor's stored bytes and dtype: `source.readRaw` when present, else float32 bytes. */
export function readRaw(source: WeightSource, name: string): RawTensor {
  if (source.readRaw) return source.readRaw(name);
  const info = source.info(name);
  if (!info) throw missingTensorError(source.origin, name);
  return { dtype: 'F32', shape: [...info.shape], bytes: float32ToBytesLE(source.readFloat32(name)) };
}

/**
 * Serves another source's tensors rounded to half precision, as F16 bytes: what a half-precision
 * checkpoint of the same weights would hold (the values are rounded once, so every consumer sees
 * the same ones). For tests and benchmarks of fp16 paths.
 */
export function asFloat16Source(inner: WeightSource): WeightSource {
  const raw = (name: string): RawTensor => {
    const info = inner.info(name);
    if (!info) throw missingTensorError(inner.origin, name);
    return { dtype: 'F16', shape: [...info.shape], bytes: uint16ToBytesLE(float32ToF16Bits(inner.readFloat32(name))) };
  };
  return {
    origin: `${inner.origin} (as fp16)`,
    names: () => inner.names(),
    info: (name) => {
      const i = inner.info(name);
      return i ? { ...i, dtype: 'F16' } : undefined;
    },
    readFloat32: (name) => f16BytesToFloat32(raw(name).bytes),
    readRaw: raw,
    close: () => inner.close(),
  };
}
