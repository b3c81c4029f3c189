// The tiny-llava-onevision modules and reference arrays, shared by the OneVision tests.
import { readLlavaConfig } from '../../src/config.js';
import { loadModules, type LoadedModules } from '../../src/load.js';
import { openWeights } from '../../weights/index.js';
import { onevisionArray, TINY_ONEVISION_DIR } from './fixture.js';

/** SigLIP tower, projector (with image_newline) and Qwen2 decoder of the fixture, float32 on the current backend. */
export function loadOnevisionModules(): LoadedModules {
  const source = openWeights(TINY_ONEVISION_DIR);
  try {
    return loadModules(source, readLlavaConfig(TINY_ONEVISION_DIR));
  } finally {
    source.close();
  }
}

export function disposeModules(modules: LoadedModules | undefined): void {
  modules?.vision.dispose();
  modules?.projector.dispose();
  modules?.decoder.dispose();
}

/** A float32 array of the fixture slice. */
export function onevisionFloats(name: string): Float32Array {
  const { data } = onevisionArray(name);
  if (!(data instanceof Float32Array)) throw new Error(`${name} is not float32`);
  return data;
}
