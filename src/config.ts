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
  attentionBias: boolean;
  mlpBias: boolean;
}

export interface LlavaConfig {
  vision: VisionConfig;
  text: TextConfig;
  imageTokenIndex: number;
  projectorHiddenAct: string;
  projectorBias: boolean;
  /** Negative: counted from the end of HF's hidden_states (length layers + 1). */
  visionFeatureLayer: number;
  visionFeatureSelectStrategy: 'default' | 'full';
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
  if (modelType !== 'llava') throw new Error(`config.json: model_type '${modelType}' is not supported (expected 'llava', a LLaVA-1.5 model)`);

  const v = root.section('vision_config');
  const vision: VisionConfig = {
    hiddenSize: v.int('hidden_size', 1024),
    intermediateSize: v.int('intermediate_size', 4096),
    numLayers: v.int('num_hidden_layers', 24),
    numHeads: v.int('num_attention_heads', 16),
    numChannels: v.int('num_channels', 3),
    imageSize: v.int('image_size', 336),
    patchSize: v.int('patch_size', 14),
    layerNormEps: v.num('layer_norm_eps', 1e-5),
    hiddenAct: v.str('hidden_act', 'quick_gelu'),
  };
  const visionType = v.str('model_type', 'clip_vision_model');
  if (visionType !== 'clip_vision_model') throw new Error(`config.json: vision_config.model_type '${visionType}' is not supported (expected clip_vision_model)`);
  divisible(vision.hiddenSize, vision.numHeads, 'vision_config.hidden_size must split evenly into num_attention_heads');
  divisible(vision.imageSize, vision.patchSize, 'vision_config.image_size must be a multiple of patch_size');

  const t = root.section('text_config');
  const textType = t.str('model_type', 'llama');
  if (textType !== 'llama') throw new Error(`config.json: text_config.model_type '${textType}' is not supported (expected llama)`);
  const hiddenSize = t.int('hidden_size', 4096);
  const numHeads = t.int('num_attention_heads', 32);
  const ropeScaling = t.raw('rope_scaling');
  if (ropeScaling !== undefined && ropeScaling !== null) {
    throw new Error(`config.json: text_config.rope_scaling ${JSON.stringify(ropeScaling)} is not supported (only plain RoPE)`);
  }
  const text: TextConfig = {
    hiddenSize,
    intermediateSize: t.int('intermediate_size', 11008),
    numLayers: t.int('num_hidden_layers', 32),
    numHeads,
    numKvHeads: t.int('num_key_value_heads', numHeads),
    headDim: t.int('head_dim', Math.floor(hiddenSize / numHeads)),
    rmsNormEps: t.num('rms_norm_eps', 1e-6),
    ropeTheta: t.num('rope_theta', 10000),
    vocabSize: t.int('vocab_size', root.int('vocab_size', 32000)),
    hiddenAct: t.str('hidden_act', 'silu'),
    maxPositionEmbeddings: t.int('max_position_embeddings', 2048),
    bosTokenId: t.int('bos_token_id', 1, 0),
    eosTokenId: t.int('eos_token_id', 2, 0),
    tieWordEmbeddings: t.bool('tie_word_embeddings', false),
    attentionBias: t.bool('attention_bias', false),
    mlpBias: t.bool('mlp_bias', false),
  };
  divisible(text.numHeads, text.numKvHeads, 'text_config.num_attention_heads must be a multiple of num_key_value_heads');
  if (text.headDim % 2 !== 0) throw new Error(`config.json: text_config head_dim ${text.headDim} must be even for rotary embeddings`);

  const featureLayer = root.raw('vision_feature_layer') ?? -2;
  if (typeof featureLayer !== 'number' || !Number.isInteger(featureLayer)) {
    throw new Error(`config.json: vision_feature_layer ${JSON.stringify(featureLayer)} is not supported (a single integer layer, e.g. -2)`);
  }
  if (featureLayer < -(vision.numLayers + 1) || featureLayer > vision.numLayers || featureLayer === 0) {
    throw new Error(`config.json: vision_feature_layer ${featureLayer} is outside the ${vision.numLayers}-layer vision tower`);
  }
  const strategy = root.str('vision_feature_select_strategy', 'default');
  if (strategy !== 'default' && strategy !== 'full') {
    throw new Error(`config.json: vision_feature_select_strategy '${strategy}' is not supported (default or full)`);
  }
  return {
    vision,
    text,
    imageTokenIndex: root.int('image_token_index', root.int('image_token_id', 32000, 0), 0),
    projectorHiddenAct: root.str('projector_hidden_act', 'gelu'),
    projectorBias: root.bool('multimodal_projector_bias', true),
    visionFeatureLayer: featureLayer,
    visionFeatureSelectStrategy: strategy,
  };
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

/** Patches per image (CLS not counted). */
export function patchesPerImage(config: LlavaConfig): number {
  const g = config.vision.imageSize / config.vision.patchSize;
  return g * g;
}

/** What the merge presets scale to and the merge validation checks against. */
export function modelShape(config: LlavaConfig): ModelShape {
  return { visionLayersRun: visionLayersRun(config), patches: patchesPerImage(config), llmLayers: config.text.numLayers };
}
