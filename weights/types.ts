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

export interface WeightSource {
  /** Human-readable origin, used in error messages (a folder or file path). */
  readonly origin: string;
  /** Canonical names of every tensor, sorted. */
  names(): string[];
  /** Metadata of one tensor, or undefined when absent. */
  info(name: string): TensorInfo | undefined;
  /** The tensor converted to float32 (a fresh array the caller may keep). Throws a clear error naming the tensor when it is missing. */
  readFloat32(name: string): Float32Array;
  /** Releases file handles. */
  close(): void;
}
