// Resident vs streamed decoder weights (src/streamed.ts) on a LLaVA-1.5-7B-shaped random model
// stored as fp16 (as the released checkpoints are), in one run: load time, prefill, decode per
// token, tensor heap, host RSS, and whether the two runs produce the same tokens.
//
//   node dist/scripts/bench-streamed.js [--llm-layers 2] [--new-tokens 3] [--modes resident,streamed] [--out FILE]
import * as fs from 'node:fs';
import { scriptArgs, runScript } from './args.js';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../src/backend.js';
import { LlavaModel } from '../src/llava.js';
import { setReleaseUnpackedWeights, wasmHeapBytes } from '../layers/index.js';
import { asFloat16Source } from '../weights/index.js';
import { randomModelParts } from './random-model.js';

const flags = scriptArgs('bench-streamed', 'usage: node dist/scripts/bench-streamed.js [--llm-layers 2] [--new-tokens 3] [--modes resident,streamed] [--out FILE]', {
  'llm-layers': { type: 'string' },
  'new-tokens': { type: 'string' },
  modes: { type: 'string' },
  out: { type: 'string' },
});
function arg(name: 'llm-layers' | 'new-tokens' | 'modes' | 'out', def: string): string {
  return flags[name] ?? def;
}

async function main(): Promise<void> {
  const llmLayers = Number(arg('llm-layers', '2'));
  const newTokens = Number(arg('new-tokens', '3'));
  const modes = arg('modes', 'resident,streamed').split(',') as Array<'resident' | 'streamed'>;
  await selectBackend('wasm');
  setReleaseUnpackedWeights(true);
  const parts = await randomModelParts('llava-1.5-7b', { llmLayers });
  const source = asFloat16Source(parts.source);
  const prompt = 'Describe the picture in detail, including the colours, the objects and what the people in it are doing.';
  const rows: Array<Record<string, unknown>> = [];
  for (const weights of modes) {
    const t0 = performance.now();
    const model = await LlavaModel.fromParts({ ...parts, source }, { weights });
    const loadMs = performance.now() - t0;
    const heapAfterLoad = tf.memory().numBytes;
    const out = await model.generate({ prompt, maxNewTokens: newTokens, stopIds: [] });
    const row = {
      weights,
      reason: model.residency.reason,
      loadS: loadMs / 1000,
      promptTokens: out.promptIds.length,
      prefillMs: out.timings.prefillMs,
      decodeMsPerToken: out.timings.decodeMs / Math.max(1, newTokens - 1),
      tensorMB: heapAfterLoad / 2 ** 20,
      wasmHeapMB: wasmHeapBytes() / 2 ** 20,
      rssMB: process.memoryUsage().rss / 2 ** 20,
      tokenIds: out.tokenIds,
    };
    rows.push(row);
    process.stderr.write(`${JSON.stringify(row)}\n`);
    model.dispose();
  }
  console.log(`LLaVA-1.5-7B shape, ${llmLayers} LLaMA layers, random fp16 weights, wasm, ${newTokens} new tokens`);
  console.log('| weights | load s | prompt tokens | prefill ms | decode ms/token | tensors MB after load | wasm heap MB | RSS MB |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    const f = (v: unknown, d = 0) => (v as number).toFixed(d);
    console.log(`| ${r.weights} | ${f(r.loadS, 1)} | ${r.promptTokens} | ${f(r.prefillMs)} | ${f(r.decodeMsPerToken)} | ${f(r.tensorMB)} | ${f(r.wasmHeapMB)} | ${f(r.rssMB)} |`);
  }
  if (rows.length === 2) console.log(`same tokens: ${JSON.stringify(rows[0].tokenIds) === JSON.stringify(rows[1].tokenIds)}`);
  const out = arg('out', '');
  if (out) {
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), llmLayers, newTokens, rows }, null, 2));
  }
}

runScript('bench-streamed', main);
