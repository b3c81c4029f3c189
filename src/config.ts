// config.json of a Hugging Face LLaVA folder -> typed, validated configuration.
//
// llava-hf configs rely on transformers' defaults for most fields (llava-1.5-7b-hf's text_config
// names little more than the vocabulary size), so the defaults below are those of
// LlavaConfig, CLIPVisionConfig and LlamaConfig.
import { existsSync } from 'node:fs';
import { readRegularFileSync, utf8Text } from './files.js';
import { parseStrictJson } from '../weights/strict-json.js';
import { join } from 'node:path';
import type { ModelShape } from '../merge/index.js';

export interface VisionConfig {
  /** 'clip' (CLS token, pre-LN, bias-free patch conv) or 'siglip' (no CLS, no pre-LN, patch conv with bias). */
  kind: 'clip' | 'siglip';
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numChannels: number;
  imageSize: number;
  patchSize: number;
  layerNormEps: number;
  hiddenAct: string;
}

export interface TextConfig {
  /** 'llama' or 'qwen2' (q/k/v with bias, o_proj without). */
  kind: 'llama' | 'qwen2';
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  vocabSize: number;
  hiddenAct: string;
  maxPositionEmbeddings: number;
  bosTokenId: number;
  eosTokenId: number;
  tieWordEmbeddings: boolean;
  /** Bias on q/k/v (LLaMA: attention_bias; Qwen2: always). */
  qkvBias: boolean;
  /** Bias on o_proj (LLaMA: attention_bias; Qwen2: never). */
  attentionBias: boolean;
  mlpBias: boolean;
}

/** LLaVA-NeXT / OneVision anyres settings (tiles: src/anyres.ts; processor: src/multimodal.ts). */
export interface AnyresConfig {
  /** (height, width) pairs, each a multiple of the tile size. */
  imageGridPinpoints: Array<[number, number]>;
  /** 'anyres' (LLaVA-NeXT: no downscale) or 'anyres_max_N' (OneVision). */
  visionAspectRatio: string;
  /** The `<video>` id (OneVision); null for LLaVA-NeXT, which has no video input. */
  videoTokenIndex: number | null;
}

export interface LlavaConfig {
  /** 'llava' (LLaVA-1.5), 'llava_next' (LLaVA-NeXT: CLIP + LLaMA, anyres) or 'llava_onevision' (SigLIP + Qwen2, anyres_max_N, video). */
  modelType: 'llava' | 'llava_next' | 'llava_onevision';
  vision: VisionConfig;
  text: TextConfig;
  imageTokenIndex: number;
  projectorHiddenAct: string;
  projectorBias: boolean;
  /** Negative: counted from the end of HF's hidden_states (length layers + 1). */
  visionFeatureLayer: number;
  visionFeatureSelectStrategy: 'default' | 'full';
  /** Set for llava_onevision. */
  anyres: AnyresConfig | null;
}

type Json = Record<string, unknown>;

class ConfigReader {
  constructor(
    private readonly obj: Json,
    private readonly where: string,
  ) {}

  private fail(key: string, what: string): never {
    throw new Error(`config.json: ${this.where}${key} ${what}`);
  }

  int(key: string, fallback?: number, min = 1): number {
    const v = this.obj[key] ?? fallback;
    if (v === undefined) this.fail(key, 'is missing');
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) this.fail(key, `must be an integer >= ${min}, got ${JSON.stringify(v)}`);
    return v;
  }

  num(key: string, fallback: number): number {
    const v = this.obj[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) this.fail(key, `must be a positive number, got ${JSON.stringify(v)}`);
    return v;
  }

  str(key: string, fallback: string): string {
    const v = this.obj[key] ?? fallback;
    if (typeof v !== 'string') this.fail(key, `must be a string, got ${JSON.stringify(v)}`);
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.obj[key] ?? fallback;
    if (typeof v !== 'boolean') this.fail(key, `must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }

  section(key: string): ConfigReader {
    const v = this.obj[key] ?? {};
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(key, 'must be an object');
    return new ConfigReader(v as Json, `${this.where}${key}.`);
  }

  raw(key: string): unknown {
    return this.obj[key];
  }
}

function divisible(a: number, b: number, what: string): void {
  if (a % b !== 0) throw new Error(`config.json: ${what} (${a} is not divisible by ${b})`);
}

export function parseLlavaConfig(json: unknown): LlavaConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error('config.json: not a JSON object');
  const root = new ConfigReader(json as Json, '');
  const modelType = root.str('model_type', 'llava');
  if (modelType !== 'llava' && modelType !== 'llava_next' && modelType !== 'llava_onevision') {
    throw new Error(`config.json: model_type '${modelType.slice(0, 60)}' is not supported (expected 'llava' for LLaVA-1.5, 'llava_next' or 'llava_onevision')`);
  }
  const onevision = modelType === 'llava_onevision';
  const next = modelType === 'llava_next';

  const v = root.section('vision_config');
  const visionType = v.str('model_type', onevision ? 'siglip_vision_model' : 'clip_vision_model');
  const expectedVision = onevision ? 'siglip_vision_model' : 'clip_vision_model';
  if (visionType !== expectedVision) throw new Error(`config.json: vision_config.model_type '${visionType}' is not supported for ${modelType} (expected ${expectedVision})`);
  const siglip = visionType === 'siglip_vision_model';
  // Defaults: CLIPVisionConfig's, or SiglipVisionConfig's.
  const vision: VisionConfig = {
    kind: siglip ? 'siglip' : 'clip',
    hiddenSize: v.int('hidden_size', siglip ? 768 : 1024),
    intermediateSize: v.int('intermediate_size', siglip ? 3072 : 4096),
    numLayers: v.int('num_hidden_layers', siglip ? 12 : 24),
    numHeads: v.int('num_attention_heads', siglip ? 12 : 16),
    numChannels: v.int('num_channels', 3),
    imageSize: v.int('image_size', siglip ? 224 : 336),
    patchSize: v.int('patch_size', siglip ? 16 : 14),
    layerNormEps: v.num('layer_norm_eps', siglip ? 1e-6 : 1e-5),
    hiddenAct: v.str('hidden_act', siglip ? 'gelu_pytorch_tanh' : 'quick_gelu'),
  };
  divisible(vision.hiddenSize, vision.numHeads, 'vision_config.hidden_size must split evenly into num_attention_heads');
  // SigLIP's stride-p conv ignores the rest (so400m: 384 px, patch 14 -> 27 x 27); CLIP's image sizes divide.
  if (!siglip) divisible(vision.imageSize, vision.patchSize, 'vision_config.image_size must be a multiple of patch_size');

  const t = root.section('text_config');
  const expectedText = onevision ? 'qwen2' : 'llama';
  const textType = t.str('model_type', expectedText);
  if (textType !== expectedText) throw new Error(`config.json: text_config.model_type '${textType}' is not supported for ${modelType} (expected ${expectedText})`);
  const qwen2 = textType === 'qwen2';
  if (t.bool('use_sliding_window', false)) {
    throw new Error(`config.json: text_config.use_sliding_window true is not supported (sliding-window attention is not implemented; sliding_window ${JSON.stringify(t.raw('sliding_window') ?? null)})`);
  }
  const hiddenSize = t.int('hidden_size', 4096);
  const numHeads = t.int('num_attention_heads', 32);
  const ropeScaling = t.raw('rope_scaling');
  if (ropeScaling !== undefined && ropeScaling !== null) {
    throw new Error(`config.json: text_config.rope_scaling ${JSON.stringify(ropeScaling)} is not supported (only plain RoPE)`);
  }
  const attentionBias = t.bool('attention_bias', false);
  // Defaults: LlamaConfig's, or Qwen2Config's.
  const text: TextConfig = {
    kind: qwen2 ? 'qwen2' : 'llama',
    hiddenSize,
    intermediateSize: t.int('intermediate_size', qwen2 ? 22016 : 11008),
    numLayers: t.int('num_hidden_layers', 32),
    numHeads,
    numKvHeads: t.int('num_key_value_heads', numHeads),
    headDim: t.int('head_dim', Math.floor(hiddenSize / numHeads)),
    rmsNormEps: t.num('rms_norm_eps', 1e-6),
    ropeTheta: t.num('rope_theta', 10000),
    vocabSize: t.int('vocab_size', root.int('vocab_size', qwen2 ? 151936 : 32000)),
    hiddenAct: t.str('hidden_act', 'silu'),
    maxPositionEmbeddings: t.int('max_position_embeddings', qwen2 ? 32768 : 2048),
    bosTokenId: t.int('bos_token_id', 1, 0),
    eosTokenId: t.int('eos_token_id', 2, 0),
    tieWordEmbeddings: t.bool('tie_word_embeddings', root.bool('tie_word_embeddings', false)),
    qkvBias: qwen2 || attentionBias,
    attentionBias: qwen2 ? false : attentionBias,
    mlpBias: t.bool('mlp_bias', false),
  };
  divisible(text.numHeads, text.numKvHeads, 'text_config.num_attention_heads must be a multiple of num_key_value_heads');
  if (text.headDim % 2 !== 0) throw new Error(`config.json: text_config head_dim ${text.headDim} must be even for rotary embeddings`);

  const featureLayer = root.raw('vision_feature_layer') ?? (onevision ? -1 : -2);
  if (typeof featureLayer !== 'number' || !Number.isInteger(featureLayer)) {
    throw new Error(`config.json: vision_feature_layer ${JSON.stringify(featureLayer)} is not supported (a single integer layer, e.g. -2)`);
  }
  if (featureLayer < -(vision.numLayers + 1) || featureLayer > vision.numLayers || featureLayer === 0) {
    throw new Error(`config.json: vision_feature_layer ${featureLayer} is outside the ${vision.numLayers}-layer vision tower`);
  }
  const strategy = root.str('vision_feature_select_strategy', onevision ? 'full' : 'default');
  if (strategy !== 'default' && strategy !== 'full') {
    throw new Error(`config.json: vision_feature_select_strategy '${strategy}' is not supported (default or full)`);
  }
  let anyres: AnyresConfig | null = null;
  if (next) {
    // LlavaNextConfig has no vision_aspect_ratio: the unpadded grid is never downscaled.
    anyres = { imageGridPinpoints: parsePinpoints(root.raw('image_grid_pinpoints'), vision.imageSize), visionAspectRatio: 'anyres', videoTokenIndex: null };
    if (!root.bool('use_image_newline_parameter', true)) throw new Error('config.json: use_image_newline_parameter false is not supported (llava_next packs image_newline)');
  }
  if (onevision) {
    if (strategy !== 'full') throw new Error(`config.json: vision_feature_select_strategy '${strategy}' is not supported for llava_onevision (SigLIP has no CLS: full)`);
    anyres = {
      imageGridPinpoints: parsePinpoints(root.raw('image_grid_pinpoints'), vision.imageSize),
      visionAspectRatio: parseAspectRatio(root.str('vision_aspect_ratio', 'anyres_max_9')),
      videoTokenIndex: root.int('video_token_index', root.int('video_token_id', 151647, 0), 0),
    };
    if (!root.bool('use_image_newline_parameter', true)) throw new Error('config.json: use_image_newline_parameter false is not supported (llava_onevision packs image_newline)');
  }
  return {
    modelType,
    vision,
    text,
    imageTokenIndex: root.int('image_token_index', root.int('image_token_id', onevision ? 151646 : 32000, 0), 0),
    projectorHiddenAct: root.str('projector_hidden_act', 'gelu'),
    projectorBias: root.bool('multimodal_projector_bias', true),
    visionFeatureLayer: featureLayer,
    visionFeatureSelectStrategy: strategy,
    anyres,
  };
}

function parsePinpoints(raw: unknown, tile: number): Array<[number, number]> {
  if (!Array.isArray(raw) || raw.length === 0) throw new Error(`config.json: image_grid_pinpoints must be a non-empty list of [height, width] pairs, got ${JSON.stringify(raw)}`);
  return raw.map((p: unknown) => {
    if (!Array.isArray(p) || p.length !== 2 || !p.every((d: unknown) => typeof d === 'number' && Number.isSafeInteger(d) && d > 0)) {
      throw new Error(`config.json: image_grid_pinpoints entry ${JSON.stringify(p)} is not a [height, width] pair of positive integers`);
    }
    const [h, w] = p as [number, number];
    if (h % tile !== 0 || w % tile !== 0) throw new Error(`config.json: image_grid_pinpoints entry [${h}, ${w}] does not divide into ${tile}x${tile} tiles (vision_config.image_size)`);
    return [h, w];
  });
}

function parseAspectRatio(value: string): string {
  if (value === 'anyres' || /^anyres_max_[1-9][0-9]*$/.test(value)) return value;
  throw new Error(`config.json: vision_aspect_ratio '${value}' is not supported (anyres or anyres_max_N)`);
}

export function readLlavaConfig(dir: string): LlavaConfig {
  const path = join(dir, 'config.json');
  if (!existsSync(path)) throw new Error(`${dir}: no config.json (is this a Hugging Face LLaVA model folder?)`);
  const json = parseStrictJson(utf8Text(readRegularFileSync(path, path), path), path);
  return parseLlavaConfig(json);
}

/** Number of CLIP encoder blocks that run: those up to the feature layer. */
export function visionLayersRun(config: LlavaConfig): number {
  const f = config.visionFeatureLayer;
  return f < 0 ? config.vision.numLayers + 1 + f : f;
}

/** Tokens entering the vision encoder per image: the patches, plus the CLS for CLIP. */
export function visionTokens(config: LlavaConfig): number {
  return patchesPerImage(config) + (config.vision.kind === 'clip' ? 1 : 0);
}

/** Patches per image (CLS not counted). */
export function patchesPerImage(config: LlavaConfig): number {
  const g = Math.floor(config.vision.imageSize / config.vision.patchSize);
  return g * g;
}

/** What the merge presets scale to and the merge validation checks against. */
export function modelShape(config: LlavaConfig): ModelShape {
  const shape: ModelShape = { visionLayersRun: visionLayersRun(config), patches: patchesPerImage(config), llmLayers: config.text.numLayers };
  if (config.vision.kind !== 'clip') shape.clsToken = false;
  if (config.anyres) shape.anyres = true; // tiles packed as grids: the survivor layout applies
  if (config.modelType === 'llava_onevision') shape.reference = 'onevision'; // presets from the authors' OneVision settings
  return shape;
}
