// Merge configuration: one typed config, named presets that scale to the model's shape, validation
// with clear errors, and parsing of the CLI's --merge argument.
import { VISION_RULE_ENTRIES } from './rules.js';
import { onevisionPreset, squareIllavaVision, squareTome } from './presets-onevision.js';
import { roundHalfEven } from './util.js';

export {
  LLAVA15_SHAPE, LLM_RULES, TILE_LAYOUTS, VISION_RULES,
  type LlmMergeConfig, type LlmRule, type MergeConfig, type ModelShape, type TileLayout, type VisionMergeConfig, type VisionRule,
} from './config-types.js';
import { LLAVA15_SHAPE, LLM_RULES, TILE_LAYOUTS, VISION_RULES, type LlmMergeConfig, type LlmRule, type MergeConfig, type ModelShape, type TileLayout, type VisionMergeConfig, type VisionRule } from './config-types.js';

/**
 * The iLLaVA authors' LLaVA-OneVision-7B (illava-method.md §3): SigLIP-so400m with 26 blocks running,
 * 729 patches (27 x 27) per tile, Qwen2-7B with 28 layers.
 */
export const ONEVISION_SHAPE: Readonly<ModelShape> = { visionLayersRun: 26, patches: 729, llmLayers: 28, clsToken: false, anyres: true, reference: 'onevision' };

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
 * - redundancy: iLLaVA's layers and counts (both stages), rule 'redundancy' (merge/redundancy.ts);
 *   on one-grid models the vision stage keeps the survivors' position ids (keepPositions).
 * - fastv: LLM layer round(2/32 * llmLayers) clamped to [1, llmLayers - 1], keep 0.5.
 * - none: no merging.
 * A stage is 'none' when the model is too small for it (no encoder block runs; fewer than 2 LLM
 * layers, since a merge at K needs layer K-1). Tiny example (2 blocks run, 16 patches, 2 LLM layers):
 * illava = vision [0, 1] remove 4 (16 -> 8), LLM [1] keep 0.65; tome = [0, 1] r 4.
 * A OneVision-shaped model (shape.reference 'onevision') takes the authors' OneVision settings
 * instead, with video stages and a perfect square per tile: onevisionPreset (merge/presets-onevision.ts).
 * Other anyres models (LLaVA-NeXT: 24 x 24 patches per tile) keep these LLM stages, and their vision
 * stages keep a perfect square per tile (squareIllavaVision from block round(5/23 * run): 576 -> 256,
 * 4 blocks of 80; squareTome).
 */
export function presetConfig(name: MergePresetName, shape: ModelShape): MergeConfig {
  if (name === 'redundancy') {
    // iLLaVA's stages (and video stages) and counts with our rule in each.
    const config = presetConfig('illava', shape);
    for (const stage of [config.vision, config.llm, config.video?.vision, config.video?.llm]) if (stage) stage.rule = 'redundancy';
    // One-grid models: the survivors keep their patches' position ids (anyres tiles keep iLLaVA's square layout).
    if (!shape.anyres && config.vision && config.vision.rule !== 'none') config.vision.keepPositions = true;
    return config;
  }
  if (shape.reference === 'onevision') return onevisionPreset(name, shape);
  const { visionLayersRun: run, patches, llmLayers } = shape;
  const noLlm = llmLayers < 2;
  switch (name) {
    case 'none':
      return {};
    case 'fastv':
      return noLlm ? {} : { llm: { rule: 'fastv', layers: [llmLayer(2, llmLayers)], keep: 0.5 } };
    case 'illava': {
      const config: MergeConfig = {};
      if (shape.anyres) {
        // Anyres tiles (LLaVA-NeXT) keep a perfect square each (layout 'square'): merge/presets-onevision.ts.
        const vision = squareIllavaVision(shape, 5 / LLAVA15_SHAPE.visionLayersRun);
        if (vision) config.vision = vision;
      } else if (run >= 1 && patches >= 2) {
        const n = Math.min(4, run);
        const start = clamp(roundHalfEven((5 * run) / LLAVA15_SHAPE.visionLayersRun), 0, run - n);
        const layers = Array.from({ length: n }, (_, i) => start + i);
        config.vision = { rule: 'illava', layers, remove: Math.floor(patches / (2 * n)) };
      }
      if (!noLlm) config.llm = { rule: 'illava', layers: [llmLayer(8, llmLayers)], keep: 0.65 };
      return config;
    }
    case 'tome': {
      if (shape.anyres) {
        const vision = squareTome(shape);
        return vision ? { vision } : {};
      }
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

/**
 * Anyres with layout 'square': the survivors of a tile are regridded as a square, so the count they
 * leave must be a perfect square. Returns the error, or null.
 */
function squareShortfall(stage: string, v: VisionMergeConfig, shape: ModelShape): string | null {
  if (!shape.anyres || v.rule === 'none' || (v.layout ?? 'square') !== 'square') return null;
  const kept = shape.patches - v.layers.length * v.remove;
  const side = Math.round(Math.sqrt(kept));
  if (side * side === kept) return null;
  const lo = Math.floor(Math.sqrt(kept));
  return `${stage}: layers [${v.layers.join(', ')}] removing ${v.remove} each leave ${kept} of ${shape.patches} tokens per tile, not a perfect square; ` +
    `layout 'square' (the default, the authors' LLaVA-OneVision code) regrids a tile's survivors as a sqrt(N') x sqrt(N') square: choose layers and remove so that ` +
    `${shape.patches} - layers x remove is a square (${lo * lo} or ${(lo + 1) * (lo + 1)}), or set layout 'positions'`;
}

function validateVision(stage: string, v: VisionMergeConfig, shape: ModelShape): void {
  if (typeof v !== 'object' || v === null) throw new Error(`${stage}: must be an object, got ${v === null ? 'null' : typeof v}`);
  if (v.proportionalAttention !== undefined && typeof v.proportionalAttention !== 'boolean') throw new Error(`${stage}: proportionalAttention must be a boolean, got ${typeof v.proportionalAttention}`);
  if (!VISION_RULES.includes(v.rule)) throw new Error(`${stage}: unknown rule '${String(v.rule)}' (expected one of: ${VISION_RULES.join(', ')})`);
  if (v.layout !== undefined) {
    if (!TILE_LAYOUTS.includes(v.layout)) throw new Error(`${stage}: unknown layout '${String(v.layout)}' (expected one of: ${TILE_LAYOUTS.join(', ')})`);
    if (!shape.anyres) throw new Error(`${stage}: layout '${v.layout}' applies to anyres tiles (LLaVA-OneVision) only; this model packs one flat grid per image`);
  }
  if (v.keepPositions !== undefined) {
    if (typeof v.keepPositions !== 'boolean') throw new Error(`${stage}: keepPositions must be a boolean, got ${typeof v.keepPositions}`);
    if (shape.anyres && v.keepPositions) throw new Error(`${stage}: keepPositions applies to one-grid models (LLaVA-1.5); anyres tiles keep their places with layout 'positions'`);
  }
  const layers = checkLayers(stage, v.layers);
  if (v.rule === 'none') return;
  for (const l of layers) {
    if (l < 0) throw new Error(`${stage}: merge layer ${l} is outside the encoder (layers start at 0)`);
    if (l >= shape.visionLayersRun) {
      throw new Error(`${stage}: merge layer ${l} is at or after the last encoder block that runs (blocks 0..${shape.visionLayersRun - 1} run before the feature layer)`);
    }
  }
  if (typeof v.remove !== 'number' || !(Number.isInteger(v.remove) && v.remove >= 0)) throw new Error(`${stage}: remove must be an integer >= 0, got ${typeof v.remove === 'number' ? v.remove : typeof v.remove}`);
  const short = visionShortfall(v.rule, layers, v.remove, shape.patches);
  if (short) throw new Error(short.replace(/^vision:/, `${stage}:`));
  const square = squareShortfall(stage, v, shape);
  if (square) throw new Error(square);
  checkRecycle(stage, v);
}

function validateLlm(stage: string, m: LlmMergeConfig, shape: ModelShape): void {
  if (typeof m !== 'object' || m === null) throw new Error(`${stage}: must be an object, got ${m === null ? 'null' : typeof m}`);
  if (!LLM_RULES.includes(m.rule)) throw new Error(`${stage}: unknown rule '${String(m.rule)}' (expected one of: ${LLM_RULES.join(', ')})`);
  const layers = checkLayers(stage, m.layers);
  if (m.rule === 'none') return;
  for (const l of layers) {
    if (l === 0) throw new Error(`${stage}: a merge at layer 0 is impossible: the score needs the attention of layer K-1`);
    if (l < 0 || l >= shape.llmLayers) throw new Error(`${stage}: merge layer ${l} is outside the model (layers 1..${shape.llmLayers - 1} can merge)`);
  }
  if (typeof m.keep !== 'number' || !(m.keep > 0 && m.keep <= 1)) throw new Error(`${stage}: keep must be a ratio in (0, 1], got ${typeof m.keep === 'number' ? m.keep : typeof m.keep}`);
  checkRecycle(stage, m);
}

/** Throws a clear error when the config cannot run on a model of this shape. */
export function validateMergeConfig(config: MergeConfig, shape: ModelShape): void {
  for (const k of Object.keys(config)) {
    if (k !== 'vision' && k !== 'llm' && k !== 'video' && k !== 'trackSources') throw new Error(`merge config: unknown field '${k}' (allowed: vision, llm, video, trackSources)`);
  }
  if (config.trackSources !== undefined && typeof config.trackSources !== 'boolean') throw new Error(`merge config: trackSources must be a boolean, got ${typeof config.trackSources}`);
  if (config.vision !== undefined) validateVision('vision', config.vision, shape);
  if (config.llm !== undefined) validateLlm('llm', config.llm, shape);
  const video = config.video;
  if (video !== undefined) {
    if (typeof video !== 'object' || video === null || Array.isArray(video)) throw new Error(`video: must be an object with vision and/or llm, got ${video === null ? 'null' : typeof video}`);
    for (const k of Object.keys(video)) if (k !== 'vision' && k !== 'llm') throw new Error(`video: unknown field '${k}' (allowed: vision, llm)`);
    if (video.vision !== undefined) validateVision('video.vision', video.vision, shape);
    if (video.llm !== undefined) validateLlm('video.llm', video.llm, shape);
  }
}

const VISION_KEYS = ['rule', 'layers', 'remove', 'recycleRatio', 'neighbours', 'proportionalAttention', 'pool', 'layout', 'keepPositions'];
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
  const top = checkObject('top level', raw, ['vision', 'llm', 'video', 'trackSources']);
  const out: MergeConfig = {};
  if (top.vision !== undefined) out.vision = parseVisionSpec('vision', top.vision);
  if (top.llm !== undefined) out.llm = parseLlmSpec('llm', top.llm);
  if (top.video !== undefined) {
    const video = checkObject('video', top.video, ['vision', 'llm']);
    out.video = {};
    if (video.vision !== undefined) out.video.vision = parseVisionSpec('video.vision', video.vision);
    if (video.llm !== undefined) out.video.llm = parseLlmSpec('video.llm', video.llm);
  }
  if (top.trackSources !== undefined) {
    if (typeof top.trackSources !== 'boolean') throw new Error(`merge spec: trackSources must be a boolean`);
    out.trackSources = top.trackSources;
  }
  return out;
}

function specNumber(where: string, v: unknown): number {
  if (typeof v !== 'number') throw new Error(`merge spec: ${where} must be a number`);
  return v;
}

/** One vision stage of a merge spec ('vision' or 'video.vision'). */
function parseVisionSpec(where: string, value: unknown): VisionMergeConfig {
  const v = checkObject(where, value, VISION_KEYS);
  if (typeof v.rule !== 'string') throw new Error(`merge spec: ${where}.rule must be a string`);
  if (v.proportionalAttention !== undefined && typeof v.proportionalAttention !== 'boolean') throw new Error(`merge spec: ${where}.proportionalAttention must be a boolean`);
  if (v.layout !== undefined && !TILE_LAYOUTS.includes(v.layout as TileLayout)) throw new Error(`merge spec: ${where}.layout must be one of: ${TILE_LAYOUTS.join(', ')}`);
  if (v.keepPositions !== undefined && typeof v.keepPositions !== 'boolean') throw new Error(`merge spec: ${where}.keepPositions must be a boolean`);
  if (!VISION_RULES.includes(v.rule as VisionRule)) throw new Error(`merge spec: unknown ${where} rule '${v.rule}' (expected one of: ${VISION_RULES.join(', ')})`);
  return {
    rule: v.rule as VisionRule,
    layers: checkLayers(`merge spec: ${where}`, v.layers ?? []),
    remove: specNumber(`${where}.remove`, v.remove ?? 0),
    ...(v.recycleRatio !== undefined && { recycleRatio: specNumber(`${where}.recycleRatio`, v.recycleRatio) }),
    ...(v.neighbours !== undefined && { neighbours: specNumber(`${where}.neighbours`, v.neighbours) }),
    ...(v.proportionalAttention !== undefined && { proportionalAttention: v.proportionalAttention as boolean }),
    ...(v.pool !== undefined && { pool: specNumber(`${where}.pool`, v.pool) }),
    ...(v.layout !== undefined && { layout: v.layout as TileLayout }),
    ...(v.keepPositions !== undefined && { keepPositions: v.keepPositions as boolean }),
  };
}

/** One LLM stage of a merge spec ('llm' or 'video.llm'). */
function parseLlmSpec(where: string, value: unknown): LlmMergeConfig {
  const m = checkObject(where, value, LLM_KEYS);
  if (typeof m.rule !== 'string') throw new Error(`merge spec: ${where}.rule must be a string`);
  if (!LLM_RULES.includes(m.rule as LlmRule)) throw new Error(`merge spec: unknown ${where} rule '${m.rule}' (expected one of: ${LLM_RULES.join(', ')})`);
  return {
    rule: m.rule as LlmRule,
    layers: checkLayers(`merge spec: ${where}`, m.layers ?? []),
    keep: specNumber(`${where}.keep`, m.keep ?? 1),
    ...(m.recycleRatio !== undefined && { recycleRatio: specNumber(`${where}.recycleRatio`, m.recycleRatio) }),
    ...(m.neighbours !== undefined && { neighbours: specNumber(`${where}.neighbours`, m.neighbours) }),
    ...(m.pool !== undefined && { pool: specNumber(`${where}.pool`, m.pool) }),
  };
}
