// Batch jobs on a Redis queue (BullMQ): the job's data (one line of a JSONL file, or one image of a
// folder), its result, and reading the inputs. `illava batch` (src/cli-batch.ts) enqueues them,
// `illava worker` (src/batch-worker.ts) answers them. One job per input id: the BullMQ job id is
// derived from it, so enqueuing the same input again adds nothing.
import { readdirSync, statSync } from 'node:fs';
import { dirname, extname, isAbsolute, join, relative, resolve } from 'node:path';
import type { ChatMessage } from './conversation.js';
import type { StageTimings } from './generate-types.js';
import { readRegularFileSync, utf8Text } from './files.js';

/** What a worker receives: one input, its images as absolute paths or data: URLs. */
export interface BatchJobData {
  /** The input's id (unique within a queue). */
  id: string;
  /** Position in the input (for --ordered). */
  index: number;
  prompt?: string;
  messages?: ChatMessage[];
  images?: string[];
  video?: string[];
  /** A preset name, a merge config object, or JSON text (as --merge). */
  merge?: string | Record<string, unknown>;
  maxTokens?: number;
}

/** generate()'s timings (totalMs: generate() alone) and the queue's. */
export interface BatchTimings extends StageTimings {
  /** From enqueue to the start of the attempt that answered. */
  queueMs: number;
  /** The whole job on the worker (checks, image decoding, generate). */
  jobMs: number;
}

/** A worker's answer to one job (the BullMQ return value, and one line of --out). */
export interface BatchResult {
  id: string;
  text: string;
  tokenIds: number[];
  finishReason: 'stop' | 'length';
  tokens: { prompt: number; afterMerge: number; generated: number };
  merges: Array<{ patches: number; tokens: number; vision: Array<{ layer: number; tokens: number }>; language: Array<{ layer: number; tokens: number }> }>;
  timings: BatchTimings;
  worker: string;
  /** Attempt that answered (1 = first). */
  attempt: number;
}

/** A failed job's line in --out. */
export interface BatchFailure {
  id: string;
  error: string;
  attempts: number;
}

/** BullMQ refuses integer-like custom ids and ':'; the job id is the input id with a prefix and ':' / '%' escaped. */
export function jobIdFor(id: string): string {
  return `id-${id.replace(/%/g, '%25').replace(/:/g, '%3A')}`;
}

export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg', '.webp', '.bmp', '.gif', '.tif', '.tiff'];
/** Largest JSONL input read (bytes). */
export const MAX_JSONL_BYTES = 1024 * 1024 * 1024;
const MAX_ID_LENGTH = 512;

export interface ReadInputOptions {
  /** Prompt of folder images and of lines with neither prompt nor messages. */
  prompt?: string;
  merge?: string;
  maxTokens?: number;
  /** Called for each line whose id was already seen (the first one is kept). */
  onDuplicate?: (id: string, where: string) => void;
}

function describe(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}

/** A path relative to the JSONL file's folder, made absolute; data: URLs are kept as they are. */
function imageRef(v: unknown, base: string, where: string): string {
  if (typeof v !== 'string' || v === '') throw new Error(`${where} must be a non-empty string (a path or a data: URL), got ${describe(v)}`);
  if (/^data:/i.test(v)) return v;
  if (/^file:/i.test(v)) return v;
  if (/^https?:/i.test(v)) throw new Error(`${where}: remote image URLs are not fetched; give a path or a data: URL`);
  return isAbsolute(v) ? v : resolve(base, v);
}

function imageList(v: unknown, base: string, where: string): string[] {
  if (!Array.isArray(v) || v.length === 0) throw new Error(`${where} must be a non-empty array of paths or data: URLs, got ${describe(v)}`);
  return v.map((x, i) => imageRef(x, base, `${where}[${i}]`));
}

/** One JSONL line -> job data (throws `where: what is wrong`). */
export function parseJobLine(value: unknown, index: number, base: string, where: string, opts: ReadInputOptions = {}): BatchJobData {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${where}: expected a JSON object {"id", "image", "prompt", ...}, got ${describe(value)}`);
  const o = value as Record<string, unknown>;
  const known = ['id', 'image', 'images', 'video', 'prompt', 'messages', 'merge', 'max_tokens'];
  const unknown = Object.keys(o).filter((k) => !known.includes(k));
  if (unknown.length) throw new Error(`${where}: unknown field '${unknown[0].slice(0, 40)}' (known: ${known.join(', ')})`);
  const rawId = o.id;
  if (!((typeof rawId === 'string' && rawId !== '') || (typeof rawId === 'number' && Number.isSafeInteger(rawId)))) throw new Error(`${where}: "id" must be a non-empty string or an integer, got ${describe(rawId)}`);
  const id = String(rawId);
  if (id.length > MAX_ID_LENGTH) throw new Error(`${where}: "id" is longer than ${MAX_ID_LENGTH} characters`);
  const job: BatchJobData = { id, index };
  if (o.image !== undefined && o.images !== undefined) throw new Error(`${where}: give "image" or "images", not both`);
  if (o.image !== undefined) job.images = [imageRef(o.image, base, `${where}: "image"`)];
  if (o.images !== undefined) job.images = imageList(o.images, base, `${where}: "images"`);
  if (o.video !== undefined) job.video = imageList(o.video, base, `${where}: "video"`);
  if (o.prompt !== undefined && o.messages !== undefined) throw new Error(`${where}: give "prompt" or "messages", not both`);
  if (o.messages !== undefined) {
    if (!Array.isArray(o.messages) || o.messages.length === 0) throw new Error(`${where}: "messages" must be a non-empty array of { role, content }, got ${describe(o.messages)}`);
    if (job.images || job.video) throw new Error(`${where}: with "messages", put the images in the messages as image_url parts`);
    job.messages = o.messages as ChatMessage[];
  } else {
    const prompt = o.prompt ?? opts.prompt;
    if (prompt === undefined) throw new Error(`${where}: no "prompt" or "messages" (or give --prompt)`);
    if (typeof prompt !== 'string' || prompt.trim() === '') throw new Error(`${where}: "prompt" must be a non-empty string, got ${describe(prompt)}`);
    job.prompt = prompt;
  }
  const merge = o.merge ?? opts.merge;
  if (merge !== undefined) {
    if (typeof merge !== 'string' && (typeof merge !== 'object' || merge === null || Array.isArray(merge))) throw new Error(`${where}: "merge" must be a preset name or a config object, got ${describe(merge)}`);
    job.merge = merge as string | Record<string, unknown>;
  }
  const maxTokens = o.max_tokens ?? opts.maxTokens;
  if (maxTokens !== undefined) {
    if (typeof maxTokens !== 'number' || !Number.isInteger(maxTokens) || maxTokens < 0) throw new Error(`${where}: "max_tokens" must be an integer >= 0, got ${JSON.stringify(maxTokens)?.slice(0, 40)}`);
    job.maxTokens = maxTokens;
  }
  return job;
}

/** Jobs of a JSONL file (blank lines skipped). A repeated id keeps its first line. */
export function readJsonlJobs(file: string, opts: ReadInputOptions = {}): BatchJobData[] {
  const label = `'${file}'`;
  const text = utf8Text(readRegularFileSync(file, label, MAX_JSONL_BYTES), label);
  const base = dirname(resolve(file));
  const jobs: BatchJobData[] = [];
  const seen = new Set<string>();
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    const where = `${file}:${i + 1}`;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (e) {
      throw new Error(`${where}: not valid JSON (${(e as Error).message.slice(0, 80)})`);
    }
    const job = parseJobLine(value, jobs.length, base, where, opts);
    if (seen.has(job.id)) {
      opts.onDuplicate?.(job.id, where);
      return;
    }
    seen.add(job.id);
    jobs.push(job);
  });
  if (jobs.length === 0) throw new Error(`${label} holds no jobs`);
  return jobs;
}

/** Every image file of a folder and its subfolders (sorted), id = its path relative to the folder. */
export function readFolderJobs(dir: string, opts: ReadInputOptions = {}): BatchJobData[] {
  const root = resolve(dir);
  const files: string[] = [];
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile() && IMAGE_EXTENSIONS.includes(extname(entry.name).toLowerCase())) files.push(path);
    }
  };
  walk(root);
  if (files.length === 0) throw new Error(`folder '${dir}' holds no image files (${IMAGE_EXTENSIONS.join(' ')})`);
  const prompt = opts.prompt ?? 'What is in this image?';
  return files.map((path, index) => parseJobLine({ id: relative(root, path).split('\\').join('/'), image: path }, index, root, path, { ...opts, prompt }));
}

/** A folder of images or a JSONL file. */
export function readBatchInput(input: string, opts: ReadInputOptions = {}): BatchJobData[] {
  let isDir: boolean;
  try {
    isDir = statSync(input).isDirectory();
  } catch {
    throw new Error(`input '${input}' does not exist (give a folder of images or a JSONL file)`);
  }
  return isDir ? readFolderJobs(input, opts) : readJsonlJobs(input, opts);
}

/** Redis connection options from a redis:// URL (ioredis options BullMQ takes). */
export function redisConnection(url: string): { host: string; port: number; username?: string; password?: string; db?: number; tls?: Record<string, never>; maxRetriesPerRequest: null } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`--redis '${url}' is not a URL (redis://HOST:PORT)`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new Error(`--redis '${url}': expected redis://HOST:PORT or rediss://`);
  const port = u.port === '' ? 6379 : Number(u.port);
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : undefined;
  if (db !== undefined && !Number.isInteger(db)) throw new Error(`--redis '${url}': the database after the '/' must be a number`);
  return {
    host: u.hostname || '127.0.0.1',
    port,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(db !== undefined ? { db } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
    maxRetriesPerRequest: null,
  };
}

/** Queue names end up in Redis keys: letters, digits, '-', '_' and '.' only. */
export function checkQueueName(name: string): string {
  if (!/^[A-Za-z0-9._-]{1,128}$/.test(name)) throw new Error(`--queue '${name.slice(0, 40)}': use 1-128 letters, digits, '.', '-' or '_'`);
  return name;
}
