// Public API of the weights layer: open a model folder (safetensors, sharded safetensors or a
// tfjs weights manifest) as a WeightSource of canonical tensor names, read tensors checked
// against the config, and convert to tfjs weights.
export type { RawTensor, StorageDtype, TensorInfo, WeightSource } from './types.js';
export { openWeights, openSafetensors, openShardedSafetensors, SafetensorsSource, INDEX_FILE, SINGLE_FILE, TFJS_MANIFEST } from './hf-folder.js';
export type { TensorLocation } from './hf-folder.js';
export { asFloat16Source, checkFinite, missingTensorError, readChecked, readRaw } from './source.js';
export { CANONICAL_PREFIX, canonicalNameMap, toCanonicalName, toNewSchemeName } from './names.js';
export { SafetensorsFile, parseSafetensorsHeader, MAX_HEADER_BYTES } from './safetensors.js';
export { BytesSafetensorsSource } from './safetensors-bytes.js';
export type { SafetensorsEntry, SafetensorsHeader } from './safetensors.js';
export { openTfjsWeights, TfjsWeightsSource, writeTfjsWeights, DEFAULT_SHARD_BYTES } from './tfjs-format.js';
export type { TfjsWeightEntry, TfjsWeightsJson, WriteTfjsOptions, WriteTfjsResult } from './tfjs-format.js';
export {
  DTYPE_BYTES, bytesToFloat32, f16BytesToFloat32, f16WordsToFloat32, bf16BytesToFloat32, f32BytesToFloat32, f16BitsToNumber,
  f32BitsToF16Bits, numberToF16Bits, float32ToF16Bits, exactF16Words, float32ToBytesLE, uint16FromBytesLE, uint16ToBytesLE,
} from './dtype.js';
export {
  QK, PACKED_FORMATS, paddedCols, packedBytes, quantizeMatrix, dequantizeMatrix, quantizeActivations16, referenceMatmul, checkQuantizedMatrix,
} from './quantized.js';
export type { WeightFormat, PackedFormat, QuantizedMatrix } from './quantized.js';
export { QuantizedFile, writeQuantizedFile, DEFAULT_HEADER_RESERVE, META_QUANTIZED, META_FORMAT, META_SOURCE } from './quantized-file.js';
export type { QuantizedFileInfo, WriteQuantizedOptions } from './quantized-file.js';
