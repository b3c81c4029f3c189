// Fuzz harness (issue 11): seeded mutations of the inputs a user can hand illava, each run in a
// child process with a time limit, classified as
//   clean    one `illava: ...` line on stderr, exit 1
//   accepted exit 0 (the mutation left the input valid, or it was harmless)
//   crash    anything else: a stack trace, a signal, another exit code, several error lines
//   hang     past the time limit
//   memory   peak RSS over the memory limit (default 2 GiB)
// Mutated: the safetensors file (length prefix, header bytes, offsets, dtypes, huge shapes,
// truncation), config.json (absurd sizes, floats, NaN-like values), preprocessor_config.json,
// tokenizer.json (truncation, byte flips), images (truncated PNG/JPEG, lying headers, aspect
// ratios, non-regular files) and merge configs (NaN, Infinity, floats, strings).
//   node dist/scripts/fuzz.js [--cases 200] [--seed 1] [--timeout-ms 30000] [--memory-mb 2048] [--json FILE]
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import seedrandom from 'seedrandom';
import { scriptArgs } from './args.js';
import { greyPng, gifWithFrame, tiffHeader } from '../test/helpers/images.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const FIXTURE = join(ROOT, 'test/fixtures/tiny-llava');
const CHILD = join(ROOT, 'dist/scripts/fuzz-child.js');

export type Outcome = 'clean' | 'accepted' | 'crash' | 'hang' | 'memory';
export interface CaseResult { kind: string; what: string; outcome: Outcome; ms: number; maxRssMb: number; detail: string }

type Rng = () => number;
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)];
const int = (rng: Rng, n: number) => Math.floor(rng() * n);

const ABSURD = [0, -1, 1.5, 1e9, 2 ** 53, 2 ** 64, -0, 1e308, 1e-300, 36000, 128000000000, '12', null, true, [], {}];

/** A fresh copy of the fixture model in `dir`. */
function copyModel(dir: string): void {
  mkdirSync(dir, { recursive: true });
  for (const f of ['config.json', 'preprocessor_config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors', 'image.png']) copyFileSync(join(FIXTURE, f), join(dir, f));
}

interface Case { kind: string; what: string; args: string[] }

function makeCase(rng: Rng, dir: string): Case {
  copyModel(dir);
  const base = ['generate', '--model', dir, '--prompt', 'What is it?', '--max-new-tokens', '2', '--backend', 'wasm'];
  const image = join(dir, 'image.png');
  const kind = pick(rng, ['safetensors', 'config', 'preprocessor', 'tokenizer', 'image', 'merge'] as const);
  if (kind === 'safetensors') {
    const path = join(dir, 'model.safetensors');
    const b = Buffer.from(readFileSync(path));
    const n = Number(b.readBigUInt64LE(0));
    const mode = pick(rng, ['length', 'flip-header', 'truncate', 'offset-text', 'dtype', 'shape-overflow', 'duplicate']);
    let out: Buffer = b;
    let what: string = mode;
    if (mode === 'length') {
      const v = pick(rng, [0n, 1n, BigInt(n - 1), BigInt(n + 1), 2n ** 63n, 2n ** 64n - 1n, 0x3a783a746f6f72n]);
      out.writeBigUInt64LE(v, 0);
      what = `length ${v}`;
    } else if (mode === 'flip-header') {
      const at = 8 + int(rng, n);
      out[at] = int(rng, 256);
      what = `header byte ${at}`;
    } else if (mode === 'truncate') {
      const at = int(rng, b.length);
      out = b.subarray(0, at);
      what = `truncated at ${at}`;
    } else {
      let header = b.toString('utf8', 8, 8 + n);
      if (mode === 'offset-text') header = header.replace(/"data_offsets":\[(\d+),(\d+)\]/, (_m, a, e) => `"data_offsets":[${a},${pick(rng, [`${e}.0`, `${Number(e) / 100}e2`, `-0`, `${e}e0`])}]`);
      if (mode === 'dtype') header = header.replace(/"dtype":"F32"/, `"dtype":"${pick(rng, ['F64', 'I8', 'F33', ''])}"`);
      if (mode === 'shape-overflow') header = header.replace(/"shape":\[(\d+)/, `"shape":[${pick(rng, ['9007199254740993', '4294967296', '1e400'])}`);
      if (mode === 'duplicate') header = header.replace(/^\{/, '{"__metadata__":{"a":"b"},"__metadata__":{"a":"c"},');
      const hb = Buffer.from(header, 'utf8');
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(hb.length));
      out = Buffer.concat([len, hb, b.subarray(8 + n)]);
    }
    writeFileSync(path, out);
    return { kind, what, args: [...base, '--image', image] };
  }
  if (kind === 'config' || kind === 'preprocessor') {
    const file = join(dir, kind === 'config' ? 'config.json' : 'preprocessor_config.json');
    const cfg = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    const sections = kind === 'config' ? ['text_config', 'vision_config', ''] : [''];
    const section = pick(rng, sections);
    const obj = (section ? cfg[section] : cfg) as Record<string, unknown>;
    const keys = Object.keys(obj).filter((k) => typeof obj[k] === 'number' || (kind === 'preprocessor' && k !== 'image_processor_type'));
    const key = pick(rng, keys);
    const value = pick(rng, ABSURD);
    obj[key] = value;
    writeFileSync(file, JSON.stringify(cfg));
    return { kind, what: `${section ? `${section}.` : ''}${key} = ${JSON.stringify(value)}`, args: [...base, '--image', image] };
  }
  if (kind === 'tokenizer') {
    const file = join(dir, 'tokenizer.json');
    const b = Buffer.from(readFileSync(file));
    const at = int(rng, b.length);
    const mode = pick(rng, ['truncate', 'flip']);
    if (mode === 'truncate') writeFileSync(file, b.subarray(0, at));
    else {
      b[at] = int(rng, 256);
      writeFileSync(file, b);
    }
    return { kind, what: `${mode} at ${at}`, args: [...base, '--image', image] };
  }
  if (kind === 'image') {
    const file = join(dir, 'fuzz-image');
    const png = readFileSync(image);
    const mode = pick(rng, ['truncate', 'flip', 'huge', 'aspect', 'gif-frame', 'tiff', 'devzero']);
    let what: string = mode;
    if (mode === 'devzero') return { kind, what, args: [...base, '--image', '/dev/zero'] };
    let bytes: Buffer;
    if (mode === 'truncate') {
      const at = int(rng, png.length);
      bytes = png.subarray(0, at);
      what = `truncated at ${at}`;
    } else if (mode === 'flip') {
      bytes = Buffer.from(png);
      const at = int(rng, bytes.length);
      bytes[at] = int(rng, 256);
      what = `byte ${at}`;
    } else if (mode === 'huge') {
      const s = pick(rng, [8000, 16000, 65535]);
      bytes = greyPng(s, s, 1);
      what = `${s}x${s} with 1 row`;
    } else if (mode === 'aspect') {
      const [w, h] = pick(rng, [[400000, 1], [100000, 2], [1, 60000], [5000, 3]]);
      bytes = greyPng(w, h);
      what = `${w}x${h}`;
    } else if (mode === 'gif-frame') bytes = gifWithFrame(1, 1, 112, 112);
    else bytes = tiffHeader(14000, 14000, 200);
    writeFileSync(file, bytes);
    return { kind, what, args: [...base, '--image', file] };
  }
  const value = pick(rng, [NaN, Infinity, -1, 0.5, 1.5, 1e308, '0.5', 'yes', null]);
  const spec = pick(rng, [
    `{"llm":{"rule":"fastv","layers":[1],"keep":${JSON.stringify(value)}}}`.replace('null', String(value)),
    `{"vision":{"rule":"tome","layers":[0],"remove":${String(value)}}}`,
    `{"vision":{"rule":"illava","layers":[0],"remove":4,"recycleRatio":${String(value)}}}`,
    `{"llm":{"rule":"illava","layers":[${String(value)}],"keep":0.5}}`,
  ]);
  return { kind: 'merge', what: spec, args: [...base, '--image', image, '--merge', spec] };
}

export function runCase(c: Case, timeoutMs: number, memoryMb: number): CaseResult {
  const t = performance.now();
  const r = spawnSync(process.execPath, [CHILD, ...c.args], { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 });
  const ms = performance.now() - t;
  const rss = /FUZZ_MAXRSS_KB=(\d+)/.exec(r.stderr ?? '');
  const maxRssMb = rss ? Number(rss[1]) / 1024 : 0;
  const stderr = (r.stderr ?? '').replace(/\n?FUZZ_MAXRSS_KB=\d+\n?/, '');
  const errors = stderr.split('\n').filter((l) => /^(illava:(?! warning)|error|Error|\s+at )/.test(l));
  let outcome: Outcome;
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ETIMEDOUT') outcome = 'hang';
  else if (maxRssMb > memoryMb) outcome = 'memory';
  else if (r.status === 0) outcome = 'accepted';
  else if (r.status === 1 && errors.length === 1 && errors[0].startsWith('illava:')) outcome = 'clean';
  else outcome = 'crash';
  return { kind: c.kind, what: c.what, outcome, ms, maxRssMb, detail: (errors[0] ?? stderr.trim().split('\n').pop() ?? '').slice(0, 200) };
}

export function fuzz(cases: number, seed: number, timeoutMs = 30000, memoryMb = 2048, log = false): CaseResult[] {
  const rng = seedrandom(`illava-fuzz/${seed}`);
  const work = mkdtempSync(join(tmpdir(), 'illava-fuzz-'));
  const results: CaseResult[] = [];
  try {
    for (let i = 0; i < cases; i++) {
      const dir = join(work, `case-${i}`);
      const c = makeCase(rng, dir);
      const res = runCase(c, timeoutMs, memoryMb);
      results.push(res);
      if (log) process.stderr.write(`${String(i).padStart(4)} ${res.outcome.padEnd(8)} ${res.kind.padEnd(12)} ${res.ms.toFixed(0).padStart(6)} ms ${res.maxRssMb.toFixed(0).padStart(5)} MB  ${res.what.slice(0, 60)}  ${res.detail.slice(0, 90)}\n`);
      rmSync(dir, { recursive: true, force: true });
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return results;
}

/** Markdown table: outcomes per kind. */
export function table(results: CaseResult[]): string {
  const outcomes: Outcome[] = ['clean', 'accepted', 'crash', 'hang', 'memory'];
  const kinds = [...new Set(results.map((r) => r.kind))].sort();
  const rows = kinds.map((k) => {
    const rs = results.filter((r) => r.kind === k);
    return `| ${k} | ${rs.length} | ${outcomes.map((o) => rs.filter((r) => r.outcome === o).length).join(' | ')} | ${Math.max(...rs.map((r) => r.ms)).toFixed(0)} | ${Math.max(...rs.map((r) => r.maxRssMb)).toFixed(0)} |`;
  });
  return ['| input | cases | clean | accepted | crash | hang | memory | max ms | max RSS MB |', '|---|---|---|---|---|---|---|---|---|', ...rows].join('\n');
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const a = scriptArgs('fuzz', 'usage: node dist/scripts/fuzz.js [--cases 200] [--seed 1] [--timeout-ms 30000] [--memory-mb 2048] [--json FILE]', {
    cases: { type: 'string', default: '200' },
    seed: { type: 'string', default: '1' },
    'timeout-ms': { type: 'string', default: '30000' },
    'memory-mb': { type: 'string', default: '2048' },
    json: { type: 'string' },
  });
  const results = fuzz(Number(a.cases), Number(a.seed), Number(a['timeout-ms']), Number(a['memory-mb']), true);
  process.stdout.write(`${table(results)}\n`);
  for (const r of results.filter((x) => x.outcome === 'accepted')) process.stdout.write(`accepted: ${r.kind}: ${r.what}\n`);
  for (const r of results.filter((x) => x.outcome !== 'clean' && x.outcome !== 'accepted')) process.stdout.write(`${r.outcome}: ${r.kind}: ${r.what}: ${r.detail}\n`);
  if (a.json) writeFileSync(a.json, JSON.stringify(results, null, 2));
  process.exitCode = results.some((r) => r.outcome !== 'clean' && r.outcome !== 'accepted') ? 1 : 0;
}
