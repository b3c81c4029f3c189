// Reading small input files (prompt files, merge configs, images, JSON configs) safely: only
// regular files (a FIFO would block forever, /dev/zero never ends), with a size bound checked from
// stat before anything is read, and errors that name the file but never quote its contents.
import { existsSync, mkdirSync, readFileSync, statSync, type Stats } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { readFile, stat } from 'node:fs/promises';

/** Default size bounds (bytes). */
export const MAX_TEXT_FILE_BYTES = 16 * 1024 * 1024;
export const MAX_IMAGE_FILE_BYTES = 256 * 1024 * 1024;

function kind(s: Stats): string {
  if (s.isDirectory()) return 'a directory';
  if (s.isFIFO()) return 'a FIFO (named pipe)';
  if (s.isCharacterDevice()) return 'a character device';
  if (s.isBlockDevice()) return 'a block device';
  if (s.isSocket()) return 'a socket';
  return 'not a regular file';
}

function statError(label: string, e: unknown): Error {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new Error(`${label}: file not found`);
  if (code === 'EACCES') return new Error(`${label}: permission denied`);
  return new Error(`${label}: cannot read (${code ?? 'error'})`);
}

/** Throws unless `s` is a regular file of at most `maxBytes` bytes. */
export function checkRegularFile(s: Stats, label: string, maxBytes: number): void {
  if (!s.isFile()) throw new Error(`${label}: is ${kind(s)}, not a regular file`);
  if (s.size > maxBytes) throw new Error(`${label}: file is ${s.size} bytes, over the ${maxBytes}-byte limit`);
}

/** Stats `path` (following symlinks) and checks it is a regular file within the bound. */
export function statRegularFileSync(path: string, label: string, maxBytes: number): Stats {
  let s: Stats;
  try {
    s = statSync(path);
  } catch (e) {
    throw statError(label, e);
  }
  checkRegularFile(s, label, maxBytes);
  return s;
}

/** Reads a regular file of at most `maxBytes` bytes; `label` starts every error message. */
export function readRegularFileSync(path: string, label: string, maxBytes = MAX_TEXT_FILE_BYTES): Buffer {
  statRegularFileSync(path, label, maxBytes);
  let b: Buffer;
  try {
    b = readFileSync(path);
  } catch (e) {
    throw statError(label, e);
  }
  if (b.length > maxBytes) throw new Error(`${label}: file is over the ${maxBytes}-byte limit`);
  return b;
}

export async function readRegularFile(path: string, label: string, maxBytes = MAX_TEXT_FILE_BYTES): Promise<Buffer> {
  let s: Stats;
  try {
    s = await stat(path);
  } catch (e) {
    throw statError(label, e);
  }
  checkRegularFile(s, label, maxBytes);
  let b: Buffer;
  try {
    b = await readFile(path);
  } catch (e) {
    throw statError(label, e);
  }
  if (b.length > maxBytes) throw new Error(`${label}: file is over the ${maxBytes}-byte limit`);
  return b;
}

/** Decodes UTF-8 text strictly; a BOM is dropped. */
export function utf8Text(b: Uint8Array, label: string): string {
  try {
    const t = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(b);
    return t;
  } catch {
    throw new Error(`${label}: not valid UTF-8 text`);
  }
}

export { parseJsonText } from '../weights/strict-json.js';

/**
 * Creates `dir` and its missing parents one level at a time, failing at once with the path
 * (Node's recursive mkdirSync retries ENOENT forever under /proc).
 */
export function makeDirs(dir: string, label = `folder '${dir}'`): void {
  const missing: string[] = [];
  let d = resolve(dir);
  while (!existsSync(d)) {
    missing.unshift(d);
    const parent = dirname(d);
    if (parent === d) break;
    d = parent;
  }
  if (existsSync(d) && !statSync(d).isDirectory()) throw new Error(`${label}: '${d}' is not a folder`);
  for (const m of missing) {
    try {
      mkdirSync(m);
    } catch (e) {
      throw new Error(`${label}: cannot create '${m}' (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }
}
