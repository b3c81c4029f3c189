// Packed (f16 / q8_0 / q4_0) weights outside the tfjs heap, with our own WebAssembly SIMD kernels.
export { WeightArena, MEMORY_LIMIT, type ArenaSlice } from './arena.js';
export { KernelPool, type KernelPoolOptions } from './pool.js';
export { PackedRuntime, PANEL_MIN_ROWS } from './runtime.js';
export { PackedLinear, PACKED_MATMUL, PACKED_BACKENDS, type PackedLinearOptions } from './packed-linear.js';
export { KERNEL_URL, RELAXED_KERNEL_URL, kernelModule, kernelVariant, instantiateKernels, useKernelModule, type KernelExports, type KernelVariant } from './kernel.js';
export { PackedGatedMlp, PackedTwoLayerMlp } from './packed-mlp.js';
export { ArenaKV } from './arena-kv.js';
