// tfjs building blocks of the vision tower and the decoder. Each takes its weights as tensors
// (already in [in, out] layout) and owns them until dispose().
export * from './activations.js';
export * from './attention.js';
export * from './clip-attention.js';
export * from './kv-cache.js';
export * from './linear.js';
export * from './llama-attention.js';
export * from './mask.js';
export * from './mlp.js';
export * from './norm.js';
export * from './patch-embed.js';
export * from './rope.js';
export * from './wasm-memory.js';
