// A copy of a float32 model folder whose packed linear weights are replaced by their quantized
// values (weights/quantizeMatrix then dequantizeMatrix, whose bytes test/quant-format.test.ts checks
// against llama.cpp): run as plain float32 it is the model a packed format stores, so a packed
// kernel's logits can be compared with it, leaving the format's own rounding out of the difference.
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dequantizeMatrix, quantizeMatrix, type PackedFormat } from '../../weights/index.js';

/** The tensors src/load.ts packs: every linear weight of the tower, the projector and the decoder, and lm_head. */
const PACKED_LINEAR = /\.(q_proj|k_proj|v_proj|o_proj|out_proj|gate_proj|up_proj|down_proj|fc1|fc2|linear_1|linear_2)\.weight$|(^|\.)lm_head\.weight$/;

interface HeaderEntry { dtype: string; shape: number[]; data_offsets: [number, number] }

/** Writes the rounded copy of `dir` (one F32 model.safetensors) into a new temporary folder; returns it and the tensors rounded. */
export function roundedWeightsCopy(dir: string, format: PackedFormat): { dir: string; rounded: string[] } {
  const out = mkdtempSync(join(tmpdir(), `illava-rounded-${format}-`));
  for (const f of readdirSync(dir)) if (f !== 'model.safetensors') copyFileSync(join(dir, f), join(out, f));
  const file = readFileSync(join(dir, 'model.safetensors'));
  const headerLength = Number(file.readBigUInt64LE(0));
  const header = JSON.parse(file.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, HeaderEntry>;
  const bytes = Buffer.from(file); // a copy, written back whole
  const base = 8 + headerLength;
  const rounded: string[] = [];
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__' || !PACKED_LINEAR.test(name)) continue;
    if (t.dtype !== 'F32' || t.shape.length !== 2) throw new Error(`roundedWeightsCopy: ${name} is ${t.dtype} ${JSON.stringify(t.shape)}, expected a 2-D F32 tensor`);
    const [N, K] = t.shape;
    const [begin, end] = t.data_offsets;
    const w = new Float32Array(file.buffer.slice(file.byteOffset + base + begin, file.byteOffset + base + end));
    const values = dequantizeMatrix(quantizeMatrix(w, N, K, format));
    Buffer.from(values.buffer, values.byteOffset, values.byteLength).copy(bytes, base + begin);
    rounded.push(name);
  }
  writeFileSync(join(out, 'model.safetensors'), bytes);
  return { dir: out, rounded };
}
