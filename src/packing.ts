// Weight formats of a model: which layers are packed (f16 / q8_0 / q4_0, layers/packed/), and the
// packed cache on disk that spares a second load of a 7B the quantization.
//
// Formats: 'f32' keeps every weight a float32 tensor (the reference); a packed format packs every
// linear layer of the decoder and lm_head (`weightFormat`) and of the vision tower and projector
// (`visionWeightFormat`, default: the same). Embedding table, norms, biases, patch/position
// embeddings stay float32. 'auto' is f32 when the float32 model fits the backend (chooseResidency
// says resident) or the backend has no packed kernel, else q8_0.
//
// The cache is one safetensors file per format (weights/quantized-file.ts) in a cache folder,
// named after the model folder, holding every packed matrix under its loader key, stamped with a
// fingerprint of the model's weight files (names, sizes, modification times): a stale file is
// ignored and rewritten.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { PACKED_MATMUL, type PackedLinear } from '../layers/packed/index.js';
import { PACKED_FORMATS, QuantizedFile, writeQuantizedFile, type PackedFormat, type WeightFormat } from '../weights/index.js';
import type { LlavaConfig } from './config.js';
import { chooseResidency } from './streamed.js';

export type WeightFormatOption = WeightFormat | 'auto';
export const WEIGHT_FORMATS: readonly WeightFormat[] = ['f32', 'f16', 'q8_0', 'q4_0'];

export function checkWeightFormat(value: unknown, what: string): WeightFormatOption {
  if (value === 'auto' || (WEIGHT_FORMATS as readonly unknown[]).includes(value)) return value as WeightFormatOption;
  throw new Error(`${what} must be auto, f32, f16, q8_0 or q4_0, got ${JSON.stringify(value) ?? String(value)}`);
}

/** The formats a load uses, and why. */
export interface WeightFormats {
  decoder: WeightFormat;
  vision: WeightFormat;
  reason: string;
}

export function resolveWeightFormats(config: LlavaConfig, backend: string, decoder: WeightFormatOption, vision: WeightFormatOption | undefined, releaseWeights: boolean): WeightFormats {
  let reason = 'requested';
  let d = decoder;
  if (d === 'auto') {
    const fits = chooseResidency(config, backend, { releaseWeights });
    const kernel = tf.getKernel(PACKED_MATMUL, backend) !== undefined;
    d = fits.residency === 'resident' || !kernel ? 'f32' : 'q8_0';
    reason = d === 'f32' ? (kernel ? fits.reason : `${backend} has no packed kernel`) : `${fits.reason}: packed as q8_0`;
  }
  const v = vision === undefined || vision === 'auto' ? d : vision;
  return { decoder: d, vision: v, reason };
}

export const packed = (f: WeightFormat): PackedFormat | null => (f === 'f32' ? null : f);

/** Default cache folder: $ILLAVA_CACHE_DIR, else ~/.cache/illava. */
export function defaultCacheDir(): string {
  return process.env.ILLAVA_CACHE_DIR || join(homedir(), '.cache', 'illava');
}

/** A fingerprint of a model folder's weight files: names, sizes and modification times. */
export function weightFingerprint(dir: string): string {
  const abs = resolve(dir);
  const st = statSync(abs);
  const files = st.isFile() ? [abs] : readdirSync(abs).filter((f) => /\.(safetensors|bin|json)$/.test(f) && !f.startsWith('.')).sort().map((f) => join(abs, f));
  const parts = files.map((f) => {
    const s = statSync(f);
    return `${basename(f)}:${s.size}:${Math.round(s.mtimeMs)}`;
  });
  return `${abs}|${parts.join('|')}`;
}

/** The cache file of `format` for a model: <cacheDir>/<folder name>-<hash of fingerprint's path>-<format>.safetensors. */
export function cachePath(cacheDir: string, name: string, format: PackedFormat): string {
  const hash = createHash('sha256').update(resolve(name)).digest('hex').slice(0, 12);
  return join(cacheDir, `${basename(resolve(name)).replace(/[^A-Za-z0-9._-]/g, '_')}-${hash}-${format}.safetensors`);
}

/** Opens the cache files that exist and match `fingerprint` (others are left to be rewritten). */
export function openPackedCache(cacheDir: string, name: string, formats: readonly PackedFormat[], fingerprint: string): Map<PackedFormat, QuantizedFile> {
  const open = new Map<PackedFormat, QuantizedFile>();
  for (const format of formats) {
    const path = cachePath(cacheDir, name, format);
    if (!existsSync(path)) continue;
    let file: QuantizedFile;
    try {
      file = QuantizedFile.open(path);
    } catch {
      continue; // a damaged cache is rewritten, not fatal
    }
    if (file.source === fingerprint && file.format === format) open.set(format, file);
    else file.close();
  }
  return open;
}

/**
 * Writes the cache file of every format some layer was quantized in at this load (a format read
 * whole from the cache is left alone).
 * Returns the paths written; failures (a read-only folder, a full disk) are returned as warnings.
 */
export function writePackedCache(cacheDir: string, name: string, fingerprint: string, layers: readonly PackedLinear[], quantized: ReadonlySet<PackedFormat>): { written: string[]; warnings: string[] } {
  const written: string[] = [];
  const warnings: string[] = [];
  for (const format of PACKED_FORMATS) {
    if (!quantized.has(format)) continue;
    const mine = layers.filter((l) => l.format === format && l.cacheKey !== undefined);
    if (mine.length === 0) continue;
    const path = cachePath(cacheDir, name, format);
    try {
      mkdirSync(cacheDir, { recursive: true });
      writeQuantizedFile(path, format, fingerprint, (function* () {
        for (const l of mine) yield [l.cacheKey as string, l.matrix()] as [string, ReturnType<PackedLinear['matrix']>];
      })());
      written.push(path);
    } catch (e) {
      warnings.push(`could not write the packed cache ${path}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return { written, warnings };
}
