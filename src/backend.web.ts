/// <reference lib="dom" />
// Backend selection in the browser bundle: replaces src/backend.ts there (package.json "browser"
// field; scripts/build-web.ts bundles with it). Same exports, so llava.ts runs unchanged.
//
// Preference: 'webgpu' (a real GPU with WebGPU enabled), else 'webgl', else 'wasm' (XNNPACK,
// SIMD; the one to use on machines without a GPU: webgl on a software rasteriser is ~15x
// slower), else 'cpu'. A name asks for exactly that backend (the demo's ?backend=).
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import '@tensorflow/tfjs-backend-webgl';
import '@tensorflow/tfjs-backend-webgpu';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import type { BackendChoice, BackendName } from './backend.js';

export type { BackendChoice, BackendName } from './backend.js';

/** The backends of the browser build, in the order 'auto' tries them. */
export const BACKEND_NAMES: readonly BackendName[] = ['webgpu', 'webgl', 'wasm', 'cpu'];

let wasmPrefix: string | undefined;

/**
 * Where tfjs-backend-wasm's .wasm files are served (a URL ending in '/'). Default: the folder of
 * the bundle itself (scripts/build-web.ts copies them next to it). Call before the first load.
 */
export function setWasmFilesUrl(prefix: string): void {
  if (!prefix.endsWith('/')) throw new Error(`the wasm files' URL must end with '/', got '${prefix}'`);
  wasmPrefix = prefix;
}

let chosen: BackendChoice | undefined;

/** What we read of a WebGPU adapter (the DOM typings of this TypeScript do not have WebGPU). */
interface GpuAdapterInfo { vendor?: string; architecture?: string; description?: string; isFallbackAdapter?: boolean }
interface GpuLike { requestAdapter(): Promise<{ info?: GpuAdapterInfo; isFallbackAdapter?: boolean } | null> }

/** Why 'auto' should not use WebGPU here (no adapter, or a software one such as SwiftShader), or undefined. */
async function webgpuUnsuitable(): Promise<string | undefined> {
  const gpu = (navigator as unknown as { gpu?: GpuLike }).gpu;
  if (!gpu) return 'navigator.gpu is absent';
  try {
    const adapter = await gpu.requestAdapter();
    if (!adapter) return 'no adapter';
    const info = adapter.info ?? {};
    const name = [info.vendor, info.architecture, info.description].filter(Boolean).join(' ');
    if (info.isFallbackAdapter || adapter.isFallbackAdapter || /swiftshader|llvmpipe|lavapipe|software/i.test(name)) return `software adapter: ${name.slice(0, 60) || 'fallback'}`;
    return undefined;
  } catch (e) {
    return `requestAdapter failed (${(e as Error).message})`;
  }
}

/** The WebGL renderer when it is a software rasteriser (SwiftShader, llvmpipe), else undefined. */
function softwareWebgl(): string | undefined {
  try {
    const gl = new OffscreenCanvas(1, 1).getContext('webgl2');
    if (!gl) return undefined;
    const info = gl.getExtension('WEBGL_debug_renderer_info');
    const renderer = String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
    return /swiftshader|llvmpipe|software/i.test(renderer) ? renderer : undefined;
  } catch {
    return undefined;
  }
}

export async function selectBackend(requested?: BackendName | 'auto'): Promise<BackendChoice> {
  const want = requested ?? 'auto';
  if (chosen && (want === 'auto' || want === chosen.name) && tf.getBackend() === chosen.name) return chosen;
  if (want !== 'auto' && !BACKEND_NAMES.includes(want)) {
    throw new Error(`unknown backend '${String(want)}' (expected one of: auto, ${BACKEND_NAMES.join(', ')})`);
  }
  setWasmPaths(wasmPrefix ?? new URL('./', import.meta.url).href);
  const failed: string[] = [];
  for (const name of want === 'auto' ? BACKEND_NAMES : [want]) {
    // WebGPU needs an adapter (asking tfjs without one only logs a warning and fails); 'auto'
    // also passes over a software adapter: SwiftShader's WebGPU is ~170x slower than wasm.
    if (name === 'webgpu') {
      const why = want === 'auto' ? await webgpuUnsuitable() : !('gpu' in navigator) ? 'navigator.gpu is absent' : undefined;
      if (why) {
        failed.push(`webgpu (${why})`);
        continue;
      }
    }
    // 'auto' passes over WebGL on a software rasteriser: wasm is ~15x faster there.
    const software = want === 'auto' && name === 'webgl' ? softwareWebgl() : undefined;
    if (software) {
      failed.push(`webgl (software renderer: ${software.slice(0, 60)})`);
      continue;
    }
    let ok = false;
    try {
      ok = await tf.setBackend(name);
    } catch {
      ok = false;
    }
    if (ok) {
      chosen = { name, reason: want === 'auto' ? `auto: ${name}${failed.length ? ` (not available: ${failed.join(', ')})` : ''}` : `requested ${name}` };
      return chosen;
    }
    failed.push(name);
  }
  throw new Error(want === 'auto' ? `no tfjs backend could be initialised (tried ${failed.join(', ')})` : `backend '${want}' failed to initialise in this browser`);
}

export function activeBackend(): string {
  return tf.getBackend();
}

/** The device's memory as the browser reports it (navigator.deviceMemory, GiB, Chrome rounds and caps it at 8), else 4 GiB. */
export function hostMemoryBytes(): number {
  const gib = (navigator as Navigator & { deviceMemory?: number }).deviceMemory;
  return (typeof gib === 'number' && gib > 0 ? gib : 4) * 2 ** 30;
}
