// The models shipped in the package, models/<name>/ (Node): `--model` takes a folder or one of
// these names. A path that exists wins over a name, so a folder called `default` in the working
// directory is still read as that folder.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package's root (this file is dist/src/embedded.js). */
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** <package>/models. */
export const EMBEDDED_MODELS_DIR = join(PACKAGE_ROOT, 'models');
export const DEFAULT_MODEL_NAME = 'default';

/** The names of the shipped model folders (those with a config.json), sorted. */
export function embeddedModelNames(): string[] {
  if (!existsSync(EMBEDDED_MODELS_DIR)) return [];
  return readdirSync(EMBEDDED_MODELS_DIR).filter((name) => existsSync(join(EMBEDDED_MODELS_DIR, name, 'config.json'))).sort();
}

/**
 * The model folder for `--model` (absolute): the default model when none is given, the path when
 * it exists, else the shipped model of that name. One-line error naming the shipped models when
 * it is neither, or when the path is not a folder.
 */
export function resolveModelDir(nameOrDir: string | undefined): string {
  const given = nameOrDir ?? DEFAULT_MODEL_NAME;
  let dir = resolve(given);
  if (!existsSync(dir)) {
    const names = embeddedModelNames();
    if (!names.includes(given)) throw new Error(`model folder '${dir}' does not exist (shipped models, by name: ${names.join(', ') || 'none'})`);
    dir = join(EMBEDDED_MODELS_DIR, given);
  }
  if (!statSync(dir).isDirectory()) throw new Error(`model folder '${dir}' is not a folder`);
  return dir;
}
