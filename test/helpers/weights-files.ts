// Hand-built weight files for the weights tests. Written byte by byte here (not with the code
// under test) so malformed headers can be produced on purpose.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A fresh temp folder; `cleanup()` removes it (call from after()). */
export function tempDir(prefix = 'illava-weights-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** 8-byte little-endian u64. */
export function u64le(n: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(n);
  return b;
}

/**
 * safetensors bytes: [u64 N][header][data]. `header` is JSON-stringified unless a string (so
 * invalid JSON can be written); `headerLength` overrides N (to lie about it).
 */
export function safetensorsBytes(header: unknown, data: Uint8Array = new Uint8Array(0), headerLength?: bigint): Buffer {
  const text = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  return Buffer.concat([u64le(headerLength ?? BigInt(text.length)), text, data]);
}

/** Writes `bytes` to dir/name and returns the path. */
export function writeFile(dir: string, name: string, bytes: Uint8Array | string): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

/** Little-endian float32 bytes of `values`, via DataView (independent of the code under test). */
export function f32le(values: number[]): Buffer {
  const b = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => b.writeFloatLE(v, i * 4));
  return b;
}

/** Little-endian 16-bit words. */
export function u16le(words: number[]): Buffer {
  const b = Buffer.alloc(words.length * 2);
  words.forEach((w, i) => b.writeUInt16LE(w, i * 2));
  return b;
}
