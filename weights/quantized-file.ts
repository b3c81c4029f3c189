// On-disk cache of quantized matrices: a standard safetensors file (any safetensors reader opens it)
//
//   [u64 LE: header length H][H bytes: JSON header, space-padded][data section]
//
// with, for each matrix NAME (see quantized.ts for the layouts):
//   NAME.qweight  f16: F16 [N, Kp]   q8_0: I8 [N, Kp]   q4_0: U8 [N, Kp/2]
//   NAME.qscale   F16 [N, Kp/32]     (q8_0 and q4_0 only: the fp16 bits of each block scale)
// and __metadata__ (string values): illava.quantized = "1", illava.format = q8_0|q4_0|f16,
// illava.source = the caller's fingerprint of the source weights, NAME.cols = K (Kp = paddedCols(K)).
//
// The writer streams tensor by tensor (a 7B q8_0 file is 7 GB): it reserves room for the header,
// writes each matrix's data as it comes, then writes the header (moving the data once if the
// header outgrew the reserve). The reader validates the whole header before trusting it and reads
// one matrix at a time with positioned reads. The safetensors reader (safetensors.ts) only knows
// float dtypes, so the header is parsed here, with the same strictness plus the format's rules.
import { closeSync, fstatSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { f16BitsToNumber, float32ToF16Bits, uint16ToBytesLE } from './dtype.js';
import { elementCount, readExactly, shapeString } from './file-io.js';
import { checkQuantizedMatrix, packedBytes, paddedCols, PACKED_FORMATS, QK, type PackedFormat, type QuantizedMatrix } from './quantized.js';
import { MAX_HEADER_BYTES } from './safetensors.js';

export const META_QUANTIZED = 'illava.quantized';
export const META_FORMAT = 'illava.format';
export const META_SOURCE = 'illava.source';
const COLS_SUFFIX = '.cols';
const WEIGHT_SUFFIX = '.qweight';
const SCALE_SUFFIX = '.qscale';

type FileDtype = 'F16' | 'I8' | 'U8';
const DTYPE_SIZE: Readonly<Record<FileDtype, number>> = { F16: 2, I8: 1, U8: 1 };
/** dtype of NAME.qweight per format. */
const WEIGHT_DTYPE: Readonly<Record<PackedFormat, FileDtype>> = { f16: 'F16', q8_0: 'I8', q4_0: 'U8' };
/** Every dtype the safetensors spec names: these (and only these) may be quoted in errors. */
const SPEC_DTYPES: ReadonlySet<string> = new Set([
  'BOOL', 'U8', 'I8', 'I16', 'U16', 'F16', 'BF16', 'I32', 'U32', 'F32', 'F64', 'I64', 'U64', 'C64',
  'F8_E5M2', 'F8_E4M3', 'F8_E4M3FN', 'F8_E8M0', 'F6_E2M3', 'F6_E3M2', 'F4',
]);

/** Header bytes reserved ahead of the data by default: enough for a 13B LLaVA's ~450 matrices. */
export const DEFAULT_HEADER_RESERVE = 256 * 1024;
/** fs.readSync / writeSync move at most 2^31-1 bytes per call. */
const IO_CHUNK = 1 << 30;

export interface QuantizedFileInfo {
  readonly format: PackedFormat;
  readonly source: string;
  readonly names: readonly string[];
  info(name: string): { rows: number; cols: number; paddedCols: number } | undefined;
}

export interface WriteQuantizedOptions {
  /** Header bytes reserved before the data (default DEFAULT_HEADER_RESERVE); a longer header moves the data once. */
  headerReserve?: number;
}

const roundUp8 = (n: number): number => Math.ceil(n / 8) * 8;

/** A name as quoted in errors: JSON-escaped (no raw control bytes), cut at 80 characters. */
function quote(name: string): string {
  return `'${JSON.stringify(name.length > 80 ? `${name.slice(0, 80)}...` : name).slice(1, -1)}'`;
}

function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0;
  while (done < bytes.length) {
    done += writeSync(fd, bytes, done, Math.min(IO_CHUNK, bytes.length - done), position + done);
  }
}

/** fp16 little-endian bytes of a matrix's scales, checked finite and exactly representable. */
function scaleBytes(name: string, scales: Float32Array): Uint8Array {
  const bits = float32ToF16Bits(scales);
  for (let i = 0; i < bits.length; i++) {
    if ((bits[i] & 0x7c00) === 0x7c00 || f16BitsToNumber(bits[i]) !== scales[i]) {
      throw new Error(`writeQuantizedFile: matrix ${quote(name)} scale ${i} (${scales[i]}) is not a finite fp16 value`);
    }
  }
  return uint16ToBytesLE(bits);
}

/**
 * Writes the matrices (all of `format`) to `path` atomically (`path`.tmp, then rename), one
 * matrix at a time: `matrices` may be a generator that quantizes lazily.
 */
export function writeQuantizedFile(path: string, format: PackedFormat, source: string, matrices: Iterable<[string, QuantizedMatrix]>, options: WriteQuantizedOptions = {}): void {
  const fn = 'writeQuantizedFile';
  if (!(PACKED_FORMATS as readonly string[]).includes(format)) throw new Error(`${fn}: unknown format '${String(format)}' (expected f16, q8_0 or q4_0)`);
  if (typeof source !== 'string') throw new Error(`${fn}: source must be a string`);
  const reserveOpt = options.headerReserve ?? DEFAULT_HEADER_RESERVE;
  if (!Number.isSafeInteger(reserveOpt) || reserveOpt < 0) throw new Error(`${fn}: headerReserve must be a non-negative integer`);
  let reserve = roundUp8(reserveOpt); // keeps the data section 8-aligned
  const metadata: Record<string, string> = { [META_QUANTIZED]: '1', [META_FORMAT]: format, [META_SOURCE]: source };
  const header: Record<string, unknown> = { __metadata__: metadata }; // metadata first; filled below
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w+'); // read too: the data may have to move
  let closed = false;
  try {
    let offset = 0; // end of the data written so far, relative to the data section
    const put = (tensor: string, dtype: FileDtype, shape: number[], bytes: Uint8Array): void => {
      writeAll(fd, bytes, 8 + reserve + offset);
      header[tensor] = { dtype, shape, data_offsets: [offset, offset + bytes.length] };
      offset += bytes.length;
    };
    for (const [name, m] of matrices) {
      if (typeof name !== 'string' || name.length === 0) throw new Error(`${fn}: matrix names must be non-empty strings`);
      if (Object.prototype.hasOwnProperty.call(header, name + WEIGHT_SUFFIX)) throw new Error(`${fn}: duplicate matrix ${quote(name)}`);
      checkQuantizedMatrix(m, `${fn}: matrix ${quote(name)}`);
      if (m.format !== format) throw new Error(`${fn}: matrix ${quote(name)} is ${m.format}, the file is ${format}`);
      const kp = m.paddedCols;
      put(name + WEIGHT_SUFFIX, WEIGHT_DTYPE[format], [m.rows, format === 'q4_0' ? kp / 2 : kp], m.data);
      if (m.scales) put(name + SCALE_SUFFIX, 'F16', [m.rows, kp / QK], scaleBytes(name, m.scales));
      metadata[name + COLS_SUFFIX] = String(m.cols);
    }
    const json = Buffer.from(JSON.stringify(header), 'utf8');
    if (json.length > reserve) {
      // The header outgrew the reserve: move the data section up, last chunk first (the ranges overlap).
      const grown = roundUp8(json.length);
      const buf = new Uint8Array(Math.min(64 << 20, Math.max(offset, 1)));
      for (let end = offset; end > 0;) {
        const begin = Math.max(0, end - buf.length);
        const piece = buf.subarray(0, end - begin);
        readExactly(fd, tmp, 8 + reserve + begin, piece.length, piece);
        writeAll(fd, piece, 8 + grown + begin);
        end = begin;
      }
      reserve = grown;
    }
    const head = Buffer.alloc(8 + reserve, 0x20); // JSON then spaces: the padding the spec allows
    head.writeBigUInt64LE(BigInt(reserve), 0);
    json.copy(head, 8);
    writeAll(fd, head, 0);
    fsyncSync(fd);
    closeSync(fd);
    closed = true;
    renameSync(tmp, path);
  } catch (e) {
    if (!closed) closeSync(fd);
    try { unlinkSync(tmp); } catch { /* already gone */ }
    throw e;
  }
}

interface Range { begin: number; end: number }
interface Entry extends Range { name: string; dtype: FileDtype; shape: number[] }
interface Layout { rows: number; cols: number; paddedCols: number; weight: Range; scale: Range | null }

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** A key repeated within one object of the (valid) JSON `text`, if any: JSON.parse would silently keep the last. */
function duplicateKey(text: string): string | undefined {
  const stack: (Set<string> | null)[] = []; // one Set per open object, null per open array
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const token = text.slice(i, j + 1);
      i = j;
      let k = j + 1;
      while (text[k] === ' ' || text[k] === '\t' || text[k] === '\n' || text[k] === '\r') k++;
      const top = stack[stack.length - 1];
      if (text[k] === ':' && top) {
        const key = JSON.parse(token) as string;
        if (top.has(key)) return key;
        top.add(key);
      }
    } else if (ch === '{') stack.push(new Set());
    else if (ch === '[') stack.push(null);
    else if (ch === '}' || ch === ']') stack.pop();
  }
  return undefined;
}

/** One header entry, validated against the data section's size. */
function parseEntry(name: string, raw: unknown, dataSize: number, fail: (msg: string) => never): Entry {
  const t = `tensor ${quote(name)}`;
  if (!isPlainObject(raw)) fail(`${t}: header entry is not an object`);
  for (const k of Object.keys(raw)) if (k !== 'dtype' && k !== 'shape' && k !== 'data_offsets') fail(`${t}: unexpected field ${quote(k)}`);
  const { dtype, shape, data_offsets: offsets } = raw;
  if (typeof dtype !== 'string') fail(`${t}: dtype is missing or not a string`);
  if (!(dtype in DTYPE_SIZE)) fail(`${t}: ${SPEC_DTYPES.has(dtype) ? `dtype ${dtype} is not used by quantized files` : 'unknown dtype'} (expected F16, I8 or U8)`);
  if (!Array.isArray(shape) || !shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)) {
    fail(`${t}: shape is missing or not an array of non-negative integers`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0)) {
    fail(`${t}: data_offsets must be [begin, end], non-negative integers`);
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end) fail(`${t}: data_offsets [${begin}, ${end}] have begin > end`);
  const dims = shape as number[];
  const count = elementCount(dims);
  if (typeof count === 'string') fail(`${t}: ${count}`);
  const st = dtype as FileDtype;
  if (end - begin !== count * DTYPE_SIZE[st]) {
    fail(`${t}: shape ${shapeString(dims)} with dtype ${st} needs ${count * DTYPE_SIZE[st]} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`);
  }
  if (end > dataSize) fail(`truncated file or offset out of bounds: ${t} data_offsets [${begin}, ${end}] end past the ${dataSize}-byte data section`);
  return { name, dtype: st, shape: [...dims], begin, end };
}

/** Validates the whole header: safetensors rules, then the quantized-file rules (see the file comment). */
function parseHeader(path: string, headerBytes: Uint8Array, dataSize: number): { format: PackedFormat; source: string; names: string[]; layouts: Map<string, Layout> } {
  // Messages never quote header text or data: only field names, tensor names and numbers.
  const fail: (msg: string) => never = (msg) => { throw new Error(`${path}: ${msg}`); };
  let text = '';
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    fail('header is not valid UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(text); // its error messages quote the text: not passed on
  } catch {
    fail('header is not valid JSON');
  }
  if (!isPlainObject(json)) return fail('header is not a JSON object');
  const dup = duplicateKey(text);
  if (dup !== undefined) fail(`duplicate key ${quote(dup)} in the header`);

  const meta = json.__metadata__;
  if (!isPlainObject(meta)) return fail(`missing __metadata__ (not an illava quantized file)`);
  for (const [k, v] of Object.entries(meta)) if (typeof v !== 'string') fail(`__metadata__ value of ${quote(k)} is not a string`);
  const metadata = meta as Record<string, string>;
  if (metadata[META_QUANTIZED] === undefined) fail(`missing __metadata__ '${META_QUANTIZED}' (not an illava quantized file)`);
  if (metadata[META_QUANTIZED] !== '1') fail(`__metadata__ '${META_QUANTIZED}' is not "1" (unsupported version)`);
  const format = metadata[META_FORMAT];
  if (format === undefined) fail(`missing __metadata__ '${META_FORMAT}'`);
  if (!(PACKED_FORMATS as readonly string[]).includes(format)) fail(`__metadata__ '${META_FORMAT}' is not one of f16, q8_0, q4_0`);
  const fmt = format as PackedFormat;
  const source = metadata[META_SOURCE];
  if (source === undefined) fail(`missing __metadata__ '${META_SOURCE}'`);

  // Tensors: each valid on its own, then together covering the data section exactly.
  const entries: Entry[] = [];
  for (const [name, raw] of Object.entries(json)) if (name !== '__metadata__') entries.push(parseEntry(name, raw, dataSize, fail));
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const e of entries) {
    if (e.begin < cursor) fail(`tensor ${quote(e.name)} data_offsets [${e.begin}, ${e.end}] overlap the previous tensor (offsets not contiguous)`);
    if (e.begin > cursor) fail(`hole before tensor ${quote(e.name)}: bytes [${cursor}, ${e.begin}) belong to no tensor (offsets not contiguous)`);
    cursor = e.end;
  }
  if (cursor !== dataSize) fail(`${dataSize - cursor} bytes after the last tensor belong to no tensor (tensors end at ${cursor}, data section is ${dataSize} bytes)`);

  // Matrices: NAME.qweight (+ NAME.qscale for q formats) + NAME.cols, shapes agreeing with cols.
  const weights = new Map<string, Entry>();
  const scales = new Map<string, Entry>();
  for (const e of entries) {
    if (e.name.endsWith(WEIGHT_SUFFIX)) weights.set(e.name.slice(0, -WEIGHT_SUFFIX.length), e);
    else if (e.name.endsWith(SCALE_SUFFIX)) scales.set(e.name.slice(0, -SCALE_SUFFIX.length), e);
    else fail(`unexpected tensor ${quote(e.name)} (only NAME${WEIGHT_SUFFIX} and NAME${SCALE_SUFFIX})`);
  }
  for (const [base, e] of scales) {
    if (!weights.has(base)) fail(`tensor ${quote(e.name)} has no ${quote(base + WEIGHT_SUFFIX)}`);
    if (fmt === 'f16') fail(`tensor ${quote(e.name)}: f16 files have no scales`);
  }
  for (const k of Object.keys(metadata)) {
    if (k.endsWith(COLS_SUFFIX) && !weights.has(k.slice(0, -COLS_SUFFIX.length))) fail(`__metadata__ ${quote(k)} names no matrix`);
  }
  const layouts = new Map<string, Layout>();
  for (const [base, w] of weights) {
    const colsKey = base + COLS_SUFFIX;
    const colsText = metadata[colsKey];
    if (colsText === undefined) fail(`missing __metadata__ ${quote(colsKey)} for tensor ${quote(w.name)}`);
    if (!/^[1-9][0-9]{0,14}$/.test(colsText)) fail(`__metadata__ ${quote(colsKey)} is not a positive integer`);
    const cols = Number(colsText);
    const kp = paddedCols(cols);
    const wantDtype = WEIGHT_DTYPE[fmt];
    if (w.dtype !== wantDtype) fail(`tensor ${quote(w.name)} has dtype ${w.dtype}, ${fmt} needs ${wantDtype} (wrong dtype)`);
    const wantCols = fmt === 'q4_0' ? kp / 2 : kp;
    if (w.shape.length !== 2 || w.shape[0] < 1 || w.shape[1] !== wantCols) {
      fail(`tensor ${quote(w.name)} shape ${shapeString(w.shape)} disagrees with cols ${cols} (expected [N, ${wantCols}])`);
    }
    const rows = w.shape[0];
    let scale: Range | null = null;
    if (fmt !== 'f16') {
      const s = scales.get(base);
      if (!s) return fail(`missing tensor ${quote(base + SCALE_SUFFIX)}`);
      if (s.dtype !== 'F16') fail(`tensor ${quote(s.name)} has dtype ${s.dtype}, expected F16 (wrong dtype)`);
      if (s.shape.length !== 2 || s.shape[0] !== rows || s.shape[1] !== kp / QK) {
        fail(`tensor ${quote(s.name)} shape ${shapeString(s.shape)} is not [${rows}, ${kp / QK}] (wrong block count)`);
      }
      scale = { begin: s.begin, end: s.end };
    }
    layouts.set(base, { rows, cols, paddedCols: kp, weight: { begin: w.begin, end: w.end }, scale });
  }
  return { format: fmt, source, names: [...weights.keys()], layouts };
}

/** An open quantized file: validated header, matrices read on demand. */
export class QuantizedFile implements QuantizedFileInfo {
  readonly path: string;
  readonly format: PackedFormat;
  readonly source: string;
  /** Matrix names in data order. */
  readonly names: readonly string[];
  private readonly layouts: Map<string, Layout>;
  private readonly dataStart: number;
  private fd: number | undefined;

  private constructor(path: string, fd: number, dataStart: number, h: ReturnType<typeof parseHeader>) {
    this.path = path;
    this.fd = fd;
    this.dataStart = dataStart;
    this.format = h.format;
    this.source = h.source;
    this.names = Object.freeze(h.names);
    this.layouts = h.layouts;
  }

  /** Opens and validates `path`; throws `<path>: <problem>` (one line) on anything malformed. */
  static open(path: string): QuantizedFile {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (e) {
      throw new Error(`${path}: cannot open (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    try {
      const fail: (msg: string) => never = (msg) => { throw new Error(`${path}: ${msg}`); };
      const st = fstatSync(fd);
      if (!st.isFile()) fail('not a regular file');
      const size = st.size;
      if (size < 8) fail(`truncated file: ${size} bytes, shorter than the 8-byte header length`);
      const n = Buffer.from(readExactly(fd, path, 0, 8)).readBigUInt64LE(0);
      if (n === 0n) fail('header length is 0');
      if (n > BigInt(MAX_HEADER_BYTES)) fail(`header length ${n} is absurd (limit ${MAX_HEADER_BYTES} bytes): not a safetensors file or corrupt`);
      if (n > BigInt(size - 8)) fail(`truncated file: header length ${n} exceeds the ${size - 8} bytes after the 8-byte length`);
      const headerLength = Number(n);
      const header = parseHeader(path, readExactly(fd, path, 8, headerLength), size - 8 - headerLength);
      return new QuantizedFile(path, fd, 8 + headerLength, header);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  info(name: string): { rows: number; cols: number; paddedCols: number } | undefined {
    const l = this.layouts.get(name);
    return l && { rows: l.rows, cols: l.cols, paddedCols: l.paddedCols };
  }

  private require(name: string): Layout {
    const l = this.layouts.get(name);
    if (!l) throw new Error(`${this.path}: no matrix ${quote(name)} in this file`);
    return l;
  }

  /**
   * Reads NAME's data and scales into `data` / `scales` (exact sizes: packedBytes; scales null for
   * f16) without other copies: the fp16 scale bytes land in the upper half of `scales`' own
   * memory and widen in place. Rejects scales (and f16 weights) that decode to NaN/Infinity.
   */
  readInto(name: string, data: Uint8Array, scales: Float32Array | null): void {
    const l = this.require(name);
    const size = packedBytes(this.format, l.rows, l.cols);
    const what = `${this.path}: readInto ${quote(name)}`;
    if (!(data instanceof Uint8Array) || data.length !== size.data) throw new Error(`${what}: data must be a Uint8Array of exactly ${size.data} bytes`);
    if (this.format === 'f16' ? scales !== null : !(scales instanceof Float32Array) || scales.length * 4 !== size.scales) {
      throw new Error(`${what}: scales must be ${this.format === 'f16' ? 'null for f16' : `a Float32Array of exactly ${size.scales / 4} values`}`);
    }
    if (this.fd === undefined) throw new Error(`${this.path}: file is closed`);
    readExactly(this.fd, this.path, this.dataStart + l.weight.begin, size.data, data);
    const kp = l.paddedCols;
    if (this.format === 'f16') {
      for (let i = 0; i < data.length; i += 2) {
        if ((data[i + 1] & 0x7c) === 0x7c) throw new Error(`${this.path}: tensor ${quote(name + WEIGHT_SUFFIX)} has a non-finite fp16 value at row ${Math.floor(i / 2 / kp)}, col ${(i / 2) % kp} (bad weight bytes)`);
      }
      return;
    }
    const s = scales as Float32Array;
    const n = s.length;
    // Scale i's fp16 bytes sit at 2n+2i; widening writes bytes [4i, 4i+4), never past 2n+2i+2: safe in order.
    const bytes = new Uint8Array(s.buffer, s.byteOffset, 4 * n);
    readExactly(this.fd, this.path, this.dataStart + (l.scale as Range).begin, 2 * n, bytes, 2 * n);
    for (let i = 0; i < n; i++) {
      const h = bytes[2 * n + 2 * i] | (bytes[2 * n + 2 * i + 1] << 8);
      if ((h & 0x7c00) === 0x7c00) {
        const nb = kp / QK;
        throw new Error(`${this.path}: tensor ${quote(name + SCALE_SUFFIX)} scale of row ${Math.floor(i / nb)}, block ${i % nb} is NaN or Infinity (bad scale bytes)`);
      }
      s[i] = f16BitsToNumber(h);
    }
  }

  /** NAME as a fresh QuantizedMatrix. */
  read(name: string): QuantizedMatrix {
    const l = this.require(name);
    const size = packedBytes(this.format, l.rows, l.cols);
    const data = new Uint8Array(size.data);
    const scales = this.format === 'f16' ? null : new Float32Array(size.scales / 4);
    this.readInto(name, data, scales);
    return { format: this.format, rows: l.rows, cols: l.cols, paddedCols: l.paddedCols, data, scales };
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
