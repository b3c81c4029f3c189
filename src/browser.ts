/// <reference lib="dom" />
// Entry point of the browser bundle (scripts/build-web.ts -> dist/web/illava.browser.js).
//
// The same LlavaModel as in Node, built with LlavaModel.fromParts from a Hugging Face folder read
// over fetch (a URL served statically) or from files the user picked or dropped (File/Blob). Node-only
// modules stay behind the platform seam: the bundle swaps src/backend.ts for src/backend.web.ts
// (package.json "browser"), and every node:* import resolves to a stub that throws naming the
// Node-only call (web/node-stub.cjs), so the Node paths (fromPretrained(dir), worker threads, the
// packed kernels' files, the packed cache) fail clearly instead of half-working.
import { LlavaModel, type LoadOptions } from './llava.js';
import { parseLlavaConfig } from './config.js';
import { LlavaTokenizer } from './tokenizer.js';
import { ImageProcessor, type PreprocessorConfig } from './preprocess.js';
import { ChatTemplate, templateText } from './chat-template.js';
import { BytesSafetensorsSource } from '../weights/safetensors-bytes.js';
import { parseStrictJson } from '../weights/strict-json.js';
import { drawStage, upscale } from './merge-drawing.js';
import type { RgbImage } from './image.js';
import type { MergeReport } from '../merge/index.js';
import { useKernelModule } from '../layers/packed/index.js';
import { checkWeightFormat } from './packing.js';

export { LlavaModel } from './llava.js';
export type { GenerateOptions, GenerateOutput, LoadOptions, StageTimings } from './llava.js';
export { selectBackend, activeBackend, BACKEND_NAMES, setWasmFilesUrl } from './backend.web.js';
export { browserImageToRgb } from './browser-image.js';
export type { BrowserImageInput } from './browser-image.js';
export type { RgbImage } from './image.js';
export { resolveModelMerge } from './merging.js';
export * from '../merge/index.js';

/** A model folder: its URL (ending in '/'), or its files (picked or dropped; matched by file name). */
export type ModelFolder = string | Iterable<File> | ReadonlyMap<string, Blob>;

export interface DownloadProgress {
  file: string;
  /** Bytes of this file received so far, and its size when the server sent one. */
  loaded: number;
  total: number | undefined;
}

export interface BrowserLoadOptions extends LoadOptions {
  /** Called as each file's bytes arrive (the weights are the big one). */
  onDownload?: (p: DownloadProgress) => void;
}

/** Largest JSON file read (tokenizer.json of real models is a few MB). */
const MAX_JSON_BYTES = 256 * 1024 * 1024;

/** Reads named files of one folder; `undefined` for a file the folder does not have. */
interface FolderReader {
  origin: string;
  read(name: string, onProgress?: (p: DownloadProgress) => void): Promise<Uint8Array | undefined>;
}

async function readBody(response: Response, name: string, onProgress?: (p: DownloadProgress) => void): Promise<Uint8Array> {
  const header = response.headers.get('content-length');
  const total = header === null ? undefined : Number(header);
  if (!response.body) return new Uint8Array(await response.arrayBuffer());
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    onProgress?.({ file: name, loaded, total });
  }
  const out = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

function urlReader(base: string): FolderReader {
  const folder = new URL(base.endsWith('/') ? base : `${base}/`, document.baseURI);
  return {
    origin: folder.href,
    async read(name, onProgress) {
      let response: Response;
      try {
        response = await fetch(new URL(name, folder));
      } catch (e) {
        throw new Error(`${folder.href}${name}: fetch failed (${(e as Error).message})`);
      }
      if (response.status === 404) return undefined;
      if (!response.ok) throw new Error(`${folder.href}${name}: HTTP ${response.status} ${response.statusText}`);
      return readBody(response, name, onProgress);
    },
  };
}

function blobReader(files: Iterable<File> | ReadonlyMap<string, Blob>): FolderReader {
  const byName = new Map<string, Blob>();
  const entries: Iterable<[string, Blob]> = files instanceof Map ? files : [...(files as Iterable<File>)].map((f) => [f.name, f]);
  for (const [name, blob] of entries) {
    const base = name.split('/').pop() ?? name;
    if (byName.has(base)) throw new Error(`model files: '${base}' given twice`);
    byName.set(base, blob);
  }
  return {
    origin: 'the files given',
    async read(name, onProgress) {
      const blob = byName.get(name);
      if (!blob) return undefined;
      const bytes = new Uint8Array(await blob.arrayBuffer());
      onProgress?.({ file: name, loaded: bytes.length, total: bytes.length });
      return bytes;
    },
  };
}

/** `<folder URL><name>`, or `the files given: <name>`, in messages. */
function fileLabel(folder: FolderReader, name: string): string {
  return `${folder.origin}${folder.origin.endsWith('/') ? '' : ': '}${name}`;
}

async function readJson(folder: FolderReader, name: string, required: boolean): Promise<Record<string, unknown> | undefined> {
  const bytes = await folder.read(name);
  const label = fileLabel(folder, name);
  if (!bytes) {
    if (required) throw new Error(`${label}: file not found`);
    return undefined;
  }
  if (bytes.length > MAX_JSON_BYTES) throw new Error(`${label}: ${bytes.length} bytes, over the ${MAX_JSON_BYTES}-byte limit`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new Error(`${label}: not valid UTF-8`);
  }
  const json = parseStrictJson(text, label);
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error(`${label}: not a JSON object`);
  return json as Record<string, unknown>;
}

/** model.safetensors, or model.safetensors.index.json and its shards, as one in-memory source. */
async function readWeights(folder: FolderReader, onDownload?: (p: DownloadProgress) => void): Promise<BytesSafetensorsSource> {
  const index = await readJson(folder, 'model.safetensors.index.json', false);
  const files = new Map<string, Uint8Array>();
  if (index) {
    const weightMap = index.weight_map;
    if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
      throw new Error(`${folder.origin}: model.safetensors.index.json: 'weight_map' is missing or not an object of tensor name -> shard file`);
    }
    const shards = new Set(Object.values(weightMap as Record<string, unknown>));
    for (const shard of shards) {
      if (typeof shard !== 'string' || shard === '' || shard.includes('/') || shard.includes('\\')) {
        throw new Error(`${folder.origin}: model.safetensors.index.json names shard ${JSON.stringify(shard)}, not a file of the folder`);
      }
      const bytes = await folder.read(shard, onDownload);
      if (!bytes) throw new Error(`${folder.origin}: shard '${shard}' (model.safetensors.index.json) not found`);
      files.set(shard, bytes);
    }
  } else {
    const bytes = await folder.read('model.safetensors', onDownload);
    if (!bytes) throw new Error(`${folder.origin}: neither model.safetensors nor model.safetensors.index.json found`);
    files.set('model.safetensors', bytes);
  }
  return new BytesSafetensorsSource(folder.origin, files);
}

let kernelsUrl: string | undefined;

/**
 * Where kernels.wasm (our AssemblyScript kernels of the packed formats) is served; default: next
 * to the bundle. Its relaxed-SIMD build is looked for beside it (the same name with -relaxed).
 */
export function setKernelsUrl(url: string): void {
  kernelsUrl = url;
}

let kernelsLoaded: Promise<void> | undefined;

async function fetchBytes(url: string): Promise<ArrayBuffer | null> {
  const response = await fetch(url);
  return response.ok ? response.arrayBuffer() : null;
}

/**
 * Fetches and compiles the kernels once: the relaxed-SIMD build when the browser validates it
 * (fused multiply-adds in the prefill panels), else the plain one. Their memories are shared, so
 * the page must be cross-origin isolated.
 */
function loadPackedKernels(): Promise<void> {
  if (!globalThis.crossOriginIsolated) {
    return Promise.reject(new Error('packed weight formats (f16, q8_0, q4_0) need a cross-origin isolated page (serve it with the headers Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp): their kernels use shared WebAssembly memory'));
  }
  kernelsLoaded ??= (async () => {
    const url = kernelsUrl ?? new URL('./kernels.wasm', import.meta.url).href;
    const relaxed = await fetchBytes(url.replace(/\.wasm$/, '-relaxed.wasm')).catch(() => null);
    if (relaxed && WebAssembly.validate(relaxed)) {
      useKernelModule(await WebAssembly.compile(relaxed), 'relaxed');
      return;
    }
    const plain = await fetchBytes(url);
    if (!plain) throw new Error(`${url}: not served (the packed-format kernels)`);
    useKernelModule(await WebAssembly.compile(plain), 'plain');
  })();
  kernelsLoaded.catch(() => { kernelsLoaded = undefined; });
  return kernelsLoaded;
}

/**
 * Loads a LLaVA-1.5 Hugging Face folder into the page. Weights are float32 tensors of the chosen
 * backend (options.backend: 'auto' tries webgpu, webgl, wasm, cpu), or with weightFormat f16 /
 * q8_0 / q4_0 packed for our AssemblyScript kernels (wasm and cpu backends, one thread, in a
 * cross-origin isolated page); threads: 2 and the packed cache are Node-only.
 */
export async function loadLlava(from: ModelFolder, options: BrowserLoadOptions = {}): Promise<LlavaModel> {
  if ((options.threads ?? 1) !== 1) throw new Error('threads: 2 uses Node worker threads; the browser build runs on one thread');
  const decoderFormat = checkWeightFormat(options.weightFormat ?? 'f32', 'weightFormat');
  const visionFormat = checkWeightFormat(options.visionWeightFormat ?? decoderFormat, 'visionWeightFormat');
  if (decoderFormat === 'auto' || visionFormat === 'auto') throw new Error("weightFormat 'auto' is Node's choice by machine memory: in the page name one of f32, f16, q8_0, q4_0");
  if (decoderFormat !== 'f32' || visionFormat !== 'f32') await loadPackedKernels();
  const folder = typeof from === 'string' ? urlReader(from) : blobReader(from);
  const config = parseLlavaConfig(await readJson(folder, 'config.json', true));
  const tokenizerConfig = (await readJson(folder, 'tokenizer_config.json', false)) ?? {};
  const tokenizerJson = await readJson(folder, 'tokenizer.json', true);
  const tokenizer = LlavaTokenizer.fromJson(tokenizerJson ?? {}, tokenizerConfig, fileLabel(folder, 'tokenizer.json'));
  const preprocessor = await readJson(folder, 'preprocessor_config.json', true);
  let imageProcessor: ImageProcessor;
  try {
    imageProcessor = ImageProcessor.fromConfig((preprocessor ?? {}) as PreprocessorConfig);
  } catch (e) {
    throw new Error(`${(e as Error).message} in '${fileLabel(folder, 'preprocessor_config.json')}'`);
  }
  const templateJson = await readJson(folder, 'chat_template.json', false);
  const template = templateText(templateJson?.chat_template ?? tokenizerConfig.chat_template, folder.origin);
  const source = await readWeights(folder, options.onDownload);
  try {
    const model = await LlavaModel.fromParts(
      { name: folder.origin, config, source, tokenizer, imageProcessor },
      { ...options, threads: 1, weightFormat: decoderFormat, visionWeightFormat: visionFormat, quantizedCache: false },
    );
    model.chatTemplate = template === undefined ? undefined : new ChatTemplate(template, folder.origin);
    return model;
  } finally {
    source.close();
  }
}

export interface MergePicture {
  title: string;
  /** side x side RGBA pixels, for a canvas's ImageData. */
  side: number;
  rgba: Uint8ClampedArray;
}

/**
 * The drawing of `illava visualize` for one image: the preprocessed image (`resized`, e.g.
 * imageProcessor.preprocess(rgb).resized) at `scale`, then one picture per merge step of `report`
 * (a generate() with merge `{ ...resolveModelMerge(preset, model.config), trackSources: true }`).
 */
export function mergePictures(resized: RgbImage, patchSize: number, report: MergeReport, scale = 4): MergePicture[] {
  const size = resized.width;
  const grid = size / patchSize;
  const side = size * scale;
  const base = upscale(resized, scale);
  const identity = Int32Array.from({ length: grid * grid }, (_, i) => i);
  const steps: Array<{ title: string; map: Int32Array }> = [{ title: `input: ${grid}x${grid} patches of ${patchSize} px`, map: identity }];
  let previous = grid * grid;
  for (const s of report.stages ?? []) {
    if (!s.patchToToken) throw new Error('mergePictures: the merge report has no patch -> token maps (generate with trackSources: true)');
    steps.push({ title: `${s.stage === 'vision' ? 'vision' : 'LLM'} layer ${s.layer}: ${previous} -> ${s.tokens} tokens`, map: s.patchToToken });
    previous = s.tokens;
  }
  return steps.map((st) => ({ title: st.title, side, rgba: new Uint8ClampedArray(drawStage(base, side, grid, scale, st.map).rgba.buffer) }));
}
