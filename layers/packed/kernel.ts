// The WebAssembly SIMD kernels (kernels/*.ts, built into dist/kernels/kernels.wasm) as typed
// functions. The module imports one shared memory; it is compiled once per thread and
// instantiated once per memory (arena.ts).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';

/** Exports of kernels/index.ts; every pointer is a byte offset into the instance's memory. */
export interface KernelExports {
  quantizeRows16(x: number, M: number, Kp: number, xq: number, xs: number): void;
  matmulQ8(xq: number, xs: number, M: number, Kp: number, wq: number, ws: number, n0: number, n1: number, out: number, ldo: number, colScale: number, bias: number): void;
  matmulQ4(xq: number, xs: number, M: number, Kp: number, wq: number, ws: number, n0: number, n1: number, out: number, ldo: number, colScale: number, bias: number): void;
  matmulF16(x: number, M: number, Kp: number, w: number, n0: number, n1: number, out: number, ldo: number, colScale: number, bias: number): void;
  /** The float32-panel prefill path of every format (format: PANEL_FORMAT); panel: f32 [4][Kp] scratch. */
  matmulPanel(format: number, x: number, M: number, Kp: number, w: number, ws: number, n0: number, n1: number, out: number, ldo: number, colScale: number, bias: number, panel: number): void;
  readLoop(p: number, n: number): number;
  quantizeQ8Matrix(src: number, rows: number, Kp: number, dst: number, scales: number): number;
  quantizeQ4Matrix(src: number, rows: number, Kp: number, dst: number, scales: number): number;
  attendDecode(q: number, keys: number, values: number, S: number, cap: number, d: number, group: number, h0: number, h1: number, scores: number, out: number): void;
  attendPrefill(q: number, qRow: number, keys: number, values: number, kvRow: number, kvHead: number, T: number, S: number, d: number, group: number, causal: number, h0: number, h1: number, scores: number, out: number, outRow: number): void;
}

/** Where the built modules lie, relative to this file once compiled (dist/layers/packed/ -> dist/kernels/). */
export const KERNEL_URL = new URL('../../kernels/kernels.wasm', import.meta.url);
/** The same kernels built with relaxed SIMD (the float32 panels' fused multiply-add: kernels/panel.ts). */
export const RELAXED_KERNEL_URL = new URL('../../kernels/kernels-relaxed.wasm', import.meta.url);

/** 'relaxed': the module with fused multiply-adds; 'plain': SIMD128 only (every engine with SIMD). */
export type KernelVariant = 'relaxed' | 'plain';

let compiled: { module: WebAssembly.Module; variant: KernelVariant } | null = null;

/**
 * Gives the compiled kernels to this thread when they cannot be read from disk (the browser
 * bundle fetches dist/web/kernels(-relaxed).wasm and compiles it: src/browser.ts).
 */
export function useKernelModule(module: WebAssembly.Module, variant: KernelVariant = 'plain'): void {
  compiled = { module, variant };
}

function readKernelFile(url: URL): Uint8Array<ArrayBuffer> {
  try {
    const bytes = readFileSync(fileURLToPath(url));
    return new Uint8Array(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength);
  } catch {
    throw new Error(`packed-weight kernels not found at ${fileURLToPath(url)}: run 'npm run build' (it compiles kernels/*.ts with AssemblyScript)`);
  }
}

/**
 * Which build this process runs: $ILLAVA_KERNELS = 'plain' | 'relaxed' | 'auto' (default: relaxed
 * when the engine validates it). Node 20's V8 has relaxed SIMD behind a flag, which is turned on
 * here before validating (it only adds opcodes; V8 flags are per process, so workers share it).
 */
function chooseVariant(): KernelVariant {
  const wanted = process.env.ILLAVA_KERNELS ?? 'auto';
  if (wanted !== 'auto' && wanted !== 'plain' && wanted !== 'relaxed') throw new Error(`ILLAVA_KERNELS must be auto, plain or relaxed, got '${wanted}'`);
  if (wanted === 'plain') return 'plain';
  try {
    setFlagsFromString('--experimental-wasm-relaxed-simd');
  } catch {
    // an engine without the flag: validate() decides
  }
  if (WebAssembly.validate(readKernelFile(RELAXED_KERNEL_URL))) return 'relaxed';
  if (wanted === 'relaxed') throw new Error('ILLAVA_KERNELS=relaxed: this engine does not run WebAssembly relaxed SIMD');
  return 'plain';
}

/** The compiled module (read and compiled once per thread). */
export function kernelModule(): WebAssembly.Module {
  if (compiled) return compiled.module;
  const variant = chooseVariant();
  const module = new WebAssembly.Module(readKernelFile(variant === 'relaxed' ? RELAXED_KERNEL_URL : KERNEL_URL));
  compiled = { module, variant };
  return module;
}

/** The build kernelModule() runs (for benches' reports). */
export function kernelVariant(): KernelVariant {
  kernelModule();
  return (compiled as { variant: KernelVariant }).variant;
}

/** The kernels bound to one memory. */
export function instantiateKernels(memory: WebAssembly.Memory, module: WebAssembly.Module = kernelModule()): KernelExports {
  return new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as KernelExports;
}
