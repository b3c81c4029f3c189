// The kernel module's entry: packed-weight matmuls (integer and float32-panel paths), attention and quantizers (one wasm module).
export * from './matmul';
export * from './attention';
export * from './quantize';
export * from './panel';
