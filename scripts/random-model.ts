// Models with random (seeded) weights at real architecture sizes, built in memory: a WeightSource
// that makes each tensor on demand, and the config, tokenizer and image processor around it.
//
// Values: a fast xorshift PRNG per tensor (seeded by the tensor name and a global seed), uniform
// with standard deviation 0.02 like a transformer init; LayerNorm/RMSNorm weights 1 and their
// biases 0, so activations stay finite through the layers that run. The text is random too: the
// benchmark measures speed, not answers.
import { CANONICAL_PREFIX, f16WordsToFloat32, float32ToF16Bits, uint16ToBytesLE, type RawTensor } from '../weights/index.js';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseLlavaConfig, visionLayersRun, type LlavaConfig } from '../src/config.js';
import { ImageProcessor } from '../src/preprocess.js';
import { LlavaTokenizer } from '../src/tokenizer.js';
import type { ModelParts } from '../src/llava.js';
import type { TensorInfo, WeightSource } from '../weights/types.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const TINY_LLAVA_DIR = join(REPO_ROOT, 'test/fixtures/tiny-llava');

/** xorshift32 step. */
function xorshift(s: number): number {
  s ^= s << 13;
  s ^= s >>> 17;
  s ^= s << 5;
  return s >>> 0;
}

/** FNV-1a hash of a string, mixed with a seed; never 0 (xorshift's fixed point). */
export function hashSeed(text: string, seed: number): number {
  let h = 0x811c9dc5 ^ (seed * 0x9e3779b1);
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return (h >>> 0) || 1;
}

/** n values uniform in [-a, a] with standard deviation `std` (a = std * sqrt 3), deterministic in seed. */
export function randomUniform(n: number, std: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  const a = std * Math.sqrt(3);
  const scale = (2 * a) / 4294967296;
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = xorshift(s);
    out[i] = s * scale - a;
  }
  return out;
}

export interface RandomSpec {
  shape: number[];
  /** 'ones' (norm weights), 'zeros' (norm biases) or a random std. */
  init: 'ones' | 'zeros' | number;
}

const { vision: V, projector: P, language: L } = CANONICAL_PREFIX;

/** Every tensor (canonical old-scheme names, see src/load.ts) the model's loader reads, with its shape. */
export function tensorSpecs(config: LlavaConfig): Map<string, RandomSpec> {
  const m = new Map<string, RandomSpec>();
  const std = 0.02;
  const c = config.vision;
  const C = c.hiddenSize;
  const grid = Math.floor(c.imageSize / c.patchSize);
  const clip = c.kind === 'clip'; // SigLIP: patch conv bias, no CLS, no pre-LN
  m.set(`${V}embeddings.patch_embedding.weight`, { shape: [C, c.numChannels, c.patchSize, c.patchSize], init: std });
  if (clip) m.set(`${V}embeddings.class_embedding`, { shape: [C], init: std });
  else m.set(`${V}embeddings.patch_embedding.bias`, { shape: [C], init: std });
  m.set(`${V}embeddings.position_embedding.weight`, { shape: [grid * grid + (clip ? 1 : 0), C], init: std });
  const norm = (prefix: string, size: number, bias = true) => {
    m.set(`${prefix}.weight`, { shape: [size], init: 'ones' });
    if (bias) m.set(`${prefix}.bias`, { shape: [size], init: 'zeros' });
  };
  const linear = (prefix: string, inF: number, outF: number, bias: boolean) => {
    m.set(`${prefix}.weight`, { shape: [outF, inF], init: std });
    if (bias) m.set(`${prefix}.bias`, { shape: [outF], init: std });
  };
  if (clip) norm(`${V}pre_layrnorm`, C);
  for (let i = 0; i < visionLayersRun(config); i++) {
    const p = `${V}encoder.layers.${i}.`;
    norm(`${p}layer_norm1`, C);
    norm(`${p}layer_norm2`, C);
    for (const n of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) linear(`${p}self_attn.${n}`, C, C, true);
    linear(`${p}mlp.fc1`, C, c.intermediateSize, true);
    linear(`${p}mlp.fc2`, c.intermediateSize, C, true);
  }
  const t = config.text;
  const D = t.hiddenSize;
  linear(`${P}linear_1`, C, D, config.projectorBias);
  linear(`${P}linear_2`, D, D, config.projectorBias);
  if (config.anyres) m.set('image_newline', { shape: [D], init: std });
  m.set(`${L}embed_tokens.weight`, { shape: [t.vocabSize, D], init: std });
  const q = t.numHeads * t.headDim;
  const kv = t.numKvHeads * t.headDim;
  for (let i = 0; i < t.numLayers; i++) {
    const p = `${L}layers.${i}.`;
    norm(`${p}input_layernorm`, D, false);
    norm(`${p}post_attention_layernorm`, D, false);
    linear(`${p}self_attn.q_proj`, D, q, t.qkvBias);
    linear(`${p}self_attn.k_proj`, D, kv, t.qkvBias);
    linear(`${p}self_attn.v_proj`, D, kv, t.qkvBias);
    linear(`${p}self_attn.o_proj`, q, D, t.attentionBias);
    linear(`${p}mlp.gate_proj`, D, t.intermediateSize, t.mlpBias);
    linear(`${p}mlp.up_proj`, D, t.intermediateSize, t.mlpBias);
    linear(`${p}mlp.down_proj`, t.intermediateSize, D, t.mlpBias);
  }
  norm(`${L}norm`, D, false);
  if (!t.tieWordEmbeddings) m.set('language_model.lm_head.weight', { shape: [t.vocabSize, D], init: std });
  return m;
}

/** A WeightSource whose tensors are made on demand from seeded PRNG streams (nothing is stored). */
export class RandomWeightSource implements WeightSource {
  readonly origin: string;
  private readonly specs: Map<string, RandomSpec>;

  /**
   * @param dtype storage dtype the source reports: 'F16' rounds every value to half precision and
   *   serves fp16 bytes through readRaw, like an fp16 checkpoint (what LLaVA-1.5-7B ships as).
   */
  constructor(config: LlavaConfig, readonly seed = 0, origin = 'random weights', readonly dtype: 'F32' | 'F16' = 'F32') {
    this.specs = tensorSpecs(config);
    this.origin = `${origin} (seed ${seed}, ${dtype})`;
  }

  names(): string[] {
    return [...this.specs.keys()].sort();
  }

  info(name: string): TensorInfo | undefined {
    const s = this.specs.get(name);
    return s ? { name, dtype: this.dtype, shape: [...s.shape] } : undefined;
  }

  readFloat32(name: string): Float32Array {
    const values = this.values(name);
    return this.dtype === 'F16' ? f16WordsToFloat32(float32ToF16Bits(values)) : values;
  }

  readRaw(name: string): RawTensor {
    const values = this.values(name);
    const shape = [...(this.specs.get(name)?.shape ?? [])];
    if (this.dtype === 'F32') return { dtype: 'F32', shape, bytes: new Uint8Array(values.buffer) };
    return { dtype: 'F16', shape, bytes: uint16ToBytesLE(float32ToF16Bits(values)) };
  }

  private values(name: string): Float32Array {
    const s = this.specs.get(name);
    if (!s) throw new Error(`${this.origin}: tensor '${name}' is missing`);
    const n = s.shape.reduce((a, b) => a * b, 1);
    if (s.init === 'ones') return new Float32Array(n).fill(1);
    if (s.init === 'zeros') return new Float32Array(n);
    return randomUniform(n, s.init, hashSeed(name, this.seed));
  }

  close(): void {}

  /** Float32 bytes of every tensor. */
  get totalBytes(): number {
    let n = 0;
    for (const s of this.specs.values()) n += s.shape.reduce((a, b) => a * b, 1) * 4;
    return n;
  }
}

/** config.json of llava-hf/llava-1.5-7b-hf, spelled out (CLIP ViT-L/14-336 + Vicuna-7B). */
export function llava15_7bConfigJson(): Record<string, unknown> {
  return {
    model_type: 'llava',
    image_token_index: 32000,
    projector_hidden_act: 'gelu',
    vision_feature_layer: -2,
    vision_feature_select_strategy: 'default',
    vocab_size: 32064,
    vision_config: {
      model_type: 'clip_vision_model',
      hidden_size: 1024,
      intermediate_size: 4096,
      num_hidden_layers: 24,
      num_attention_heads: 16,
      image_size: 336,
      patch_size: 14,
      layer_norm_eps: 1e-5,
      hidden_act: 'quick_gelu',
    },
    text_config: {
      model_type: 'llama',
      hidden_size: 4096,
      intermediate_size: 11008,
      num_hidden_layers: 32,
      num_attention_heads: 32,
      num_key_value_heads: 32,
      rms_norm_eps: 1e-5,
      vocab_size: 32064,
      max_position_embeddings: 4096,
    },
  };
}

/**
 * config.json of llava-hf/llava-onevision-qwen2-0.5b-ov-hf, spelled out: SigLIP-so400m-patch14-384
 * as HF's conversion keeps it (26 encoder layers: the original drops SigLIP's last one; feature
 * layer -1, so all 26 run), Qwen2-0.5B, anyres_max_9 over the 384 px pinpoints up to 6 x 6.
 */
export function llavaOnevision05bConfigJson(): Record<string, unknown> {
  const pinpoints: number[][] = [];
  for (let i = 1; i <= 6; i++) for (let j = 1; j <= 6; j++) pinpoints.push([384 * i, 384 * j]);
  return {
    model_type: 'llava_onevision',
    image_token_index: 151646,
    video_token_index: 151647,
    projector_hidden_act: 'gelu',
    multimodal_projector_bias: true,
    vision_feature_select_strategy: 'full',
    vision_feature_layer: -1,
    vision_aspect_ratio: 'anyres_max_9',
    image_grid_pinpoints: pinpoints,
    use_image_newline_parameter: true,
    tie_word_embeddings: true,
    vision_config: {
      model_type: 'siglip_vision_model',
      hidden_size: 1152,
      intermediate_size: 4304,
      num_hidden_layers: 26,
      num_attention_heads: 16,
      image_size: 384,
      patch_size: 14,
      layer_norm_eps: 1e-6,
      hidden_act: 'gelu_pytorch_tanh',
      vision_use_head: false,
    },
    text_config: {
      model_type: 'qwen2',
      hidden_size: 896,
      intermediate_size: 4864,
      num_hidden_layers: 24,
      num_attention_heads: 14,
      num_key_value_heads: 2,
      hidden_act: 'silu',
      max_position_embeddings: 32768,
      rms_norm_eps: 1e-6,
      rope_theta: 1000000.0,
      vocab_size: 151936,
      tie_word_embeddings: true,
      use_sliding_window: false,
      sliding_window: 32768,
      max_window_layers: 24,
    },
  };
}

export const ARCHS = ['llava-1.5-7b', 'llava-onevision-0.5b'] as const;

/** The benchmarks' question (with LLaVA-1.5's template and one 576-token image: a 612-token prompt). */
export const BENCH_PROMPT = 'Describe this image in detail: which objects do you see, what colours are they, and where are they placed?';
export type ArchName = (typeof ARCHS)[number];

export interface SliceOptions {
  /** Decoder layers to build (a slice of the depth from the first layer), default all. */
  llmLayers?: number;
  /** Vision encoder layers to build, default all (the feature layer, e.g. -2, still applies). */
  vitLayers?: number;
}

/** The architecture's config with the depth cut to a slice. */
export function archConfig(arch: ArchName, slice: SliceOptions = {}): LlavaConfig {
  if (!ARCHS.includes(arch)) throw new Error(`unknown architecture '${arch}' (known: ${ARCHS.join(', ')})`);
  const json = (arch === 'llava-onevision-0.5b' ? llavaOnevision05bConfigJson() : llava15_7bConfigJson()) as { vision_config: Record<string, unknown>; text_config: Record<string, unknown> };
  if (slice.llmLayers !== undefined) json.text_config.num_hidden_layers = slice.llmLayers;
  if (slice.vitLayers !== undefined) json.vision_config.num_hidden_layers = slice.vitLayers;
  return parseLlavaConfig(json);
}

/** CLIPImageProcessor of llava-1.5 at `size` px: shortest edge, center crop, bicubic, CLIP mean/std. */
export function clipImageProcessor(size: number): ImageProcessor {
  return ImageProcessor.fromConfig({
    image_processor_type: 'CLIPImageProcessor',
    do_resize: true,
    size: { shortest_edge: size },
    resample: 3,
    do_center_crop: true,
    crop_size: { height: size, width: size },
    do_rescale: true,
    rescale_factor: 1 / 255,
    do_normalize: true,
    image_mean: [0.48145466, 0.4578275, 0.40821073],
    image_std: [0.26862954, 0.26130258, 0.27577711],
    do_convert_rgb: true,
  });
}

/** Everything LlavaModel.fromParts needs for a random model of `arch` (tokenizer: the fixture's LLaMA-2 vocabulary). */
export async function randomModelParts(arch: ArchName, slice: SliceOptions = {}, seed = 0, dtype: 'F32' | 'F16' = 'F32'): Promise<ModelParts & { source: RandomWeightSource }> {
  if (arch === 'llava-onevision-0.5b') throw new Error(`${arch} runs through scripts/bench-onevision.ts (modules and anyres tiles), not LlavaModel`);
  const config = archConfig(arch, slice);
  const tokenizer = await LlavaTokenizer.fromDir(TINY_LLAVA_DIR);
  const source = new RandomWeightSource(config, seed, `${arch} random weights`, dtype);
  return { name: `${arch} (random weights, seed ${seed})`, config, source, tokenizer, imageProcessor: clipImageProcessor(config.vision.imageSize) };
}
