// Minimal safetensors writer: [u64 LE header length][JSON header, space-padded to 8 bytes][data].
import { writeFileSync, renameSync } from 'node:fs';
import { float32ToBytesLE, float32ToF16Bits, uint16ToBytesLE } from '../../weights/dtype.js';

export interface NamedArray {
  name: string;
  shape: number[];
  data: Float32Array;
}

export function encodeSafetensors(tensors: NamedArray[], dtype: 'F32' | 'F16' = 'F32', metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  const blobs: Uint8Array[] = [];
  let offset = 0;
  for (const t of [...tensors].sort((a, b) => a.name.localeCompare(b.name))) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new Error(`safetensors: ${t.name} has ${t.data.length} values for shape [${t.shape}]`);
    const bytes = dtype === 'F32' ? float32ToBytesLE(t.data) : uint16ToBytesLE(float32ToF16Bits(t.data));
    header[t.name] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    blobs.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += ' ';
  const headerBytes = Buffer.from(json, 'utf8');
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let p = 8 + headerBytes.length;
  for (const b of blobs) {
    out.set(b, p);
    p += b.length;
  }
  return out;
}

/** Writes atomically (temp file + rename), so an interrupted save never leaves a torn file. */
export function writeSafetensors(path: string, tensors: NamedArray[], dtype: 'F32' | 'F16' = 'F32', metadata: Record<string, string> = {}): void {
  const tmp = `${path}.partial`;
  writeFileSync(tmp, encodeSafetensors(tensors, dtype, metadata));
  renameSync(tmp, path);
}
