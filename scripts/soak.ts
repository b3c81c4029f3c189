// Soak check (issue 11): many consecutive `generate` calls in one process on the embedded model,
// alternating merge presets and images; tf.memory().numTensors and RSS must stay flat and every
// repeat of an input must give the answer its first run gave. Then two concurrent `generate` calls
// on one model must each give their sequential answer.
//   node dist/scripts/soak.js [--calls 200] [--backend wasm] [--out bench/results]
// Prints a table and writes bench/results/soak-<stamp>.json. test/soak.test.ts runs 20 calls.
import * as tf from '@tensorflow/tfjs-core';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LlavaModel, type GenerateOptions, type ImageInput } from '../src/llava.js';
import type { BackendName } from '../src/backend.js';
import { sceneWithQuestions } from '../src/train/shapes.js';
import { wasmHeapBytes } from '../layers/wasm-memory.js';
import { scriptArgs } from './args.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const DEFAULT_MODEL = join(ROOT, 'models/default');
export const PRESETS = ['none', 'illava', 'tome', 'fastv'] as const;

export interface SoakPoint { call: number; numTensors: number; rssMb: number; heapMb: number }
export interface SoakResult {
  calls: number;
  backend: string;
  inputs: number;
  /** After the first call, after the first round over every input (warm), after the last call. */
  start: SoakPoint;
  warm: SoakPoint;
  end: SoakPoint;
  maxRssMb: number;
  /** Calls whose answer differed from the first answer to the same input. */
  mismatches: Array<{ call: number; input: string; first: string; got: string }>;
  /** Calls after which numTensors differed from the count after the first call. */
  tensorDrift: number[];
  msPerCall: number;
  concurrent: { ok: boolean; detail: string };
}

/** The inputs cycled through: the sample image and three test-split scenes, each with its question. */
function inputs(model: string): Array<{ name: string; prompt: string; image: ImageInput }> {
  const list: Array<{ name: string; prompt: string; image: ImageInput }> = [{ name: 'sample.png', prompt: 'What colour is the star?', image: join(model, 'sample.png') }];
  for (let i = 0; i < 3; i++) {
    const { scene, questions } = sceneWithQuestions('test', i, 1);
    list.push({ name: `scene ${i}`, prompt: questions[0].question, image: scene.image });
  }
  return list;
}

const point = (call: number): SoakPoint => ({ call, numTensors: tf.memory().numTensors, rssMb: process.memoryUsage().rss / 2 ** 20, heapMb: wasmHeapBytes() / 2 ** 20 });

export async function soak(calls: number, options: { model?: string; backend?: BackendName; onCall?: (p: SoakPoint) => void } = {}): Promise<SoakResult> {
  const dir = options.model ?? DEFAULT_MODEL;
  const model = await LlavaModel.fromPretrained(dir, { backend: options.backend ?? 'wasm' });
  try {
    const images = inputs(dir);
    const combos = PRESETS.flatMap((merge) => images.map((im) => ({ merge, ...im })));
    const request = (c: (typeof combos)[number]): GenerateOptions => ({ prompt: c.prompt, images: [c.image], merge: c.merge, maxNewTokens: 4 });
    const first = new Map<number, string>();
    const mismatches: SoakResult['mismatches'] = [];
    const tensorDrift: number[] = [];
    let start: SoakPoint | undefined;
    let warm: SoakPoint | undefined;
    let maxRssMb = 0;
    const t0 = performance.now();
    for (let call = 0; call < calls; call++) {
      // Presets alternate every call; the image changes every 4 calls.
      const k = (call % PRESETS.length) * images.length + (Math.floor(call / PRESETS.length) % images.length);
      const out = await model.generate(request(combos[k]));
      const answer = JSON.stringify(out.tokenIds);
      const seen = first.get(k);
      if (seen === undefined) first.set(k, answer);
      else if (seen !== answer) mismatches.push({ call, input: `${combos[k].merge} / ${combos[k].name}`, first: seen, got: answer });
      const p = point(call + 1);
      maxRssMb = Math.max(maxRssMb, p.rssMb);
      if (!start) start = p;
      else if (p.numTensors !== start.numTensors) tensorDrift.push(call + 1);
      if (!warm && first.size === combos.length) warm = p;
      options.onCall?.(p);
    }
    const msPerCall = (performance.now() - t0) / calls;
    // Two calls at once on one model: each must give the answer it gives alone.
    const a = combos[0];
    const b = combos[combos.length - 1];
    const [ra, rb] = await Promise.all([model.generate(request(a)), model.generate(request(b))]);
    const [sa, sb] = [await model.generate(request(a)), await model.generate(request(b))];
    const ok = JSON.stringify(ra.tokenIds) === JSON.stringify(sa.tokenIds) && JSON.stringify(rb.tokenIds) === JSON.stringify(sb.tokenIds);
    const concurrent = { ok, detail: `${a.merge}/${a.name}: '${ra.text}' (alone '${sa.text}'), ${b.merge}/${b.name}: '${rb.text}' (alone '${sb.text}')` };
    const end = point(calls);
    maxRssMb = Math.max(maxRssMb, end.rssMb);
    return { calls, backend: model.backend.name, inputs: combos.length, start: start as SoakPoint, warm: warm ?? end, end, maxRssMb, mismatches, tensorDrift, msPerCall, concurrent };
  } finally {
    model.dispose();
  }
}

export function soakTable(r: SoakResult): string {
  const row = (label: string, p: SoakPoint) => `| ${label} | ${p.call} | ${p.numTensors} | ${p.rssMb.toFixed(1)} | ${p.heapMb.toFixed(1)} |`;
  return [
    `${r.calls} generate calls on ${r.backend}, ${r.inputs} inputs (${PRESETS.join('/')} x ${r.inputs / PRESETS.length} images), ${r.msPerCall.toFixed(0)} ms/call`,
    '',
    '| point | after call | tf numTensors | RSS MB | wasm heap MB |',
    '|---|---|---|---|---|',
    row('start', r.start),
    row('warm (every input once)', r.warm),
    row('end (+ concurrent pair)', r.end),
    '',
    `max RSS ${r.maxRssMb.toFixed(1)} MB; RSS end - warm ${(r.end.rssMb - r.warm.rssMb).toFixed(1)} MB; numTensors drift after ${r.tensorDrift.length} call(s); answers differing from the first run of the same input: ${r.mismatches.length}`,
    `concurrent pair: ${r.concurrent.ok ? 'each as alone' : 'DIFFERENT'} (${r.concurrent.detail})`,
  ].join('\n');
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const a = scriptArgs('soak', 'usage: node dist/scripts/soak.js [--calls 200] [--backend wasm|cpu] [--model DIR] [--out bench/results]', {
    calls: { type: 'string', default: '200' },
    backend: { type: 'string', default: 'wasm' },
    model: { type: 'string' },
    out: { type: 'string', default: join(ROOT, 'bench', 'results') },
  });
  const calls = Number(a.calls);
  if (!Number.isInteger(calls) || calls < 1) {
    process.stderr.write(`soak: --calls expects an integer >= 1, got '${a.calls}'\n`);
    process.exit(1);
  }
  const r = await soak(calls, { model: a.model, backend: a.backend as BackendName, onCall: (p) => { if (p.call % 50 === 0) process.stderr.write(`call ${p.call}: ${p.numTensors} tensors, RSS ${p.rssMb.toFixed(1)} MB\n`); } });
  process.stdout.write(`${soakTable(r)}\n`);
  mkdirSync(a.out, { recursive: true });
  const file = join(a.out, `soak-${new Date().toISOString().slice(0, 16).replace(/[:T]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify(r, null, 2));
  process.stdout.write(`wrote ${file}\n`);
  process.exitCode = r.mismatches.length === 0 && r.tensorDrift.length === 0 && r.concurrent.ok ? 0 : 1;
}
