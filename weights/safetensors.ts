// Safetensors reader (https://github.com/huggingface/safetensors, "Format" section):
//
//   [8 bytes: N, u64 little-endian][N bytes: UTF-8 JSON header][data section]
//
// The header maps tensor names to {dtype, shape, data_offsets: [begin, end]} (offsets relative to
// the data section) plus an optional "__metadata__" string->string map. Every field is validated
// before it is trusted: lengths, dtypes, shapes, offsets, overlaps, holes and truncation. Tensor
// data is then read on demand, one tensor at a time, with positioned reads (shards are ~10 GB).
import { closeSync, fstatSync, openSync, statSync } from 'node:fs';
import { bytesToFloat32, DTYPE_BYTES } from './dtype.js';
import { elementCount, readExactly, shapeString } from './file-io.js';
import { parseStrictJson } from './strict-json.js';
import type { StorageDtype } from './types.js';

/** Largest header accepted, as in the reference implementation (100 MiB). */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

const SUPPORTED: ReadonlySet<string> = new Set<StorageDtype>(['F32', 'F16', 'BF16']);
/** Other dtypes the safetensors spec defines: recognised, but not loadable as float weights. */
const KNOWN_UNSUPPORTED: ReadonlySet<string> = new Set([
  'BOOL', 'U8', 'I8', 'I16', 'U16', 'I32', 'U32', 'I64', 'U64', 'F64', 'C64',
  'F8_E5M2', 'F8_E4M3', 'F8_E4M3FN', 'F8_E8M0', 'F6_E2M3', 'F6_E3M2', 'F4',
]);

/** One tensor of the header, validated. Offsets are relative to the data section. */
export interface SafetensorsEntry {
  name: string;
  dtype: StorageDtype;
  shape: number[];
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  entries: Map<string, SafetensorsEntry>;
  metadata: Record<string, string>;
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function describe(x: unknown): string {
  return Array.isArray(x) ? 'an array' : x === null ? 'null' : `a ${typeof x}`;
}

/** Validates one header entry; `fail` throws with the file path prepended. */
function parseEntry(name: string, raw: unknown, dataSize: number, fail: (msg: string) => never): SafetensorsEntry {
  if (!isPlainObject(raw)) fail(`tensor '${name}': header entry is ${describe(raw)}, expected an object with dtype, shape, data_offsets`);
  const { dtype, shape, data_offsets: offsets } = raw;
  if (typeof dtype !== 'string') fail(`tensor '${name}': dtype is missing or not a string`);
  if (!SUPPORTED.has(dtype)) {
    if (KNOWN_UNSUPPORTED.has(dtype)) fail(`unsupported dtype '${dtype}' for tensor '${name}' (supported: F32, F16, BF16)`);
    fail(`unknown dtype '${dtype}' for tensor '${name}' (supported: F32, F16, BF16)`);
  }
  if (!Array.isArray(shape)) fail(`tensor '${name}': shape is missing or not an array`);
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      fail(`tensor '${name}': invalid shape ${JSON.stringify(shape)} (dimensions must be non-negative integers)`);
    }
  }
  const dims = shape as number[];
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0)) {
    fail(`tensor '${name}': invalid data_offsets ${JSON.stringify(offsets)} (expected [begin, end], non-negative integers)`);
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end) fail(`tensor '${name}': invalid data_offsets [${begin}, ${end}] (begin > end)`);
  const st = dtype as StorageDtype;
  const count = elementCount(dims);
  if (typeof count === 'string') fail(`tensor '${name}': ${count}`);
  const expected = count * DTYPE_BYTES[st];
  if (end - begin !== expected) {
    fail(`tensor '${name}': shape ${shapeString(dims)} with dtype ${st} needs ${expected} bytes but data_offsets [${begin}, ${end}] hold ${end - begin} (shape/bytes mismatch)`);
  }
  if (end > dataSize) {
    fail(`truncated file or bad offset: tensor '${name}' data_offsets [${begin}, ${end}] point past the end of the data section (${dataSize} bytes after the header)`);
  }
  return { name, dtype: st, shape: [...dims], begin, end };
}

/**
 * Parses and validates a header. `dataSize` = file size - 8 - N. Throws with messages starting
 * with `path` (pure function: exported so the validation can be tested without files).
 */
export function parseSafetensorsHeader(path: string, headerBytes: Uint8Array, dataSize: number): SafetensorsHeader {
  const fail: (msg: string) => never = (msg) => { throw new Error(`${path}: ${msg}`); };
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch {
    return fail('header is not valid UTF-8');
  }
  // Strict, as the reference (serde) parser: integers only, no duplicate keys, no BOM.
  const json = parseStrictJson(text, `${path}: header`, { integersOnly: true });
  if (!isPlainObject(json)) return fail(`header is not a JSON object (got ${describe(json)})`);

  const metadata: Record<string, string> = {};
  const entries = new Map<string, SafetensorsEntry>();
  for (const [name, raw] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (!isPlainObject(raw)) fail(`__metadata__ is ${describe(raw)}, expected a string->string object`);
      for (const [k, v] of Object.entries(raw)) {
        if (typeof v !== 'string') fail(`__metadata__ value of '${k}' is ${describe(v)}, expected a string`);
        metadata[k] = v;
      }
      continue;
    }
    entries.set(name, parseEntry(name, raw, dataSize, fail));
  }

  // The data section must be covered exactly: sorted by begin, each tensor starts where the
  // previous ones end (no overlap, no hole), and the last one ends at the end of the file.
  const sorted = [...entries.values()].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let last: SafetensorsEntry | undefined;
  for (const e of sorted) {
    if (e.begin < cursor && last) {
      fail(`tensors '${last.name}' [${last.begin}, ${last.end}] and '${e.name}' [${e.begin}, ${e.end}] overlap`);
    }
    if (e.begin > cursor) {
      fail(`hole in the data section: bytes [${cursor}, ${e.begin}) belong to no tensor (${last ? `between '${last.name}' and '${e.name}'` : `before '${e.name}'`})`);
    }
    cursor = e.end;
    last = e;
  }
  if (cursor < dataSize) {
    fail(`hole in the data section: ${dataSize - cursor} bytes after the last tensor belong to no tensor (tensors end at ${cursor}, data section is ${dataSize} bytes)`);
  }
  return { entries, metadata };
}

/**
 * Throws `<path>: ...` unless `path` is a regular file: opening a FIFO blocks forever and a
 * directory gives a bare EISDIR.
 */
export function checkRegularWeightFile(path: string): void {
  let s;
  try {
    s = statSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(`${path}: ${code === 'ENOENT' ? 'file not found' : `cannot read (${code ?? 'error'})`}`);
  }
  if (!s.isFile()) throw new Error(`${path}: is ${s.isDirectory() ? 'a directory' : s.isFIFO() ? 'a FIFO' : 'a special file'}, not a regular weight file`);
}

/** An open safetensors file: validated header, tensor data read on demand. */
export class SafetensorsFile {
  readonly path: string;
  readonly fileSize: number;
  /** N, the JSON header's length in bytes. */
  readonly headerLength: number;
  /** File offset of the data section (8 + N). */
  readonly dataStart: number;
  readonly metadata: Readonly<Record<string, string>>;
  private readonly entries: Map<string, SafetensorsEntry>;
  private fd: number | undefined;

  private constructor(path: string, fd: number, fileSize: number, headerLength: number, header: SafetensorsHeader) {
    this.path = path;
    this.fd = fd;
    this.fileSize = fileSize;
    this.headerLength = headerLength;
    this.dataStart = 8 + headerLength;
    this.metadata = header.metadata;
    this.entries = header.entries;
  }

  /** Opens and validates `path`; throws `<path>: <problem>` on any malformed header. */
  static open(path: string): SafetensorsFile {
    checkRegularWeightFile(path);
    const fd = openSync(path, 'r');
    try {
      const fileSize = fstatSync(fd).size;
      const fail: (msg: string) => never = (msg) => { throw new Error(`${path}: ${msg}`); };
      if (fileSize < 8) fail(`truncated file: ${fileSize} bytes, too short for the 8-byte header length`);
      const n = Buffer.from(readExactly(fd, path, 0, 8)).readBigUInt64LE(0);
      if (n === 0n) fail('header length is 0 (a safetensors header is at least "{}")');
      // Compare as bigint before any allocation: a corrupt length may be up to 2^64-1.
      if (n > BigInt(MAX_HEADER_BYTES)) fail(`header length field is over the ${MAX_HEADER_BYTES}-byte (100 MiB) limit: not a safetensors file or corrupt`);
      if (n > BigInt(fileSize - 8)) fail(`truncated file: the header length field exceeds the ${fileSize - 8} bytes after the 8-byte length (file is ${fileSize} bytes)`);
      const headerLength = Number(n);
      const headerBytes = readExactly(fd, path, 8, headerLength);
      const header = parseSafetensorsHeader(path, headerBytes, fileSize - 8 - headerLength);
      return new SafetensorsFile(path, fd, fileSize, headerLength, header);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** Header entries (copies) in data order, as laid out in the file. */
  allEntries(): SafetensorsEntry[] {
    return [...this.entries.values()].sort((a, b) => a.begin - b.begin || a.end - b.end).map((e) => ({ ...e, shape: [...e.shape] }));
  }

  /** Tensor names in data order. */
  names(): string[] {
    return this.allEntries().map((e) => e.name);
  }

  entry(name: string): SafetensorsEntry | undefined {
    return this.entries.get(name);
  }

  private require(name: string): SafetensorsEntry {
    const e = this.entries.get(name);
    if (!e) throw new Error(`${this.path}: no tensor '${name}' in this file`);
    return e;
  }

  /** The tensor's stored bytes (little-endian, dtype of the header), a fresh array. */
  readBytes(name: string): Uint8Array {
    const e = this.require(name);
    if (this.fd === undefined) throw new Error(`${this.path}: file is closed`);
    return readExactly(this.fd, this.path, this.dataStart + e.begin, e.end - e.begin);
  }

  /** The tensor converted to float32, a fresh array. */
  readFloat32(name: string): Float32Array {
    return bytesToFloat32(this.require(name).dtype, this.readBytes(name));
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
