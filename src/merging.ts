// The bridge between the model and merge/: resolves a merge option against the model's shape and
// runs one prompt's merging (vision states per image, the language-stage hook of the prefill, the
// per-image reports that generate() returns as `merges`).
import { existsSync, readFileSync } from 'node:fs';
import type * as tf from '@tensorflow/tfjs-core';
import {
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

/** The CLI's --merge value: a preset name, inline JSON, or a path to a JSON file. */
export function parseMergeOption(text: string): MergeOption {
  const t = text.trim();
  if (!t.startsWith('{') && (t.endsWith('.json') || existsSync(t))) {
    if (!existsSync(t)) throw new Error(`merge config file '${t}' does not exist`);
    return parseMergeSpec(readFileSync(t, 'utf8'));
  }
  return parseMergeSpec(t);
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
