// Merge configuration: one typed config, named presets that scale to the model's shape, validation
// with clear errors, and parsing of the CLI's --merge argument.
import { LLM_RULE_ENTRIES, VISION_RULE_ENTRIES } from './rules.js';
import { roundHalfEven } from './util.js';

/** The registered vision rules (rules.ts), and 'none'. */
export type VisionRule = keyof typeof VISION_RULE_ENTRIES | 'none';
/** The registered LLM rules (rules.ts), and 'none'. */
export type LlmRule = keyof typeof LLM_RULE_ENTRIES | 'none';
export const VISION_RULES: readonly VisionRule[] = [...(Object.keys(VISION_RULE_ENTRIES) as VisionRule[]), 'none'];
export const LLM_RULES: readonly LlmRule[] = [...(Object.keys(LLM_RULE_ENTRIES) as LlmRule[]), 'none'];

export interface VisionMergeConfig {
  rule: VisionRule;
  /** 0-based encoder blocks that merge (between the attention residual and the MLP). */
  layers: number[];
  /** Tokens removed per merge layer (ToMe: r). */
  remove: number;
  /** illava-similarity: share of the kept tokens that recycle (default 0.05). */
  recycleRatio?: number;
  /** illava-similarity: dropped tokens absorbed per recycling token (default 5). */
  neighbours?: number;
  /** tome, redundancy: add log(size) to the attention logits (ToMe's proportional attention; default true). */
  proportionalAttention?: boolean;
  /** redundancy: removals are chosen among the ceil(pool x remove) least-attended tokens (default 2). */
  pool?: number;
}

export interface LlmMergeConfig {
  rule: LlmRule;
  /** 0-based decoder layers K; tokens are merged before layer K with layer K-1's attention. */
  layers: number[];
  /** Ratio in (0, 1] of each image span kept per merge layer (Python round of L * (1 - keep) removed). */
  keep: number;
  recycleRatio?: number;
  neighbours?: number;
  /** redundancy: removals are chosen among the ceil(pool x removed) least-attended tokens (default 2). */
  pool?: number;
}

export interface MergeConfig {
  vision?: VisionMergeConfig;
  llm?: LlmMergeConfig;
  /** Track which original patches every token holds (MergeReport.patchToToken). */
  trackSources?: boolean;
}

/** What the presets scale to and the validation checks against. */
export interface ModelShape {
  /** Encoder blocks that run before the feature layer (LLaVA-1.5: 23 of 24, feature layer -2). */
  visionLayersRun: number;
  /** Image patches (without CLS). */
  patches: number;
  llmLayers: number;
}

/** LLaVA-1.5: CLIP ViT-L/14-336 (24 blocks, feature layer -2, 576 patches) + 32-layer LLaMA. */
export const LLAVA15_SHAPE: Readonly<ModelShape> = { visionLayersRun: 23, patches: 576, llmLayers: 32 };

export type MergePresetName = 'illava' | 'redundancy' | 'tome' | 'fastv' | 'none';
/** What a merge setting is given as: a preset name (scaled to the model) or a full MergeConfig. */
export type MergeOption = MergeConfig | MergePresetName;
export const MERGE_PRESET_NAMES: readonly MergePresetName[] = ['illava', 'redundancy', 'tome', 'fastv', 'none'];

const clamp = (v: number, lo: number, hi: number) => Math.max(lo, Math.min(hi, v));

/** Patches left before each vision merge layer, or the first layer that removes too many. */
function visionShortfall(rule: Exclude<VisionRule, 'none'>, layers: readonly number[], remove: number, patches: number): string | null {
  let left = patches;
  for (const layer of [...layers].sort((a, b) => a - b)) {
    const max = VISION_RULE_ENTRIES[rule].maxRemove(left);
    if (remove > max) {
      return `vision: removing ${remove} tokens at layer ${layer} removes more tokens than exist (${left} patches left there, at most ${max} can go with rule '${rule}')`;
    }
    left -= remove;
  }
  return null;
}

/** LLM merge layer at depth fraction num/32 of the reference model, clamped to [1, llmLayers - 1]. */
function llmLayer(num: number, llmLayers: number): number {
  return clamp(roundHalfEven((num * llmLayers) / LLAVA15_SHAPE.llmLayers), 1, llmLayers - 1);
}

/**
 * A preset scaled to a model shape. Rules (exact for LLaVA-1.5's shape; "round" is half-to-even):
 * - illava, vision: n = min(4, visionLayersRun) consecutive blocks starting at
 *   round(5 / 23 * visionLayersRun) (clamped so all n run); remove = floor(patches / (2 n)) per layer,
 *   so about half the patches go (576 -> 288: layers 5..8, 72 each). LLM: layer round(8/32 * llmLayers)
 *   clamped to [1, llmLayers - 1], keep 0.65 (288 -> 187).
 * - tome, vision only: every block that runs (0 .. visionLayersRun-1) with a constant
 *   r = round(patches / (2 * visionLayersRun)) (576, 23 blocks: r = 13, 576 -> 277, i.e. about half);
 *   if that is 0, r = 1 on the first floor(patches / 2) blocks; r shrinks if a layer cannot merge r.
 * - redundancy: iLLaVA's layers and counts (both stages), rule 'redundancy' (merge/redundancy.ts).
 * - fastv: LLM layer round(2/32 * llmLayers) clamped to [1, llmLayers - 1], keep 0.5.
 * - none: no merging.
 * A stage is 'none' when the model is too small for it (no encoder block runs; fewer than 2 LLM
 * layers, since a merge at K needs layer K-1). Tiny example (2 blocks run, 16 patches, 2 LLM layers):
 * illava = vision [0, 1] remove 4 (16 -> 8), LLM [1] keep 0.65; tome = [0, 1] r 4.
 */
export function presetConfig(name: MergePresetName, shape: ModelShape): MergeConfig {
  const { visionLayersRun: run, patches, llmLayers } = shape;
  const noLlm = llmLayers < 2;
  switch (name) {
    case 'none':
      return {};
    case 'fastv':
      return noLlm ? {} : { llm: { rule: 'fastv', layers: [llmLayer(2, llmLayers)], keep: 0.5 } };
    case 'illava': {
      const config: MergeConfig = {};
      if (run >= 1 && patches >= 2) {
        const n = Math.min(4, run);
        const start = clamp(roundHalfEven((5 * run) / LLAVA15_SHAPE.visionLayersRun), 0, run - n);
        const layers = Array.from({ length: n }, (_, i) => start + i);
        config.vision = { rule: 'illava', layers, remove: Math.floor(patches / (2 * n)) };
      }
      if (!noLlm) config.llm = { rule: 'illava', layers: [llmLayer(8, llmLayers)], keep: 0.65 };
      return config;
    }
    case 'redundancy': {
      const config = presetConfig('illava', shape);
      if (config.vision) config.vision.rule = 'redundancy';
      if (config.llm) config.llm.rule = 'redundancy';
      return config;
    }
    case 'tome': {
      if (run < 1 || patches < 2) return {};
      let r = roundHalfEven(patches / (2 * run));
      let count = run;
      if (r === 0) {
        r = 1;
        count = Math.min(run, Math.floor(patches / 2));
      }
      const layers = Array.from({ length: count }, (_, i) => i);
      while (r > 1 && visionShortfall('tome', layers, r, patches) !== null) r--;
      return { vision: { rule: 'tome', layers, remove: r, proportionalAttention: true } };
    }
    default:
      throw new Error(`unknown merge preset '${String(name)}' (expected one of: ${MERGE_PRESET_NAMES.join(', ')})`);
  }
}

/**
 * A preset name is scaled to `shape` (presetConfig); a config object is taken literally (deep copy).
 * Either way the result is validated (validateMergeConfig) and returned.
 */
export function resolveMergeConfig(option: MergeOption, shape: ModelShape): MergeConfig {
  if (typeof option !== 'string' && (typeof option !== 'object' || option === null || Array.isArray(option))) {
    throw new Error(`merge must be a preset name (${MERGE_PRESET_NAMES.join(', ')}) or a MergeConfig object, got ${option === null ? 'null' : Array.isArray(option) ? 'an array' : typeof option}`);
  }
  // structuredClone, not a JSON round trip: NaN must stay NaN (and be reported as NaN).
  const config = typeof option === 'string' ? presetConfig(option, shape) : structuredClone(option);
  validateMergeConfig(config, shape);
  return config;
}

function checkLayers(stage: string, layers: unknown): number[] {
  if (!Array.isArray(layers) || !layers.every((l) => Number.isInteger(l))) {
    throw new Error(`${stage}: layers must be an array of integers, got ${JSON.stringify(layers)}`);
  }
  const seen = new Set<number>();
  for (const l of layers as number[]) {
    if (seen.has(l)) throw new Error(`${stage}: duplicate merge layer ${l}`);
    seen.add(l);
  }
  return layers as number[];
}

function checkRecycle(stage: string, c: { recycleRatio?: number; neighbours?: number; pool?: number }): void {
  if (c.pool !== undefined && !(typeof c.pool === 'number' && c.pool >= 1 && Number.isFinite(c.pool))) throw new Error(`${stage}: pool must be a number >= 1, got ${String(c.pool)}`);
  for (const k of ['recycleRatio', 'neighbours'] as const) {
    if (c[k] !== undefined && typeof c[k] !== 'number') throw new Error(`${stage}: ${k} must be a number, got ${typeof c[k]}`);
  }
  if (c.recycleRatio !== undefined && !(c.recycleRatio >= 0 && c.recycleRatio <= 1)) {
    throw new Error(`${stage}: recycleRatio must be in [0, 1], got ${c.recycleRatio}`);
  }
  if (c.neighbours !== undefined && !(Number.isInteger(c.neighbours) && c.neighbours >= 1)) {
    throw new Error(`${stage}: neighbours must be an integer >= 1, got ${c.neighbours}`);
  }
}

/** Throws a clear error when the config cannot run on a model of this shape. */
export function validateMergeConfig(config: MergeConfig, shape: ModelShape): void {
  for (const k of Object.keys(config)) {
    if (k !== 'vision' && k !== 'llm' && k !== 'trackSources') throw new Error(`merge config: unknown field '${k}' (allowed: vision, llm, trackSources)`);
  }
  if (config.trackSources !== undefined && typeof config.trackSources !== 'boolean') throw new Error(`merge config: trackSources must be a boolean, got ${typeof config.trackSources}`);
  const v = config.vision;
  if (v !== undefined && (typeof v !== 'object' || v === null)) throw new Error(`vision: must be an object, got ${v === null ? 'null' : typeof v}`);
  if (config.llm !== undefined && (typeof config.llm !== 'object' || config.llm === null)) throw new Error(`llm: must be an object, got ${config.llm === null ? 'null' : typeof config.llm}`);
  if (v) {
    if (v.proportionalAttention !== undefined && typeof v.proportionalAttention !== 'boolean') throw new Error(`vision: proportionalAttention must be a boolean, got ${typeof v.proportionalAttention}`);
    if (!VISION_RULES.includes(v.rule)) throw new Error(`vision: unknown rule '${String(v.rule)}' (expected one of: ${VISION_RULES.join(', ')})`);
    const layers = checkLayers('vision', v.layers);
    if (v.rule !== 'none') {
      for (const l of layers) {
        if (l < 0) throw new Error(`vision: merge layer ${l} is outside the encoder (layers start at 0)`);
        if (l >= shape.visionLayersRun) {
          throw new Error(`vision: merge layer ${l} is at or after the last encoder block that runs (blocks 0..${shape.visionLayersRun - 1} run before the feature layer)`);
        }
      }
      if (typeof v.remove !== 'number' || !(Number.isInteger(v.remove) && v.remove >= 0)) throw new Error(`vision: remove must be an integer >= 0, got ${typeof v.remove === 'number' ? v.remove : typeof v.remove}`);
      const short = visionShortfall(v.rule, layers, v.remove, shape.patches);
      if (short) throw new Error(short);
      checkRecycle('vision', v);
    }
  }
  const m = config.llm;
  if (m) {
    if (!LLM_RULES.includes(m.rule)) throw new Error(`llm: unknown rule '${String(m.rule)}' (expected one of: ${LLM_RULES.join(', ')})`);
    const layers = checkLayers('llm', m.layers);
    if (m.rule !== 'none') {
      for (const l of layers) {
        if (l === 0) throw new Error(`llm: a merge at layer 0 is impossible: the score needs the attention of layer K-1`);
        if (l < 0 || l >= shape.llmLayers) throw new Error(`llm: merge layer ${l} is outside the model (layers 1..${shape.llmLayers - 1} can merge)`);
      }
      if (typeof m.keep !== 'number' || !(m.keep > 0 && m.keep <= 1)) throw new Error(`llm: keep must be a ratio in (0, 1], got ${typeof m.keep === 'number' ? m.keep : typeof m.keep}`);
      checkRecycle('llm', m);
    }
  }
}

const VISION_KEYS = ['rule', 'layers', 'remove', 'recycleRatio', 'neighbours', 'proportionalAttention', 'pool'];
const LLM_KEYS = ['rule', 'layers', 'keep', 'recycleRatio', 'neighbours', 'pool'];

function checkObject(where: string, value: unknown, allowed: string[]): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`merge spec: ${where} must be an object`);
  for (const k of Object.keys(value)) {
    if (!allowed.includes(k)) throw new Error(`merge spec: unknown field '${where === 'top level' ? '' : where + '.'}${k}' (allowed: ${allowed.join(', ')})`);
  }
  return value as Record<string, unknown>;
}

/**
 * Parses the CLI's --merge value: a preset name ('illava', 'tome', 'fastv', 'none') or a JSON
 * object (a string, or a file's content read by the caller) shaped like MergeConfig. Field types and
 * names are checked here; model-dependent checks happen in resolveMergeConfig.
 */
export function parseMergeSpec(text: string): MergeOption {
  const t = text.trim();
  if ((MERGE_PRESET_NAMES as readonly string[]).includes(t)) return t as MergePresetName;
  if (!t.startsWith('{')) {
    throw new Error(`merge spec '${t}' is neither a preset (${MERGE_PRESET_NAMES.join(', ')}) nor a JSON object`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(t);
  } catch (e) {
    throw new Error(`merge spec: invalid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  const top = checkObject('top level', raw, ['vision', 'llm', 'trackSources']);
  const out: MergeConfig = {};
  const num = (where: string, v: unknown, optional: boolean): number | undefined => {
    if (v === undefined && optional) return undefined;
    if (typeof v !== 'number') throw new Error(`merge spec: ${where} must be a number`);
    return v;
  };
  if (top.vision !== undefined) {
    const v = checkObject('vision', top.vision, VISION_KEYS);
    if (typeof v.rule !== 'string') throw new Error(`merge spec: vision.rule must be a string`);
    if (v.proportionalAttention !== undefined && typeof v.proportionalAttention !== 'boolean') throw new Error(`merge spec: vision.proportionalAttention must be a boolean`);
    out.vision = {
      rule: v.rule as VisionRule,
      layers: checkLayers('merge spec: vision', v.layers ?? []),
      remove: num('vision.remove', v.remove ?? 0, false) as number,
      ...(v.recycleRatio !== undefined && { recycleRatio: num('vision.recycleRatio', v.recycleRatio, true) }),
      ...(v.neighbours !== undefined && { neighbours: num('vision.neighbours', v.neighbours, true) }),
      ...(v.proportionalAttention !== undefined && { proportionalAttention: v.proportionalAttention as boolean }),
    };
  }
  if (top.llm !== undefined) {
    const m = checkObject('llm', top.llm, LLM_KEYS);
    if (typeof m.rule !== 'string') throw new Error(`merge spec: llm.rule must be a string`);
    out.llm = {
      rule: m.rule as LlmRule,
      layers: checkLayers('merge spec: llm', m.layers ?? []),
      keep: num('llm.keep', m.keep ?? 1, false) as number,
      ...(m.recycleRatio !== undefined && { recycleRatio: num('llm.recycleRatio', m.recycleRatio, true) }),
      ...(m.neighbours !== undefined && { neighbours: num('llm.neighbours', m.neighbours, true) }),
    };
  }
  if (top.trackSources !== undefined) {
    if (typeof top.trackSources !== 'boolean') throw new Error(`merge spec: trackSources must be a boolean`);
    out.trackSources = top.trackSources;
  }
  if (out.vision && !VISION_RULES.includes(out.vision.rule)) throw new Error(`merge spec: unknown vision rule '${out.vision.rule}' (expected one of: ${VISION_RULES.join(', ')})`);
  if (out.llm && !LLM_RULES.includes(out.llm.rule)) throw new Error(`merge spec: unknown llm rule '${out.llm.rule}' (expected one of: ${LLM_RULES.join(', ')})`);
  return out;
}
