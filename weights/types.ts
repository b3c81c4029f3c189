// The contract between weight files and the model: a read-only map from canonical tensor names
// to float32 data. Nothing here depends on tfjs tensors, so weights can stay in host memory
// (and in their storage dtype) until a layer asks for them.

/** Storage dtypes we accept, spelled as in the safetensors header. */
export type StorageDtype = 'F32' | 'F16' | 'BF16';

export interface TensorInfo {
  /** Canonical name (see names.ts): the old llava-hf scheme, e.g. `language_model.model.layers.0.self_attn.q_proj.weight`. */
  name: string;
  dtype: StorageDtype;
  shape: number[];
}

/** A tensor's stored bytes (little-endian, C order) and their dtype, before any conversion. */
export interface RawTensor {
  dtype: StorageDtype;
  shape: number[];
  /** dtype size x product(shape) bytes; a fresh array the caller may keep. */
  bytes: Uint8Array;
}

export interface WeightSource {
  /** Human-readable origin, used in error messages (a folder or file path). */
  readonly origin: string;
  /** Canonical names of every tensor, sorted. */
  names(): string[];
  /** Metadata of one tensor, or undefined when absent. */
  info(name: string): TensorInfo | undefined;
  /** The tensor converted to float32 (a fresh array the caller may keep). Throws a clear error naming the tensor when it is missing. */
  readFloat32(name: string): Float32Array;
  /**
   * The tensor's stored bytes, unconverted (e.g. fp16 kept in host memory and converted per layer).
   * Optional so in-memory test sources need not implement it: use `readRaw(source, name)` from
   * weights/index.ts, which falls back to readFloat32. Throws like readFloat32 when missing.
   */
  readRaw?(name: string): RawTensor;
  /** Releases file handles. */
  close(): void;
}
