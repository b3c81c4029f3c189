// Backend selection at run time.
//
// Preference: 'tensorflow' (native libtensorflow through @tensorflow/tfjs-node-gpu or
// @tensorflow/tfjs-node, when the user installed one), else 'wasm' (XNNPACK, SIMD), else 'cpu'
// (pure JS, ~35x slower than wasm: only for tiny models and tests). None of the native
// packages is a dependency: their install script downloads libtensorflow, which fails offline.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { createRequire } from 'node:module';
import { totalmem } from 'node:os';

/** Every backend name: 'webgpu' and 'webgl' exist in the browser bundle only (src/backend.web.ts). */
export type BackendName = 'tensorflow' | 'wasm' | 'cpu' | 'webgl' | 'webgpu';
/** The backends of this (Node) build. */
export const BACKEND_NAMES: readonly BackendName[] = ['tensorflow', 'wasm', 'cpu'];

export interface BackendChoice {
  /** The backend now active in tfjs. */
  name: BackendName;
  /** How it was chosen, for logs and `illava info`. */
  reason: string;
}

const require = createRequire(import.meta.url);
const NATIVE_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'];

/** Tries to load a native tfjs package; returns why not when it cannot. */
function loadNative(): { loaded: string } | { error: string } {
  const errors: string[] = [];
  for (const pkg of NATIVE_PACKAGES) {
    try {
      require(pkg);
    } catch (e) {
      const msg = e instanceof Error ? e.message.split('\n')[0] : String(e);
      errors.push(`${pkg}: ${msg}`);
      continue;
    }
    // The native package registers 'tensorflow' on the tfjs-core it depends on. If npm
    // installed a second copy of tfjs-core for it, our engine never sees the backend.
    if (tf.findBackendFactory('tensorflow') !== null) return { loaded: pkg };
    errors.push(`${pkg} loaded, but registered its backend with another copy of @tensorflow/tfjs-core (install the version matching @tensorflow/tfjs-core ${tf.version_core})`);
  }
  return { error: errors.join('; ') };
}

let chosen: BackendChoice | undefined;

/**
 * Activates a backend. With no argument, the best one available; with a name, exactly that
 * one or a clear error. Idempotent: a second call with the same request does nothing.
 */
export async function selectBackend(requested?: BackendName | 'auto'): Promise<BackendChoice> {
  const want = requested ?? 'auto';
  if (chosen && (want === 'auto' || want === chosen.name) && tf.getBackend() === chosen.name) return chosen;
  if (want === 'webgl' || want === 'webgpu') throw new Error(`backend '${want}' runs in the browser bundle only (in Node: ${BACKEND_NAMES.join(', ')})`);
  if (want !== 'auto' && !BACKEND_NAMES.includes(want)) {
    throw new Error(`unknown backend '${String(want)}' (expected one of: auto, ${BACKEND_NAMES.join(', ')})`);
  }
  let nativeError = '';
  if (want === 'auto' || want === 'tensorflow') {
    const native = loadNative();
    if ('loaded' in native && (await tf.setBackend('tensorflow'))) {
      chosen = { name: 'tensorflow', reason: `${native.loaded} is installed` };
      return chosen;
    }
    nativeError = 'error' in native ? native.error : 'the tensorflow backend failed to initialise';
    if (want === 'tensorflow') {
      throw new Error(`backend 'tensorflow' is not available: ${nativeError}. Install @tensorflow/tfjs-node (or -node-gpu) with internet access.`);
    }
  }
  for (const name of want === 'auto' ? (['wasm', 'cpu'] as const) : [want]) {
    if (await tf.setBackend(name)) {
      chosen = {
        name,
        reason: want === 'auto' ? `auto: ${name} (no native tensorflow package could be loaded)` : `requested ${name}`,
      };
      return chosen;
    }
    if (want !== 'auto') throw new Error(`backend '${name}' failed to initialise`);
  }
  throw new Error(`no tfjs backend could be initialised (${nativeError})`);
}

/** The active backend, for reports. */
export function activeBackend(): string {
  return tf.getBackend();
}

/** The machine's memory in bytes (the budget of non-wasm backends: src/streamed.ts chooseResidency). */
export function hostMemoryBytes(): number {
  return totalmem();
}
