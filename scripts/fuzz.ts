// Fuzz harness (issue 11): seeded mutations of the inputs a user can hand illava, each run in a
// child process with a time limit, classified as
//   clean    one `illava: ...` line on stderr, exit 1
//   accepted exit 0 (the mutation left the input valid, or it was harmless)
//   crash    anything else: a stack trace, a signal, another exit code, several error lines
//   hang     past the time limit
//   memory   peak RSS over the memory limit (default 2 GiB)
// Mutated: the safetensors file (length prefix, header bytes, offsets, dtypes, huge shapes,
// truncation), model.safetensors.index.json and the tfjs model.json manifest (`../`, absolute and
// backslash shard paths, symbolic links out of the model folder, missing or misplaced tensors,
// dtypes, shapes, quantization, truncated shards, duplicate keys), config.json (absurd sizes,
// floats, NaN-like values), preprocessor_config.json, tokenizer.json (truncation, byte flips),
// images (truncated PNG/JPEG, lying headers, aspect ratios, non-regular files) and merge configs
// (NaN, Infinity, floats, strings).
// Every file a case opens outside its model folder (symbolic links resolved; the project's code
// excepted) is recorded by the child (fuzz-child.ts) and counted in the "outside" column: the
// folder next to each case holds valid copies of the weight files, so a loader that followed a
// `../` path or a link out of the folder would read them and answer.
//   node dist/scripts/fuzz.js [--cases 200] [--seed 1] [--timeout-ms 30000] [--memory-mb 2048] [--json FILE]
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import seedrandom from 'seedrandom';
import { scriptArgs } from './args.js';
import { greyPng, gifWithFrame, tiffHeader } from '../test/helpers/images.js';
import { SafetensorsFile, openSafetensors, writeTfjsWeights, INDEX_FILE } from '../weights/index.js';
import { encodeSafetensors } from '../src/train/safetensors-write.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const FIXTURE = join(ROOT, 'test/fixtures/tiny-llava');
const CHILD = join(ROOT, 'dist/scripts/fuzz-child.js');

export type Outcome = 'clean' | 'accepted' | 'crash' | 'hang' | 'memory';
export interface CaseResult {
  kind: string;
  what: string;
  outcome: Outcome;
  ms: number;
  maxRssMb: number;
  detail: string;
  /** Files the case opened outside its model folder (symbolic links resolved). */
  outside: string[];
}

type Rng = () => number;
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)];
const int = (rng: Rng, n: number) => Math.floor(rng() * n);

const ABSURD = [0, -1, 1.5, 1e9, 2 ** 53, 2 ** 64, -0, 1e308, 1e-300, 36000, 128000000000, '12', null, true, [], {}];

const SHARDS = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
/** Text of a file standing for a private file outside the model folder. */
const SECRET = 'root:x:0:0:root:/root:/bin/bash\n';

/**
 * The weight layouts a case starts from, written once per run into `work`: the fixture's
 * safetensors split into two shards with an index (`index/`), and as tfjs shards with a model.json
 * (`tfjs/`); `outside/` holds copies of all of them and a private-looking file, outside every
 * case's model folder.
 */
function prepareTemplates(work: string): { index: string; tfjs: string; outside: string } {
  const index = join(work, 'index');
  const tfjs = join(work, 'tfjs');
  const outside = join(work, 'outside');
  for (const d of [index, tfjs, outside]) mkdirSync(d, { recursive: true });
  const file = SafetensorsFile.open(join(FIXTURE, 'model.safetensors'));
  try {
    const names = file.names().sort();
    const half = Math.ceil(names.length / 2);
    const weightMap: Record<string, string> = {};
    SHARDS.forEach((shard, s) => {
      const part = s === 0 ? names.slice(0, half) : names.slice(half);
      const tensors = part.map((name) => ({ name, shape: [...(file.entry(name)?.shape ?? [])], data: file.readFloat32(name) }));
      writeFileSync(join(index, shard), encodeSafetensors(tensors));
      for (const n of part) weightMap[n] = shard;
    });
    writeFileSync(join(index, INDEX_FILE), JSON.stringify({ metadata: { total_size: file.fileSize }, weight_map: weightMap }, null, 2));
  } finally {
    file.close();
  }
  const source = openSafetensors(join(FIXTURE, 'model.safetensors'));
  try {
    writeTfjsWeights(source, tfjs, { shardBytes: 4 * 1024 * 1024 });
  } finally {
    source.close();
  }
  for (const d of [index, tfjs]) for (const f of readdirSync(d)) copyFileSync(join(d, f), join(outside, f));
  writeFileSync(join(outside, 'secret'), SECRET);
  return { index, tfjs, outside };
}

type Templates = ReturnType<typeof prepareTemplates>;

/** A fresh copy of the fixture model in `dir`, its weights as one safetensors file, an index with shards, or tfjs shards. */
function copyModel(dir: string, weights: 'single' | { from: string }): void {
  mkdirSync(dir, { recursive: true });
  for (const f of ['config.json', 'preprocessor_config.json', 'tokenizer.json', 'tokenizer_config.json', 'image.png']) copyFileSync(join(FIXTURE, f), join(dir, f));
  if (weights === 'single') copyFileSync(join(FIXTURE, 'model.safetensors'), join(dir, 'model.safetensors'));
  else for (const f of readdirSync(weights.from)) copyFileSync(join(weights.from, f), join(dir, f));
}

/** Replaces `dir/name` by a symbolic link to `target`. */
function relink(dir: string, name: string, target: string): void {
  rmSync(join(dir, name), { force: true });
  symlinkSync(target, join(dir, name));
}

/** Byte-level damage to a JSON file: truncation or one byte changed. */
function damage(rng: Rng, file: string): string {
  const b = Buffer.from(readFileSync(file));
  const at = int(rng, b.length);
  if (rng() < 0.5) {
    writeFileSync(file, b.subarray(0, at));
    return `truncated at ${at}`;
  }
  b[at] = int(rng, 256);
  writeFileSync(file, b);
  return `byte ${at}`;
}

/** Mutations of a sharded model's model.safetensors.index.json and its shards. */
function indexCase(rng: Rng, dir: string, t: Templates): string {
  copyModel(dir, { from: t.index });
  const file = join(dir, INDEX_FILE);
  const index = JSON.parse(readFileSync(file, 'utf8')) as { weight_map: Record<string, unknown> };
  const names = Object.keys(index.weight_map);
  const name = pick(rng, names);
  const shard = index.weight_map[name] as string;
  const mode = pick(rng, ['dotdot', 'absolute', 'backslash', 'symlink-shard', 'symlink-secret', 'symlink-index', 'shard-dir', 'missing-entry', 'missing-shard', 'wrong-shard', 'unknown-tensor', 'value-type', 'map-type', 'duplicate', 'damage', 'many-missing', 'truncate-shard']);
  const write = () => writeFileSync(file, JSON.stringify(index, null, 2));
  if (mode === 'dotdot') index.weight_map[name] = `../outside/${shard}`;
  else if (mode === 'absolute') index.weight_map[name] = join(t.outside, shard);
  else if (mode === 'backslash') index.weight_map[name] = `..\\outside\\${shard}`;
  else if (mode === 'symlink-shard') relink(dir, shard, join(t.outside, shard));
  else if (mode === 'symlink-secret') relink(dir, shard, join(t.outside, 'secret'));
  else if (mode === 'symlink-index') relink(dir, INDEX_FILE, join(t.outside, INDEX_FILE));
  else if (mode === 'shard-dir') {
    rmSync(join(dir, shard));
    mkdirSync(join(dir, shard));
  } else if (mode === 'missing-entry') delete index.weight_map[name];
  else if (mode === 'missing-shard') index.weight_map[name] = 'model-00003-of-00002.safetensors';
  else if (mode === 'wrong-shard') index.weight_map[name] = SHARDS.find((s) => s !== shard) as string;
  else if (mode === 'unknown-tensor') index.weight_map['language_model.model.layers.99.mlp.up_proj.weight'] = shard;
  else if (mode === 'value-type') index.weight_map[name] = pick(rng, ABSURD);
  else if (mode === 'map-type') (index as Record<string, unknown>).weight_map = pick(rng, [null, [], 'model.safetensors', 42]);
  else if (mode === 'many-missing') for (let i = 0; i < 20000; i++) index.weight_map[`extra.${i}.weight`] = `missing-${i}.safetensors`;
  else if (mode === 'truncate-shard') {
    const b = readFileSync(join(dir, shard));
    writeFileSync(join(dir, shard), b.subarray(0, int(rng, b.length)));
  }
  if (['dotdot', 'absolute', 'backslash', 'missing-entry', 'missing-shard', 'wrong-shard', 'unknown-tensor', 'value-type', 'map-type', 'many-missing'].includes(mode)) write();
  // A tensor listed twice (in both shards), or two weight_maps.
  if (mode === 'duplicate') writeFileSync(file, rng() < 0.5 ? readFileSync(file, 'utf8').replace('"weight_map": {', `"weight_map": {"${name}": "${SHARDS.find((x) => x !== shard) as string}",`) : `{"weight_map": {},${readFileSync(file, 'utf8').slice(1)}`);
  if (mode === 'damage') return `damage ${damage(rng, file)}`;
  return `${mode} ${name}`;
}

/** Mutations of a tfjs weights manifest (model.json) and its shards. */
function tfjsCase(rng: Rng, dir: string, t: Templates): string {
  copyModel(dir, { from: t.tfjs });
  const file = join(dir, 'model.json');
  const json = JSON.parse(readFileSync(file, 'utf8')) as { weightsManifest: Array<{ paths: unknown[]; weights: Array<Record<string, unknown>> }> };
  const group = json.weightsManifest[0];
  const p = int(rng, group.paths.length);
  const shard = group.paths[p] as string;
  const w = int(rng, group.weights.length);
  const mode = pick(rng, ['dotdot', 'absolute', 'backslash', 'symlink-shard', 'symlink-secret', 'symlink-manifest', 'shard-dir', 'dtype', 'shape', 'quantization', 'drop-weight', 'duplicate-weight', 'drop-path', 'path-type', 'truncate-shard', 'extend-shard', 'duplicate', 'damage', 'manifest-type']);
  if (mode === 'dotdot') group.paths[p] = `../outside/${shard}`;
  else if (mode === 'absolute') group.paths[p] = join(t.outside, shard);
  else if (mode === 'backslash') group.paths[p] = `..\\outside\\${shard}`;
  else if (mode === 'symlink-shard') relink(dir, shard, join(t.outside, shard));
  else if (mode === 'symlink-secret') relink(dir, shard, join(t.outside, 'secret'));
  else if (mode === 'symlink-manifest') relink(dir, 'model.json', join(t.outside, 'model.json'));
  else if (mode === 'shard-dir') {
    rmSync(join(dir, shard));
    mkdirSync(join(dir, shard));
  } else if (mode === 'dtype') group.weights[w].dtype = pick(rng, ['float16', 'int32', 'string', 'bool', 'complex64', 42, null]);
  else if (mode === 'shape') group.weights[w].shape = pick(rng, [[-1], [1.5], [2 ** 53], 'x', [], [1e9, 1e9], [0]]);
  else if (mode === 'quantization') group.weights[w].quantization = pick(rng, [{ dtype: 'uint8', scale: 1, min: 0 }, { dtype: 'float16' }, { dtype: 'uint16', scale: NaN, min: 0 }, { dtype: 'bogus' }, null, 'float16']);
  else if (mode === 'drop-weight') group.weights.splice(w, 1);
  else if (mode === 'duplicate-weight') group.weights.push({ ...group.weights[w] });
  else if (mode === 'drop-path') group.paths.splice(p, 1);
  else if (mode === 'path-type') group.paths[p] = pick(rng, ABSURD);
  else if (mode === 'manifest-type') (json as Record<string, unknown>).weightsManifest = pick(rng, [null, {}, 'x', [null], [{ paths: 'x', weights: [] }]]);
  else if (mode === 'truncate-shard' || mode === 'extend-shard') {
    const b = readFileSync(join(dir, shard));
    writeFileSync(join(dir, shard), mode === 'truncate-shard' ? b.subarray(0, int(rng, b.length)) : Buffer.concat([b, Buffer.alloc(1 + int(rng, 64))]));
  }
  if (!['symlink-shard', 'symlink-secret', 'symlink-manifest', 'shard-dir', 'truncate-shard', 'extend-shard', 'duplicate', 'damage'].includes(mode)) writeFileSync(file, JSON.stringify(json));
  if (mode === 'duplicate') writeFileSync(file, `{"weightsManifest": [],${JSON.stringify(json).slice(1)}`);
  if (mode === 'damage') return `damage ${damage(rng, file)}`;
  const weightModes = ['dtype', 'shape', 'quantization', 'drop-weight', 'duplicate-weight'];
  return `${mode} ${weightModes.includes(mode) ? String(group.weights[w]?.name ?? w) : shard}`;
}

export interface Case { kind: string; what: string; args: string[]; dir: string }

function makeCase(rng: Rng, dir: string, templates: Templates): Case {
  const kind = pick(rng, ['safetensors', 'index', 'tfjs', 'config', 'preprocessor', 'tokenizer', 'image', 'merge'] as const);
  const base = ['generate', '--model', dir, '--prompt', 'What is it?', '--max-new-tokens', '2', '--backend', 'wasm'];
  const image = join(dir, 'image.png');
  if (kind === 'index' || kind === 'tfjs') {
    const what = kind === 'index' ? indexCase(rng, dir, templates) : tfjsCase(rng, dir, templates);
    return { kind, what, args: [...base, '--image', image], dir };
  }
  copyModel(dir, 'single');
  if (kind === 'safetensors') {
    const path = join(dir, 'model.safetensors');
    const b = Buffer.from(readFileSync(path));
    const n = Number(b.readBigUInt64LE(0));
    const mode = pick(rng, ['length', 'flip-header', 'truncate', 'offset-text', 'dtype', 'shape-overflow', 'duplicate', 'non-finite']);
    let out: Buffer = b;
    let what: string = mode;
    if (mode === 'non-finite') {
      // One float32 weight (the data section is F32, 4-byte aligned) made NaN or +-Infinity.
      const at = 8 + n + 4 * int(rng, (b.length - 8 - n) / 4);
      const value = pick(rng, [NaN, Infinity, -Infinity]);
      out.writeFloatLE(value, at);
      what = `${value} at byte ${at}`;
    } else if (mode === 'length') {
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
    return { kind, what, args: [...base, '--image', image], dir };
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
    return { kind, what: `${section ? `${section}.` : ''}${key} = ${JSON.stringify(value)}`, args: [...base, '--image', image], dir };
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
    return { kind, what: `${mode} at ${at}`, args: [...base, '--image', image], dir };
  }
  if (kind === 'image') {
    const file = join(dir, 'fuzz-image');
    const png = readFileSync(image);
    const mode = pick(rng, ['truncate', 'flip', 'huge', 'aspect', 'gif-frame', 'tiff', 'devzero']);
    let what: string = mode;
    if (mode === 'devzero') return { kind, what, args: [...base, '--image', '/dev/zero'], dir };
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
    return { kind, what, args: [...base, '--image', file], dir };
  }
  const value = pick(rng, [NaN, Infinity, -1, 0.5, 1.5, 1e308, '0.5', 'yes', null]);
  const spec = pick(rng, [
    `{"llm":{"rule":"fastv","layers":[1],"keep":${JSON.stringify(value)}}}`.replace('null', String(value)),
    `{"vision":{"rule":"tome","layers":[0],"remove":${String(value)}}}`,
    `{"vision":{"rule":"illava","layers":[0],"remove":4,"recycleRatio":${String(value)}}}`,
    `{"llm":{"rule":"illava","layers":[${String(value)}],"keep":0.5}}`,
  ]);
  return { kind: 'merge', what: spec, args: [...base, '--image', image, '--merge', spec], dir };
}

export function runCase(c: Case, timeoutMs: number, memoryMb: number): CaseResult {
  const t = performance.now();
  // the project's package.json too: the CLI reads its version there
  const allow = [c.dir, join(ROOT, 'dist'), join(ROOT, 'node_modules'), join(ROOT, 'package.json')].join(':');
  const r = spawnSync(process.execPath, [CHILD, ...c.args], { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, FUZZ_ALLOW: allow } });
  const ms = performance.now() - t;
  const rss = /FUZZ_MAXRSS_KB=(\d+)/.exec(r.stderr ?? '');
  const maxRssMb = rss ? Number(rss[1]) / 1024 : 0;
  const opened = /FUZZ_OUTSIDE=(.*)/.exec(r.stderr ?? '');
  const outside = opened ? (JSON.parse(opened[1]) as string[]) : [];
  const stderr = (r.stderr ?? '').replace(/\n?FUZZ_OUTSIDE=.*\n?/, '\n').replace(/\n?FUZZ_MAXRSS_KB=\d+\n?/, '');
  const errors = stderr.split('\n').filter((l) => /^(illava:(?! warning)|error|Error|\s+at )/.test(l));
  let outcome: Outcome;
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ETIMEDOUT') outcome = 'hang';
  else if (maxRssMb > memoryMb) outcome = 'memory';
  else if (r.status === 0) outcome = 'accepted';
  else if (r.status === 1 && errors.length === 1 && errors[0].startsWith('illava:')) outcome = 'clean';
  else outcome = 'crash';
  return { kind: c.kind, what: c.what, outcome, ms, maxRssMb, detail: (errors[0] ?? stderr.trim().split('\n').pop() ?? '').slice(0, 200), outside };
}

/** A case that failed: crash, hang, memory blow-up or a read outside the model folder. */
export const failed = (r: CaseResult): boolean => (r.outcome !== 'clean' && r.outcome !== 'accepted') || r.outside.length > 0;

/** Runs `cases` seeded cases; `onCase` sees each result as it comes (logs, progress files). */
export function fuzz(cases: number, seed: number, timeoutMs = 30000, memoryMb = 2048, onCase?: (r: CaseResult, i: number, all: CaseResult[]) => void): CaseResult[] {
  const rng = seedrandom(`illava-fuzz/${seed}`);
  const work = mkdtempSync(join(tmpdir(), 'illava-fuzz-'));
  const results: CaseResult[] = [];
  try {
    const templates = prepareTemplates(work);
    for (let i = 0; i < cases; i++) {
      const dir = join(work, `case-${i}`);
      const c = makeCase(rng, dir, templates);
      const res = runCase(c, timeoutMs, memoryMb);
      results.push(res);
      onCase?.(res, i, results);
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
  const row = (k: string, rs: CaseResult[]) =>
    `| ${k} | ${rs.length} | ${outcomes.map((o) => rs.filter((r) => r.outcome === o).length).join(' | ')} | ${rs.filter((r) => r.outside.length > 0).length} | ${Math.max(...rs.map((r) => r.ms)).toFixed(0)} | ${Math.max(...rs.map((r) => r.maxRssMb)).toFixed(0)} |`;
  const rows = kinds.map((k) => row(k, results.filter((r) => r.kind === k)));
  return ['| input | cases | clean | accepted | crash | hang | memory | outside reads | max ms | max RSS MB |', '|---|---|---|---|---|---|---|---|---|---|', ...rows, row('**all**', results)].join('\n');
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const a = scriptArgs('fuzz', 'usage: node dist/scripts/fuzz.js [--cases 200] [--seed 1] [--timeout-ms 30000] [--memory-mb 2048] [--json FILE]', {
    cases: { type: 'string', default: '200' },
    seed: { type: 'string', default: '1' },
    'timeout-ms': { type: 'string', default: '30000' },
    'memory-mb': { type: 'string', default: '2048' },
    json: { type: 'string' },
  });
  const json = a.json;
  const results = fuzz(Number(a.cases), Number(a.seed), Number(a['timeout-ms']), Number(a['memory-mb']), (res, i, all) => {
    process.stderr.write(`${String(i).padStart(4)} ${res.outcome.padEnd(8)} ${res.kind.padEnd(12)} ${res.ms.toFixed(0).padStart(6)} ms ${res.maxRssMb.toFixed(0).padStart(5)} MB ${res.outside.length > 0 ? 'OUTSIDE ' : ''} ${res.what.slice(0, 60)}  ${res.detail.slice(0, 90)}\n`);
    if (json && (i + 1) % 25 === 0) writeFileSync(json, JSON.stringify(all, null, 2)); // progress, in case the run is stopped
  });
  process.stdout.write(`${table(results)}\n`);
  for (const r of results.filter((x) => x.outcome === 'accepted')) process.stdout.write(`accepted: ${r.kind}: ${r.what}\n`);
  for (const r of results.filter(failed)) process.stdout.write(`${r.outcome}${r.outside.length > 0 ? ` (read outside the model folder: ${r.outside.join(', ')})` : ''}: ${r.kind}: ${r.what}: ${r.detail}\n`);
  if (json) writeFileSync(json, JSON.stringify(results, null, 2));
  process.exitCode = results.some(failed) ? 1 : 0;
}
