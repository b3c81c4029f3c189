// Access to the copied tiny-llava fixture (test/fixtures/tiny-llava, from ../shared/fixtures).
// Expected arrays come from independent implementations (OpenAI CLIP, llama2.c, PIL, sentencepiece):
// see the fixture's README.md.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root, found from this compiled file (dist/test/helpers -> root). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const TINY_LLAVA_DIR = join(REPO_ROOT, 'test/fixtures/tiny-llava');

export interface ExpectedArray { offset: number; nbytes: number; shape: number[]; dtype: string; desc: string }

export interface FixtureExpectations {
  prompts: {
    image: { text: string; input_ids: number[]; image_token_position: number; num_image_tokens: number; input_ids_expanded: number[]; greedy_ids: number[]; last_logits_top5_ids: number[]; sequence_length: number };
    text: { text: string; input_ids: number[]; greedy_ids: number[]; last_logits_top5_ids: number[] };
  };
  arrays: Record<string, ExpectedArray>;
  [key: string]: unknown;
}

let cachedJson: FixtureExpectations | undefined;
let cachedBin: Buffer | undefined;

export function expectations(): FixtureExpectations {
  cachedJson ??= JSON.parse(readFileSync(join(TINY_LLAVA_DIR, 'expected.json'), 'utf8')) as FixtureExpectations;
  return cachedJson;
}

/** One float32 array of expected.bin, by name (pixel_values, vision_features, ...). */
export function expectedArray(name: string): { data: Float32Array; shape: number[] } {
  const entry = expectations().arrays[name];
  if (!entry) throw new Error(`expected.bin has no array '${name}'`);
  cachedBin ??= readFileSync(join(TINY_LLAVA_DIR, 'expected.bin'));
  const copy = cachedBin.subarray(entry.offset, entry.offset + entry.nbytes);
  const data = new Float32Array(entry.nbytes / 4);
  for (let i = 0; i < data.length; i++) data[i] = copy.readFloatLE(i * 4);
  return { data, shape: entry.shape };
}

/** Relative L2 error ||a - b|| / ||b||, in float64. */
export function relativeL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  return Math.sqrt(num / den);
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** max |a - b| / max |b|: the largest error relative to the reference's scale. */
export function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

/** Indices of the k largest values, largest first. */
export function topK(values: ArrayLike<number>, k: number): number[] {
  return Array.from({ length: values.length }, (_, i) => i)
    .sort((x, y) => values[y] - values[x] || x - y)
    .slice(0, k);
}

/** The copied slice of the tiny-llava-onevision fixture (test/fixtures/tiny-llava-onevision/SLICE.md). */
export const TINY_ONEVISION_DIR = join(REPO_ROOT, 'test/fixtures/tiny-llava-onevision');

const sliceTables = new Map<string, { table: Record<string, ExpectedArray>; bin: Buffer }>();

/** One array of a fixture slice (dir/expected-slice.json + .bin), by name: float32 as Float32Array, int32 as Int32Array, uint8 as Uint8Array. */
export function sliceArray(dir: string, name: string): { data: Float32Array | Int32Array | Uint8Array; shape: number[] } {
  let slice = sliceTables.get(dir);
  if (!slice) {
    const arrays = (JSON.parse(readFileSync(join(dir, 'expected-slice.json'), 'utf8')) as { arrays: Array<ExpectedArray & { name: string }> }).arrays;
    slice = { table: Object.fromEntries(arrays.map((a) => [a.name, a])), bin: readFileSync(join(dir, 'expected-slice.bin')) };
    sliceTables.set(dir, slice);
  }
  const entry = slice.table[name];
  if (!entry) throw new Error(`${dir}/expected-slice.bin has no array '${name}'`);
  const bytes = slice.bin.subarray(entry.offset, entry.offset + entry.nbytes);
  if (entry.dtype === 'uint8') return { data: Uint8Array.from(bytes), shape: entry.shape };
  const n = entry.nbytes / 4;
  const data = entry.dtype === 'int32' ? new Int32Array(n) : new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = entry.dtype === 'int32' ? bytes.readInt32LE(i * 4) : bytes.readFloatLE(i * 4);
  return { data, shape: entry.shape };
}

/** One array of the onevision slice (expected-slice.bin), by name. */
export function onevisionArray(name: string): { data: Float32Array | Int32Array | Uint8Array; shape: number[] } {
  return sliceArray(TINY_ONEVISION_DIR, name);
}

export const TINY_NEXT_DIR = join(REPO_ROOT, 'test/fixtures/tiny-llava-next');
