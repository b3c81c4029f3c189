// Merge options from the outside: the CLI's --merge value (a preset, inline JSON or a JSON file),
// and a merge option resolved against a model's config.
import { existsSync } from 'node:fs';
import { readRegularFileSync, utf8Text } from './files.js';
import { parseStrictJson } from '../weights/strict-json.js';
import { MERGE_PRESET_NAMES, parseMergeSpec, resolveMergeConfig, type MergeConfig, type MergeOption, type MergePresetName, type MergeReport } from '../merge/index.js';
import { modelShape, type LlavaConfig } from './config.js';

/** @deprecated The same as MergeReport (one report per image). */
export type ImageMergeReport = MergeReport;

/** Scales a preset to the model (or takes a config as it is) and validates it, with clear errors. */
export function resolveModelMerge(option: MergeOption, config: LlavaConfig): MergeConfig {
  return resolveMergeConfig(option, modelShape(config));
}

/** Largest merge config file read (bytes). */
const MAX_MERGE_FILE_BYTES = 1024 * 1024;

/**
 * The CLI's --merge value. One rule, checked in this order: a preset name (`none`, `illava`,
 * `tome`, `fastv`) is always the preset, even when a file or folder of that name exists; `@path`
 * reads a JSON file; a value starting with `{` is inline JSON; any other value that names an
 * existing file (or ends in `.json`) is read as a JSON file. Errors name the file, never its text.
 */
export function parseMergeOption(text: string): MergeOption {
  const t = text.trim();
  if ((MERGE_PRESET_NAMES as readonly string[]).includes(t)) return t as MergePresetName;
  if (t.startsWith('@')) return readMergeFile(t.slice(1));
  if (!t.startsWith('{') && (t.endsWith('.json') || existsSync(t))) return readMergeFile(t);
  return parseMergeSpec(t);
}

function readMergeFile(path: string): MergeOption {
  const label = `merge config file '${path}'`;
  if (path === '') throw new Error(`--merge @: a file name must follow '@'`);
  const text = utf8Text(readRegularFileSync(path, label, MAX_MERGE_FILE_BYTES), label);
  const json = parseStrictJson(text, label);
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error(`${label}: must hold a JSON object (a merge config; presets are given by name)`);
  try {
    return parseMergeSpec(JSON.stringify(json));
  } catch (e) {
    throw new Error(`${label}: ${(e as Error).message.replace(/^merge spec: /, '')}`);
  }
}
