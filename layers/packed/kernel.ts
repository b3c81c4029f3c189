// The WebAssembly SIMD kernels (kernels/*.ts, built into dist/kernels/kernels.wasm) as typed
// functions. The module imports one shared memory; it is compiled once per thread and
// instantiated once per memory (arena.ts).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Exports of kernels/index.ts; every pointer is a byte offset into the instance's memory. */
export interface KernelExports {
  quantizeRows16(x: number, M: number, Kp: number, xq: number, xs: number): void;
  matmulQ8(xq: number, xs: number, M: number, Kp: number, wq: number, ws: number, n0: number, n1: number, out: number, ldo: number, colScale: number, bias: number): void;
  matmulQ4(xq: number, xs: number, M: number, Kp: number, wq: number, ws: number, n0: number, n1: number, out: number, ldo: number, colScale: number, bias: number): void;
  matmulF16(x: number, M: number, Kp: number, w: number, n0: number, n1: number, out: number, ldo: number, colScale: number, bias: number, scratch: number): void;
  readLoop(p: number, n: number): number;
  quantizeQ8Matrix(src: number, rows: number, Kp: number, dst: number, scales: number): number;
  quantizeQ4Matrix(src: number, rows: number, Kp: number, dst: number, scales: number): number;
  attendDecode(q: number, keys: number, values: number, S: number, cap: number, d: number, group: number, h0: number, h1: number, scores: number, out: number): void;
  attendPrefill(q: number, qRow: number, keys: number, values: number, kvRow: number, kvHead: number, T: number, S: number, d: number, group: number, causal: number, h0: number, h1: number, scores: number, out: number, outRow: number): void;
}

/** Where the built module lies, relative to this file once compiled (dist/layers/packed/ -> dist/kernels/). */
export const KERNEL_URL = new URL('../../kernels/kernels.wasm', import.meta.url);

let compiled: WebAssembly.Module | null = null;

/**
 * Gives the compiled kernels to this thread when they cannot be read from disk (the browser
 * bundle fetches dist/web/kernels.wasm and compiles it: src/browser.ts).
 */
export function useKernelModule(module: WebAssembly.Module): void {
  compiled = module;
}

/** The compiled module (read and compiled once per thread). */
export function kernelModule(): WebAssembly.Module {
  if (compiled) return compiled;
  let bytes: Buffer;
  try {
    bytes = readFileSync(fileURLToPath(KERNEL_URL));
  } catch {
    throw new Error(`packed-weight kernels not found at ${fileURLToPath(KERNEL_URL)}: run 'npm run build' (it compiles kernels/matmul.ts with AssemblyScript)`);
  }
  compiled = new WebAssembly.Module(new Uint8Array(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength));
  return compiled;
}

/** The kernels bound to one memory. */
export function instantiateKernels(memory: WebAssembly.Memory, module: WebAssembly.Module = kernelModule()): KernelExports {
  return new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as KernelExports;
}
