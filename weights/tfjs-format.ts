// tfjs weights manifests, as @tensorflow/tfjs-converter and tf.io write them:
//
//   model.json: { ..., weightsManifest: [ { paths: ['group1-shard1of2.bin', ...],
//                                           weights: [ { name, shape, dtype: 'float32',
//                                                        quantization?: {dtype, scale?, min?} } ] } ] }
//
// Within a group, the weights' bytes are concatenated in manifest order across the group's shard
// files (a weight may straddle two shards), little-endian, no padding. Quantizations:
//   float16       IEEE binary16 (2 bytes/value)
//   uint8/uint16  value = q * scale + min (affine; 1 or 2 bytes/value)
// The reader is a WeightSource (names of either Hugging Face scheme mapped to canonical); the
// writer streams any WeightSource tensor by tensor into a manifest + shards.
import type { io } from '@tensorflow/tfjs-core';
import { parseStrictJson } from './strict-json.js';
import { checkRegularWeightFile } from './safetensors.js';
import { checkInsideFolder } from './contained.js';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { bytesToFloat32, f16BytesToFloat32, f32BytesToFloat32, float32ToBytesLE, float32ToF16Bits, uint16FromBytesLE, uint16ToBytesLE } from './dtype.js';
import { elementCount, readExactly } from './file-io.js';
import { canonicalNameMap, toCanonicalName } from './names.js';
import { missingTensorError, readRaw } from './source.js';
import type { RawTensor, TensorInfo, WeightSource } from './types.js';

/** A manifest entry; tfjs-converter also writes `original_dtype` in `quantization`. */
export type TfjsWeightEntry = io.WeightsManifestEntry & { quantization?: { original_dtype?: string } };

/** The model.json fields we read or write (tfjs-converter's other fields are ignored). */
export interface TfjsWeightsJson extends Partial<Omit<io.ModelJSON, 'weightsManifest'>> {
  weightsManifest: io.WeightsManifestConfig;
}

type Storage = 'float32' | 'float16' | 'uint8' | 'uint16';
const STORAGE_BYTES: Record<Storage, number> = { float32: 4, float16: 2, uint8: 1, uint16: 2 };

/** One weight's place in its group's concatenated bytes. */
interface Layout {
  stored: string;
  shape: number[];
  storage: Storage;
  scale: number;
  min: number;
  group: number;
  offset: number;
  byteLength: number;
}

/** A shard file and where it starts in its group's concatenated bytes. */
interface Shard { path: string; start: number; size: number }

const MAX_MANIFEST_BYTES = 256 * 1024 * 1024;

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** Validates one manifest entry -> its storage kind, affine parameters and byte length. */
function parseEntry(raw: unknown, where: string, fail: (msg: string) => never): Omit<Layout, 'group' | 'offset'> {
  if (!isObject(raw) || typeof raw.name !== 'string') fail(`${where}: expected an object with a string 'name'`);
  const { name, shape, dtype, quantization } = raw as Record<string, unknown> & { name: string };
  const at = `${where} ('${name}')`;
  if (!Array.isArray(shape) || !shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)) {
    fail(`${at}: invalid shape ${JSON.stringify(shape)} (dimensions must be non-negative integers)`);
  }
  if (dtype !== 'float32') {
    fail(`${at}: unsupported dtype ${JSON.stringify(dtype)} (supported: 'float32', optionally quantized as float16, uint8 or uint16)`);
  }
  let storage: Storage = 'float32';
  let scale = 1;
  let min = 0;
  if (quantization !== undefined) {
    if (!isObject(quantization)) fail(`${at}: quantization is not an object`);
    const q = quantization as Record<string, unknown>;
    if (q.dtype === 'float16') {
      storage = 'float16';
    } else if (q.dtype === 'uint8' || q.dtype === 'uint16') {
      if (typeof q.scale !== 'number' || typeof q.min !== 'number' || !Number.isFinite(q.scale) || !Number.isFinite(q.min)) {
        fail(`${at}: ${q.dtype} quantization needs finite numeric 'scale' and 'min'`);
      }
      storage = q.dtype;
      scale = q.scale as number;
      min = q.min as number;
    } else {
      fail(`${at}: unsupported quantization dtype ${JSON.stringify(q.dtype)} (supported: float16, uint8, uint16)`);
    }
  }
  const count = elementCount(shape as number[]);
  if (typeof count === 'string') fail(`${at}: ${count}`);
  return { stored: name, shape: [...(shape as number[])], storage, scale, min, byteLength: (count as number) * STORAGE_BYTES[storage] };
}

/** A tfjs weights manifest (model.json + shards) as a WeightSource; data read on demand. */
export class TfjsWeightsSource implements WeightSource {
  readonly origin: string;
  private readonly layouts = new Map<string, Layout>();
  private readonly groups: Shard[][] = [];

  constructor(manifestPath: string) {
    this.origin = manifestPath;
    const fail: (msg: string) => never = (msg) => { throw new Error(`${manifestPath}: ${msg}`); };
    checkRegularWeightFile(manifestPath);
    const size = statSync(manifestPath).size;
    if (size > MAX_MANIFEST_BYTES) fail(`${size} bytes, too large for a model.json`);
    const json = parseStrictJson(readFileSync(manifestPath, 'utf8'), manifestPath);
    const manifest = isObject(json) ? json.weightsManifest : undefined;
    if (!Array.isArray(manifest)) fail(`no 'weightsManifest' array: not a tfjs model.json`);
    const dir = dirname(manifestPath);
    const all: Layout[] = [];
    (manifest as unknown[]).forEach((group, g) => {
      const where = `weightsManifest[${g}]`;
      if (!isObject(group) || !Array.isArray(group.paths) || !Array.isArray(group.weights)) fail(`${where}: expected {paths: string[], weights: [...]}`);
      const { paths, weights } = group as { paths: unknown[]; weights: unknown[] };
      let offset = 0;
      weights.forEach((w, i) => {
        const entry = parseEntry(w, `${where}.weights[${i}]`, fail);
        all.push({ ...entry, group: g, offset });
        offset += entry.byteLength;
      });
      this.groups.push(this.shards(dir, paths, offset, where, fail));
    });
    const canonical = canonicalNameMap(all.map((l) => l.stored), manifestPath);
    const byStored = new Map(all.map((l) => [l.stored, l]));
    for (const [c, stored] of canonical) this.layouts.set(c, byStored.get(stored) as Layout);
  }

  /** Checks the group's shard files exist and together hold exactly `implied` bytes. */
  private shards(dir: string, paths: unknown[], implied: number, where: string, fail: (msg: string) => never): Shard[] {
    const shards: Shard[] = [];
    const missing: string[] = [];
    let start = 0;
    for (const p of paths) {
      if (typeof p !== 'string' || p === '' || isAbsolute(p) || p.split(/[\\/]/).includes('..')) {
        fail(`${where}.paths: ${JSON.stringify(p)} is not a file name inside the model folder`);
      }
      const path = join(dir, p as string);
      if (!existsSync(path)) { missing.push(p as string); continue; }
      checkInsideFolder(dir, path, `${this.origin}: ${where}.paths: '${p as string}'`);
      const size = statSync(path).size;
      shards.push({ path, start, size });
      start += size;
    }
    if (missing.length > 0) fail(`${where}: shard files missing from ${dir}: ${missing.join(', ')}`);
    if (start !== implied) {
      fail(`${where}: shard files hold ${start} bytes but the manifest's weights need ${implied} (${start < implied ? 'shard too short: truncated' : 'extra bytes'})`);
    }
    return shards;
  }

  names(): string[] {
    return [...this.layouts.keys()].sort();
  }

  info(name: string): TensorInfo | undefined {
    const l = this.layouts.get(toCanonicalName(name));
    return l && { name: toCanonicalName(name), dtype: l.storage === 'float16' ? 'F16' : 'F32', shape: [...l.shape] };
  }

  /** The weight's stored bytes, read across the group's shard files. */
  private readStored(l: Layout): Uint8Array {
    const out = new Uint8Array(l.byteLength);
    const end = l.offset + l.byteLength;
    for (const s of this.groups[l.group]) {
      const from = Math.max(l.offset, s.start);
      const to = Math.min(end, s.start + s.size);
      if (from >= to) continue;
      checkRegularWeightFile(s.path);
      const fd = openSync(s.path, 'r'); // opened per read: a 7B model has thousands of 4 MiB shards
      try {
        readExactly(fd, s.path, from - s.start, to - from, out, from - l.offset);
      } finally {
        closeSync(fd);
      }
    }
    return out;
  }

  private require(name: string): Layout {
    const l = this.layouts.get(toCanonicalName(name));
    if (!l) throw missingTensorError(this.origin, name);
    return l;
  }

  readFloat32(name: string): Float32Array {
    const l = this.require(name);
    const bytes = this.readStored(l);
    if (l.storage === 'float32') return f32BytesToFloat32(bytes);
    if (l.storage === 'float16') return f16BytesToFloat32(bytes);
    const q = l.storage === 'uint8' ? bytes : uint16FromBytesLE(bytes);
    const out = new Float32Array(q.length);
    for (let i = 0; i < q.length; i++) out[i] = q[i] * l.scale + l.min; // as tf.io.decodeWeights
    return out;
  }

  /** float32 and float16 weights as stored; affine-quantized ones dequantized to F32. */
  readRaw(name: string): RawTensor {
    const l = this.require(name);
    if (l.storage === 'float32' || l.storage === 'float16') {
      return { dtype: l.storage === 'float16' ? 'F16' : 'F32', shape: [...l.shape], bytes: this.readStored(l) };
    }
    return { dtype: 'F32', shape: [...l.shape], bytes: float32ToBytesLE(this.readFloat32(name)) };
  }

  close(): void {
    // Nothing held open: shards are opened per read.
  }
}

/** Opens a tfjs model.json (weights manifest) as a WeightSource. */
export function openTfjsWeights(manifestPath: string): TfjsWeightsSource {
  return new TfjsWeightsSource(manifestPath);
}

// ---- Writer ----

export interface WriteTfjsOptions {
  /** Store float16 halves (`quantization: {dtype: 'float16'}`), round to nearest even. Default false. */
  float16?: boolean;
  /** Shard file size in bytes (the last shard is smaller). Default 4 MiB, as tfjs-converter. */
  shardBytes?: number;
  /** Called after each tensor is written (for progress bars). */
  onTensor?: (name: string, done: number, total: number) => void;
}

export interface WriteTfjsResult {
  manifestPath: string;
  shardPaths: string[];
  tensors: number;
  bytes: number;
}

export const DEFAULT_SHARD_BYTES = 4 * 1024 * 1024;

/** Writes a byte stream into consecutive shard files of `shardBytes` each. */
class ShardWriter {
  private index = 0;
  private fd: number | undefined;
  private used = 0;
  constructor(private readonly paths: string[], private readonly shardBytes: number) {}

  write(bytes: Uint8Array): void {
    let pos = 0;
    while (pos < bytes.length) {
      if (this.fd === undefined || this.used === this.shardBytes) {
        this.close();
        this.fd = openSync(this.paths[this.index++], 'w');
        this.used = 0;
      }
      const n = Math.min(bytes.length - pos, this.shardBytes - this.used);
      let done = 0;
      while (done < n) done += writeSync(this.fd, bytes, pos + done, n - done);
      pos += n;
      this.used += n;
    }
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/** One tensor's bytes in the output storage (F32 or F16), checking float16 overflow. */
function encode(source: WeightSource, name: string, float16: boolean): Uint8Array {
  const raw = readRaw(source, name);
  if (!float16) return raw.dtype === 'F32' ? raw.bytes : float32ToBytesLE(bytesToFloat32(raw.dtype, raw.bytes));
  if (raw.dtype === 'F16') return raw.bytes;
  const values = bytesToFloat32(raw.dtype, raw.bytes);
  const halves = float32ToF16Bits(values);
  for (let i = 0; i < halves.length; i++) {
    if ((halves[i] & 0x7fff) === 0x7c00 && Number.isFinite(values[i])) {
      throw new Error(`${source.origin}: tensor '${name}' value ${values[i]} at index ${i} overflows float16 (max 65504): convert without float16`);
    }
  }
  return uint16ToBytesLE(halves);
}

/**
 * Writes every tensor of `source` to `outDir` as `group1-shard{i}of{N}.bin` files plus a
 * `model.json` weights manifest (written last, so a crashed run leaves no valid-looking folder).
 * Streams tensor by tensor: memory holds one tensor at a time.
 */
export function writeTfjsWeights(source: WeightSource, outDir: string, options: WriteTfjsOptions = {}): WriteTfjsResult {
  const float16 = options.float16 ?? false;
  const shardBytes = options.shardBytes ?? DEFAULT_SHARD_BYTES;
  if (!Number.isSafeInteger(shardBytes) || shardBytes <= 0) throw new Error(`shardBytes must be a positive integer, got ${shardBytes}`);
  const names = source.names();
  const weights: TfjsWeightEntry[] = [];
  let total = 0;
  for (const name of names) {
    const info = source.info(name);
    if (!info) throw missingTensorError(source.origin, name);
    const entry: TfjsWeightEntry = { name, shape: [...info.shape], dtype: 'float32' };
    if (float16) entry.quantization = { dtype: 'float16', original_dtype: 'float32' };
    weights.push(entry);
    total += (elementCount(info.shape) as number) * (float16 ? 2 : 4);
  }
  const count = Math.ceil(total / shardBytes);
  const files = Array.from({ length: count }, (_, i) => `group1-shard${i + 1}of${count}.bin`);
  mkdirSync(outDir, { recursive: true });
  const manifestPath = join(outDir, 'model.json');
  rmSync(manifestPath, { force: true }); // an old manifest must not describe half-written shards
  const writer = new ShardWriter(files.map((f) => join(outDir, f)), shardBytes);
  try {
    names.forEach((name, i) => {
      const bytes = encode(source, name, float16);
      const expected = (elementCount(weights[i].shape) as number) * (float16 ? 2 : 4);
      if (bytes.length !== expected) {
        throw new Error(`${source.origin}: tensor '${name}' gave ${bytes.length} bytes, its shape [${weights[i].shape.join(',')}] needs ${expected}`);
      }
      writer.write(bytes);
      options.onTensor?.(name, i + 1, names.length);
    });
  } finally {
    writer.close();
  }
  const json: TfjsWeightsJson = { format: 'illava-weights', generatedBy: 'illava', weightsManifest: [{ paths: files, weights }] };
  writeFileSync(manifestPath, JSON.stringify(json));
  return { manifestPath, shardPaths: files.map((f) => join(outDir, f)), tensors: names.length, bytes: total };
}
