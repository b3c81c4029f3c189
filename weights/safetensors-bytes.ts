// safetensors files already in memory (fetched by a web page, a dropped File, a test's buffer):
// the same validated header as SafetensorsFile (parseSafetensorsHeader), tensors sliced out of
// the bytes instead of read from a file descriptor. No Node module: this is what the browser
// bundle loads weights with.
import { bytesToFloat32 } from './dtype.js';
import { canonicalNameMap, toCanonicalName } from './names.js';
import { MAX_HEADER_BYTES, parseSafetensorsHeader, type SafetensorsEntry } from './safetensors.js';
import { missingTensorError } from './source.js';
import type { RawTensor, TensorInfo, WeightSource } from './types.js';

/** One file's validated header and its data section (a view of the caller's bytes). */
interface BytesFile {
  name: string;
  data: Uint8Array;
  entries: Map<string, SafetensorsEntry>;
}

/** Validates the 8-byte length and the header of `bytes` (a whole .safetensors file named `name`). */
function parseBytes(name: string, bytes: Uint8Array): BytesFile {
  const fail = (msg: string): never => { throw new Error(`${name}: ${msg}`); };
  if (bytes.length < 8) fail(`truncated file: ${bytes.length} bytes, too short for the 8-byte header length`);
  const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (n === 0n) fail('header length is 0 (a safetensors header is at least "{}")');
  if (n > BigInt(MAX_HEADER_BYTES)) fail(`header length field is over the ${MAX_HEADER_BYTES}-byte (100 MiB) limit: not a safetensors file or corrupt`);
  if (n > BigInt(bytes.length - 8)) fail(`truncated file: the header length field exceeds the ${bytes.length - 8} bytes after the 8-byte length (file is ${bytes.length} bytes)`);
  const headerLength = Number(n);
  const header = parseSafetensorsHeader(name, bytes.subarray(8, 8 + headerLength), bytes.length - 8 - headerLength);
  return { name, data: bytes.subarray(8 + headerLength), entries: header.entries };
}

/** A WeightSource over safetensors files held in memory; names of either scheme map to canonical. */
export class BytesSafetensorsSource implements WeightSource {
  private readonly locations = new Map<string, { file: BytesFile; entry: SafetensorsEntry }>();

  /** `files`: file name -> its whole contents (one model.safetensors, or every shard of an index). */
  constructor(readonly origin: string, files: ReadonlyMap<string, Uint8Array>) {
    if (files.size === 0) throw new Error(`${origin}: no safetensors file given`);
    for (const [name, bytes] of files) {
      const file = parseBytes(name, bytes);
      for (const [canonical, stored] of canonicalNameMap(file.entries.keys(), name)) {
        const other = this.locations.get(canonical);
        if (other) throw new Error(`${origin}: tensor '${canonical}' is in both '${other.file.name}' and '${name}'`);
        const entry = file.entries.get(stored);
        if (entry) this.locations.set(canonical, { file, entry });
      }
    }
  }

  names(): string[] {
    return [...this.locations.keys()].sort();
  }

  info(name: string): TensorInfo | undefined {
    const e = this.locations.get(toCanonicalName(name))?.entry;
    return e && { name: toCanonicalName(name), dtype: e.dtype, shape: [...e.shape] };
  }

  readRaw(name: string): RawTensor {
    const loc = this.locations.get(toCanonicalName(name));
    if (!loc) throw missingTensorError(this.origin, name);
    // A copy: the caller may keep it, and a view would pin the whole file.
    return { dtype: loc.entry.dtype, shape: [...loc.entry.shape], bytes: loc.file.data.slice(loc.entry.begin, loc.entry.end) };
  }

  readFloat32(name: string): Float32Array {
    const raw = this.readRaw(name);
    return bytesToFloat32(raw.dtype, raw.bytes);
  }

  close(): void {
    this.locations.clear();
  }
}
