// The kernel module's entry: packed-weight matmuls and decode attention (one wasm module).
export * from './matmul';
export * from './attention';
export * from './quantize';
