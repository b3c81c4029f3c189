// Weights of a Hugging Face model folder: a single `model.safetensors`, or shards listed by
// `model.safetensors.index.json` ({"metadata": {...}, "weight_map": {tensor name: shard file}}).
// `openWeights` also recognises a tfjs weights manifest (model.json) written by tfjs-format.ts.
import { parseStrictJson } from './strict-json.js';
import { checkRegularWeightFile } from './safetensors.js';
import { checkInsideFolder } from './contained.js';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { canonicalNameMap, toCanonicalName } from './names.js';
import { SafetensorsFile } from './safetensors.js';
import { missingTensorError } from './source.js';
import { openTfjsWeights } from './tfjs-format.js';
import type { RawTensor, TensorInfo, WeightSource } from './types.js';

export const INDEX_FILE = 'model.safetensors.index.json';
export const SINGLE_FILE = 'model.safetensors';
export const TFJS_MANIFEST = 'model.json';

/** Where one canonical tensor lives: its file and the name it is stored under. */
export interface TensorLocation { file: SafetensorsFile; stored: string }

/** A WeightSource over one or more open safetensors files. */
export class SafetensorsSource implements WeightSource {
  readonly origin: string;
  private readonly files: SafetensorsFile[];
  private readonly locations: Map<string, TensorLocation>;
  private readonly sortedNames: string[];

  constructor(origin: string, files: SafetensorsFile[], locations: Map<string, TensorLocation>) {
    this.origin = origin;
    this.files = files;
    this.locations = locations;
    this.sortedNames = [...locations.keys()].sort();
  }

  names(): string[] {
    return [...this.sortedNames];
  }

  /** Accepts canonical or new-scheme names. */
  private locate(name: string): TensorLocation | undefined {
    return this.locations.get(toCanonicalName(name));
  }

  info(name: string): TensorInfo | undefined {
    const loc = this.locate(name);
    const e = loc?.file.entry(loc.stored);
    return e && { name: toCanonicalName(name), dtype: e.dtype, shape: [...e.shape] };
  }

  readRaw(name: string): RawTensor {
    const loc = this.locate(name);
    const e = loc?.file.entry(loc.stored);
    if (!loc || !e) throw missingTensorError(this.origin, name);
    return { dtype: e.dtype, shape: [...e.shape], bytes: loc.file.readBytes(loc.stored) };
  }

  readFloat32(name: string): Float32Array {
    const loc = this.locate(name);
    if (!loc) throw missingTensorError(this.origin, name);
    return loc.file.readFloat32(loc.stored);
  }

  close(): void {
    for (const f of this.files) f.close();
  }
}

/** One safetensors file as a WeightSource (names of either scheme mapped to canonical). */
export function openSafetensors(path: string): SafetensorsSource {
  const file = SafetensorsFile.open(path);
  try {
    const map = canonicalNameMap(file.names(), path);
    const locations = new Map<string, TensorLocation>([...map].map(([c, stored]) => [c, { file, stored }]));
    return new SafetensorsSource(path, [file], locations);
  } catch (e) {
    file.close();
    throw e;
  }
}

/** Largest index JSON we read (real ones are ~100 KB). */
const MAX_INDEX_BYTES = 64 * 1024 * 1024;

function parseIndex(indexPath: string): Map<string, string> {
  checkRegularWeightFile(indexPath);
  const size = statSync(indexPath).size;
  if (size > MAX_INDEX_BYTES) throw new Error(`${indexPath}: ${size} bytes, too large for a safetensors index`);
  const json = parseStrictJson(readFileSync(indexPath, 'utf8'), indexPath);
  const weightMap = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    throw new Error(`${indexPath}: 'weight_map' is missing or not an object of tensor name -> shard file`);
  }
  const map = new Map<string, string>();
  for (const [name, file] of Object.entries(weightMap)) {
    if (typeof file !== 'string' || file === '') {
      throw new Error(`${indexPath}: weight_map entry '${name}' is ${JSON.stringify(file)}, expected a shard file name`);
    }
    if (isAbsolute(file) || file.split(/[\\/]/).includes('..')) {
      throw new Error(`${indexPath}: weight_map entry '${name}' names '${file}', outside the model folder`);
    }
    map.set(name, file);
  }
  return map;
}

/** Sharded safetensors: `indexPath` is a model.safetensors.index.json; shards sit beside it. */
export function openShardedSafetensors(dir: string, indexPath = join(dir, INDEX_FILE)): SafetensorsSource {
  const weightMap = parseIndex(indexPath);
  const shardNames = [...new Set(weightMap.values())].sort();
  const missing = shardNames.filter((f) => !existsSync(join(dir, f)));
  if (missing.length > 0) {
    throw new Error(`${indexPath}: ${missing.length} of ${shardNames.length} shard files listed in weight_map are missing from ${dir}: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? `, ... (${missing.length - 5} more)` : ''}`);
  }
  for (const f of shardNames) checkInsideFolder(dir, join(dir, f), `${indexPath}: shard '${f}'`);
  const files = new Map<string, SafetensorsFile>();
  try {
    for (const f of shardNames) files.set(f, SafetensorsFile.open(join(dir, f)));
    const locations = new Map<string, TensorLocation>();
    for (const [canonical, stored] of canonicalNameMap(weightMap.keys(), indexPath)) {
      const shard = weightMap.get(stored) as string;
      const file = files.get(shard) as SafetensorsFile;
      if (!file.entry(stored)) {
        throw new Error(`${indexPath}: weight_map puts tensor '${stored}' in '${shard}', but that shard has no such tensor`);
      }
      locations.set(canonical, { file, stored });
    }
    // Tensors present in a shard but absent from weight_map are ignored, as transformers does.
    return new SafetensorsSource(dir, [...files.values()], locations);
  } catch (e) {
    for (const f of files.values()) f.close();
    throw e;
  }
}

/**
 * Opens the weights of a model folder, trying in order: model.safetensors.index.json (sharded),
 * model.safetensors, the only *.safetensors file, model.json (tfjs weights manifest). `dir` may
 * also name a .safetensors file, an index .json or a model.json directly.
 */
export function openWeights(dir: string): WeightSource {
  if (!existsSync(dir)) throw new Error(`${dir}: no such file or directory`);
  if (statSync(dir).isFile()) {
    if (dir.endsWith('.safetensors')) return openSafetensors(dir);
    if (dir.endsWith('.index.json')) return openShardedSafetensors(dirname(dir), dir);
    if (dir.endsWith('.json')) return openTfjsWeights(dir);
    throw new Error(`${dir}: not a weights file (expected .safetensors, ${INDEX_FILE} or ${TFJS_MANIFEST})`);
  }
  const inside = (f: string): string => {
    checkInsideFolder(dir, join(dir, f), join(dir, f));
    return join(dir, f);
  };
  if (existsSync(join(dir, INDEX_FILE))) return openShardedSafetensors(dir, inside(INDEX_FILE));
  if (existsSync(join(dir, SINGLE_FILE))) return openSafetensors(inside(SINGLE_FILE));
  const candidates = readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort();
  if (candidates.length === 1) return openSafetensors(inside(candidates[0]));
  if (candidates.length > 1) {
    throw new Error(`${dir}: ${candidates.length} .safetensors files (${candidates.join(', ')}) but no ${INDEX_FILE} or ${SINGLE_FILE} saying which to use`);
  }
  if (existsSync(join(dir, TFJS_MANIFEST))) return openTfjsWeights(inside(TFJS_MANIFEST));
  throw new Error(`${dir}: no weights found: looked for ${INDEX_FILE}, ${SINGLE_FILE}, a single *.safetensors file and ${TFJS_MANIFEST} (tfjs weights manifest)`);
}
