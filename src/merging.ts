// The bridge between the model and merge/: resolves a merge option against the model's shape and
// runs one prompt's merging (vision states per image, the language-stage hook of the prefill, the
// per-image reports that generate() returns as `merges`).
import { existsSync } from 'node:fs';
import { readRegularFileSync, utf8Text } from './files.js';
import { parseStrictJson } from '../weights/strict-json.js';
import type * as tf from '@tensorflow/tfjs-core';
import {
  MERGE_PRESET_NAMES,
  TokenMerger,
  parseMergeSpec,
  resolveMergeConfig,
  type LanguageMergeState,
  type MergeConfig,
  type MergePresetName,
  type MergeReport,
  type ModelShape,
  type Span,
  type VisionMergeState,
} from '../merge/index.js';
import { patchesPerImage, visionLayersRun, type LlavaConfig } from './config.js';
import type { PrefillMergeHook } from './decoder.js';

/** A preset name ('none', 'illava', 'tome', 'fastv') or a full MergeConfig. */
export type MergeOption = MergeConfig | MergePresetName;
export type ImageMergeReport = MergeReport;

export function modelShape(config: LlavaConfig): ModelShape {
  return { visionLayersRun: visionLayersRun(config), patches: patchesPerImage(config), llmLayers: config.text.numLayers };
}

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

function active(config: MergeConfig): boolean {
  return (config.vision !== undefined && config.vision.rule !== 'none') || (config.llm !== undefined && config.llm.rule !== 'none');
}

/** Merging state of one prompt. Holds no tensors. */
export class MergeSession {
  /** Undefined when nothing merges: the model then runs its plain path. */
  readonly merger?: TokenMerger;
  private readonly visionStates: VisionMergeState[] = [];
  private languageState?: LanguageMergeState;

  constructor(readonly config: MergeConfig) {
    if (active(config)) this.merger = new TokenMerger(config);
  }

  /** Called once per image, in prompt order, with the state its vision tower pass ended with. */
  recordVision(state: VisionMergeState | undefined): void {
    if (state) this.visionStates.push(state);
  }

  /**
   * The language-stage hook of a prefill over `spans`, scoring with the attention row of query
   * `scoreRow` (the last prompt token). `record`: keep its result for reports (false for the
   * re-runs of generate's no-cache mode, which repeat the same merge).
   */
  prefillHook(spans: ReadonlyArray<Span>, scoreRow: number, record = true): PrefillMergeHook | undefined {
    const merger = this.merger;
    if (!merger || !this.config.llm || this.config.llm.rule === 'none') return undefined;
    let state = merger.createLanguageState(this.visionStates);
    let currentSpans = spans.map(([s, e]) => [s, e] as Span);
    let row = scoreRow;
    return {
      scoreRow: (layer) => (merger.llmNeedsLastRow(layer) ? row : undefined),
      mergeBefore: (layer: number, hidden: tf.Tensor2D, positionIds: number[], attentionRow: tf.Tensor2D | undefined) => {
        if (!merger.isLlmMergeLayer(layer)) return null;
        if (!attentionRow) throw new Error(`language-stage merge at layer ${layer} has no attention row from layer ${layer - 1}`);
        const result = merger.mergeLanguage({ layer, hidden, lastRowAttn: attentionRow, spans: currentSpans, positionIds, state });
        currentSpans = result.spans;
        state = result.state;
        row = result.keptIndices.indexOf(row);
        if (row < 0) throw new Error('language-stage merge removed the scoring (last prompt) token');
        if (record) this.languageState = state;
        return { hidden: result.hidden, positionIds: result.positionIds };
      },
    };
  }

  /** Per image: patches, token counts after each merge layer, and (when tracked) the patch -> token map. */
  reports(spanLengths: readonly number[]): ImageMergeReport[] {
    if (this.merger && this.visionStates.length === spanLengths.length) {
      return this.merger.reports(this.languageState ?? this.merger.createLanguageState(this.visionStates));
    }
    return spanLengths.map((tokens) => ({ patches: tokens, vision: [], language: [], tokens }));
  }
}
