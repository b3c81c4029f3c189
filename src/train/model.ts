// Differentiable LLaVA-1.5 forward for training (tf.Variable weights), batched, written for the
// wasm backend's fast path:
//  * every matmul is 2-D without transpose flags, forward and backward: `mm` has a custom
//    gradient that materialises the transposes (a copy) instead of tfjs's transposeA/B matmuls,
//    which fall back to a ~2 GFLOP/s scalar loop on wasm;
//  * linears run on [B*T, C] (one matmul for the whole batch);
//  * attention runs per head on groups of G sequences stacked into one [G*T, d] matrix with a
//    block-diagonal (and, in the decoder, causal) mask: one 2-D matmul per (group, head);
//  * token embeddings are a one-hot matmul (the gradient of tf.gather, UnsortedSegmentSum, has no
//    wasm kernel);
//  * patches are unfolded on the host (pixels need no gradient).
// The math is that of src/load.ts + layers/ (CLIP pre-norm blocks with quick_gelu, CLS, pre-LN;
// GELU projector; LLaMA RMSNorm, rotate-half RoPE, SiLU gated MLP), in float32. Weights are kept
// as [in, out] and written with the llava-hf names and PyTorch layouts by `exportTensors`.
import { CANONICAL_PREFIX } from '../../weights/index.js';
import * as tf from '@tensorflow/tfjs-core';
import { RotaryEmbedding } from '../../layers/rope.js';
import { MASKED } from '../../layers/mask.js';
import type { NamedArray } from './safetensors-write.js';
import seedrandom from 'seedrandom';

export interface TinyLlavaShape {
  vision: { hidden: number; intermediate: number; layers: number; heads: number; imageSize: number; patchSize: number };
  text: { hidden: number; intermediate: number; layers: number; heads: number; vocab: number };
  imageTokenId: number;
  bosId: number;
  eosId: number;
  padId: number;
}

const { vision: V, projector: P, language: L } = CANONICAL_PREFIX;

/** Name prefix of the contrastive pretraining's training-only weights (text encoder, projections). */
export const CONTRASTIVE_PREFIX = 'contrastive.';
/** The CLIP-style pretraining's text encoder: a pre-LN transformer over caption words + a CLS. */
export const CONTRASTIVE = { width: 64, layers: 2, heads: 2, maxWords: 20, embed: 64 } as const;
const EPS = 1e-5;

type Layout = 'linear' | 'conv' | 'plain';

/** 2-D matmul whose gradient uses explicit transposes + plain matmuls (wasm fast path). */
export const mm = tf.customGrad(((a: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
  save([a, b]);
  return {
    value: tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D),
    gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
      const g = dy as tf.Tensor2D;
      return [tf.matMul(g, tf.transpose(saved[1] as tf.Tensor2D)), tf.matMul(tf.transpose(saved[0] as tf.Tensor2D), g)];
    },
  };
}) as never) as unknown as (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor2D;

export function visionLayersRun(shape: TinyLlavaShape): number {
  return shape.vision.layers - 1; // vision_feature_layer -2
}

export function configJson(shape: TinyLlavaShape): Record<string, unknown> {
  const v = shape.vision;
  const t = shape.text;
  const patches = (v.imageSize / v.patchSize) ** 2;
  return {
    architectures: ['LlavaForConditionalGeneration'],
    ignore_index: -100,
    image_seq_length: patches,
    image_token_index: shape.imageTokenId,
    model_type: 'llava',
    multimodal_projector_bias: true,
    pad_token_id: shape.padId,
    projector_hidden_act: 'gelu',
    text_config: {
      model_type: 'llama',
      architectures: ['LlamaForCausalLM'],
      hidden_size: t.hidden,
      intermediate_size: t.intermediate,
      num_hidden_layers: t.layers,
      num_attention_heads: t.heads,
      num_key_value_heads: t.heads,
      head_dim: t.hidden / t.heads,
      hidden_act: 'silu',
      rms_norm_eps: EPS,
      rope_theta: 10000.0,
      rope_scaling: null,
      attention_bias: false,
      mlp_bias: false,
      max_position_embeddings: 512,
      vocab_size: t.vocab,
      bos_token_id: shape.bosId,
      eos_token_id: shape.eosId,
      pad_token_id: shape.padId,
      tie_word_embeddings: false,
      torch_dtype: 'float32',
    },
    tie_word_embeddings: false,
    torch_dtype: 'float32',
    vision_config: {
      model_type: 'clip_vision_model',
      hidden_size: v.hidden,
      intermediate_size: v.intermediate,
      num_hidden_layers: v.layers,
      num_attention_heads: v.heads,
      num_channels: 3,
      image_size: v.imageSize,
      patch_size: v.patchSize,
      projection_dim: v.hidden,
      layer_norm_eps: EPS,
      hidden_act: 'quick_gelu',
      attention_dropout: 0.0,
    },
    vision_feature_layer: -2,
    vision_feature_select_strategy: 'default',
    vocab_size: t.vocab,
  };
}

export interface TrainBatch {
  /** Host-unfolded patches, [numImages * N, 3 p p] (rows in raster order, columns (channel, row, col)). */
  patches: Float32Array;
  numImages: number;
  /** Questions per image (sequence i reads image floor(i / perImage)). */
  perImage: number;
  /** [numSeq, 3 + S] text ids: the 3 ids before <image> (BOS USER :), then S ids after it (padded). */
  textIds: Int32Array;
  suffixLength: number;
}

export class TrainableLlava {
  readonly params = new Map<string, tf.Variable>();
  private readonly layouts = new Map<string, { layout: Layout; torchShape: number[] }>();
  readonly rotary: RotaryEmbedding;

  /**
   * @param init.decoderQkStd std of the decoder's q/k projections at init (default 0.02, as the
   *   other linears; larger values start attention less uniform)
   * @param init.contrastive add the training-only text encoder and projections of the CLIP-style
   *   pretraining (names CONTRASTIVE_PREFIX..., src/train/contrastive.ts), created after every
   *   other weight so the rest initialises exactly as without them; never written to a model folder
   */
  constructor(
    readonly shape: TinyLlavaShape,
    seed = 0,
    init: { decoderQkStd?: number; contrastive?: boolean } = {},
  ) {
    const rng = seedrandom(`illava-init/${seed}`);
    const normal = (n: number, std: number) => {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i += 2) {
        const u = Math.max(rng(), 1e-12);
        const w = rng();
        const r = Math.sqrt(-2 * Math.log(u)) * std;
        out[i] = r * Math.cos(2 * Math.PI * w);
        if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * w);
      }
      return out;
    };
    const add = (name: string, shape: number[], data: Float32Array, layout: Layout, torchShape: number[]) => {
      this.params.set(name, tf.variable(tf.tensor(data, shape), true));
      this.layouts.set(name, { layout, torchShape });
    };
    const linear = (name: string, inF: number, outF: number, bias: boolean, std = 0.02) => {
      add(`${name}.weight`, [inF, outF], normal(inF * outF, std), 'linear', [outF, inF]);
      if (bias) add(`${name}.bias`, [outF], new Float32Array(outF), 'plain', [outF]);
    };
    const ones = (n: number) => new Float32Array(n).fill(1);
    const norm = (name: string, n: number, bias: boolean) => {
      add(`${name}.weight`, [n], ones(n), 'plain', [n]);
      if (bias) add(`${name}.bias`, [n], new Float32Array(n), 'plain', [n]);
    };
    const v = shape.vision;
    const C = v.hidden;
    const p = v.patchSize;
    const N = (v.imageSize / p) ** 2;
    add(`${V}embeddings.patch_embedding.weight`, [3 * p * p, C], normal(3 * p * p * C, 0.02), 'conv', [C, 3, p, p]);
    add(`${V}embeddings.class_embedding`, [C], normal(C, 0.02), 'plain', [C]);
    add(`${V}embeddings.position_embedding.weight`, [N + 1, C], sincosPositions(Math.sqrt(N), C), 'plain', [N + 1, C]);
    norm(`${V}pre_layrnorm`, C, true);
    const outStdV = 0.02 / Math.sqrt(2 * v.layers);
    for (let i = 0; i < v.layers; i++) {
      const pre = `${V}encoder.layers.${i}.`;
      norm(`${pre}layer_norm1`, C, true);
      for (const n of ['q_proj', 'k_proj', 'v_proj']) linear(`${pre}self_attn.${n}`, C, C, true);
      linear(`${pre}self_attn.out_proj`, C, C, true, outStdV);
      norm(`${pre}layer_norm2`, C, true);
      linear(`${pre}mlp.fc1`, C, v.intermediate, true);
      linear(`${pre}mlp.fc2`, v.intermediate, C, true, outStdV);
    }
    norm(`${V}post_layernorm`, C, true);
    const t = shape.text;
    const D = t.hidden;
    linear(`${P}linear_1`, C, D, true);
    linear(`${P}linear_2`, D, D, true);
    add(`${L}embed_tokens.weight`, [t.vocab, D], normal(t.vocab * D, 0.02), 'plain', [t.vocab, D]);
    const outStdT = 0.02 / Math.sqrt(2 * t.layers);
    for (let i = 0; i < t.layers; i++) {
      const pre = `${L}layers.${i}.`;
      norm(`${pre}input_layernorm`, D, false);
      for (const n of ['q_proj', 'k_proj']) linear(`${pre}self_attn.${n}`, D, D, false, init.decoderQkStd ?? 0.02);
      linear(`${pre}self_attn.v_proj`, D, D, false);
      linear(`${pre}self_attn.o_proj`, D, D, false, outStdT);
      norm(`${pre}post_attention_layernorm`, D, false);
      linear(`${pre}mlp.gate_proj`, D, t.intermediate, false);
      linear(`${pre}mlp.up_proj`, D, t.intermediate, false);
      linear(`${pre}mlp.down_proj`, t.intermediate, D, false, outStdT);
    }
    norm(`${L}norm`, D, false);
    linear('language_model.lm_head', D, t.vocab, false);
    if (init.contrastive) {
      const c = CONTRASTIVE;
      const X = CONTRASTIVE_PREFIX;
      add(`${X}text.embed.weight`, [t.vocab, c.width], normal(t.vocab * c.width, 0.02), 'plain', [t.vocab, c.width]);
      add(`${X}text.position.weight`, [c.maxWords + 1, c.width], normal((c.maxWords + 1) * c.width, 0.02), 'plain', [c.maxWords + 1, c.width]);
      add(`${X}text.cls`, [c.width], normal(c.width, 0.02), 'plain', [c.width]);
      for (let i = 0; i < c.layers; i++) {
        const pre = `${X}text.layers.${i}.`;
        norm(`${pre}ln1`, c.width, true);
        for (const n of ['q', 'k', 'v']) linear(`${pre}${n}`, c.width, c.width, true);
        linear(`${pre}out`, c.width, c.width, true, 0.02 / Math.sqrt(2 * c.layers));
        norm(`${pre}ln2`, c.width, true);
        linear(`${pre}fc1`, c.width, 4 * c.width, true);
        linear(`${pre}fc2`, 4 * c.width, c.width, true, 0.02 / Math.sqrt(2 * c.layers));
      }
      norm(`${X}text.final_ln`, c.width, true);
      linear(`${X}text.projection`, c.width, c.embed, false);
      linear(`${X}visual.projection`, C, c.embed, false);
      // CLIP's learnable temperature, log(1 / 0.07)
      add(`${X}logit_scale`, [1], Float32Array.of(Math.log(1 / 0.07)), 'plain', [1]);
    }
    this.rotary = new RotaryEmbedding(D / t.heads, 10000);
  }

  /** Variables that get gradients (the vision blocks past the feature layer never run). */
  trainable(): tf.Variable[] {
    const run = visionLayersRun(this.shape);
    return [...this.params.entries()]
      .filter(([name]) => {
        const m = /encoder\.layers\.(\d+)\./.exec(name);
        if (m && Number(m[1]) >= run) return false;
        return !name.includes('post_layernorm');
      })
      .map(([, v]) => v);
  }

  /** The parameter `name` (throws when there is none). */
  w(name: string): tf.Tensor {
    const v = this.params.get(name);
    if (!v) throw new Error(`no parameter ${name}`);
    return v;
  }

  /** x @ W (+ b) of the parameter `name`.weight / .bias. */
  linear(x: tf.Tensor2D, name: string, bias: boolean): tf.Tensor2D {
    const y = mm(x, this.w(`${name}.weight`) as tf.Tensor2D);
    return bias ? tf.add(y, this.w(`${name}.bias`)) : y;
  }

  /** LayerNorm with the parameters `name`.weight / .bias. */
  layerNorm(x: tf.Tensor2D, name: string): tf.Tensor2D {
    const mean = tf.mean(x, -1, true);
    const c = tf.sub(x, mean);
    const variance = tf.mean(tf.square(c), -1, true);
    return tf.add(tf.mul(tf.mul(c, tf.rsqrt(tf.add(variance, EPS))), this.w(`${name}.weight`)), this.w(`${name}.bias`));
  }

  private rmsNorm(x: tf.Tensor2D, name: string): tf.Tensor2D {
    const ms = tf.mean(tf.square(x), -1, true);
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(ms, EPS))), this.w(`${name}.weight`));
  }

  /**
   * Attention over `numSeq` sequences of length `len` (rows of q/k/v: sequence-major), per head,
   * in groups of `group` sequences with the additive mask [group*len, group*len].
   */
  attention(q: tf.Tensor2D, k: tf.Tensor2D, v: tf.Tensor2D, numSeq: number, len: number, heads: number, group: number, mask: tf.Tensor2D): tf.Tensor2D {
    const width = q.shape[1];
    const d = width / heads;
    const nG = numSeq / group;
    const GL = group * len;
    const byHead = (x: tf.Tensor2D) => tf.split(tf.reshape(tf.transpose(tf.reshape(x, [nG, GL, heads, d]), [0, 2, 1, 3]), [nG * heads * GL, d]), nG * heads, 0) as tf.Tensor2D[];
    const qs = byHead(tf.mul(q, 1 / Math.sqrt(d)));
    const vs = byHead(v);
    const kts = tf.split(tf.reshape(tf.transpose(tf.reshape(k, [nG, GL, heads, d]), [0, 2, 3, 1]), [nG * heads * d, GL]), nG * heads, 0) as tf.Tensor2D[];
    const outs = qs.map((qh, i) => mm(tf.softmax(tf.add(mm(qh, kts[i]), mask)) as tf.Tensor2D, vs[i]));
    return tf.reshape(tf.transpose(tf.reshape(tf.concat(outs, 0), [nG, heads, GL, d]), [0, 2, 1, 3]), [numSeq * len, width]);
  }

  /**
   * The vision tower's tokens [numImages * (N + 1), C] (CLS first in each image) after the first
   * `layers` encoder blocks.
   */
  towerTokens(patches: tf.Tensor2D, numImages: number, group: number, layers: number): tf.Tensor2D {
    const v = this.shape.vision;
    const C = v.hidden;
    const N = (v.imageSize / v.patchSize) ** 2;
    const T = N + 1;
    const emb = tf.reshape(mm(patches, this.w(`${V}embeddings.patch_embedding.weight`) as tf.Tensor2D), [numImages, N, C]);
    const cls = tf.tile(tf.reshape(this.w(`${V}embeddings.class_embedding`), [1, 1, C]), [numImages, 1, 1]);
    const tokens = tf.add(tf.concat([cls, emb], 1), this.w(`${V}embeddings.position_embedding.weight`));
    let x = this.layerNorm(tf.reshape(tokens, [numImages * T, C]) as tf.Tensor2D, `${V}pre_layrnorm`);
    const g = gcd(numImages, group);
    const mask = blockMask(g, T, false);
    for (let i = 0; i < layers; i++) {
      const pre = `${V}encoder.layers.${i}.`;
      const h = this.layerNorm(x, `${pre}layer_norm1`);
      const q = this.linear(h, `${pre}self_attn.q_proj`, true);
      const k = this.linear(h, `${pre}self_attn.k_proj`, true);
      const vv = this.linear(h, `${pre}self_attn.v_proj`, true);
      x = tf.add(x, this.linear(this.attention(q, k, vv, numImages, T, v.heads, g, mask), `${pre}self_attn.out_proj`, true));
      const h2 = this.layerNorm(x, `${pre}layer_norm2`);
      const a = this.linear(h2, `${pre}mlp.fc1`, true);
      const act = tf.mul(a, tf.sigmoid(tf.mul(a, 1.702))) as tf.Tensor2D;
      x = tf.add(x, this.linear(act, `${pre}mlp.fc2`, true));
    }
    return x;
  }

  /**
   * CLIP's image embedding before the projection, [numImages, C]: the CLS token after ALL encoder
   * blocks (the last one too, which LLaVA's feature layer -2 skips) and post_layernorm. Used by
   * the contrastive pretraining (src/train/contrastive.ts); the LLaVA forward never calls it.
   */
  clsEmbedding(patches: tf.Tensor2D, numImages: number, group: number): tf.Tensor2D {
    const v = this.shape.vision;
    const T = (v.imageSize / v.patchSize) ** 2 + 1;
    const x = this.towerTokens(patches, numImages, group, v.layers);
    const cls = tf.reshape(tf.slice(tf.reshape(x, [numImages, T, v.hidden]), [0, 0, 0], [-1, 1, -1]), [numImages, v.hidden]) as tf.Tensor2D;
    return this.layerNorm(cls, `${V}post_layernorm`);
  }

  /** [numImages * N, 3pp] patches -> projected image features [numImages * N, D]. */
  imageFeatures(patches: tf.Tensor2D, numImages: number, group: number): tf.Tensor2D {
    const v = this.shape.vision;
    const C = v.hidden;
    const N = (v.imageSize / v.patchSize) ** 2;
    const T = N + 1;
    const x = this.towerTokens(patches, numImages, group, visionLayersRun(this.shape));
    const features = tf.reshape(tf.slice(tf.reshape(x, [numImages, T, C]), [0, 1, 0], [-1, -1, -1]), [numImages * N, C]) as tf.Tensor2D;
    const p1 = this.linear(features as tf.Tensor2D, `${P}linear_1`, true);
    const gelu = tf.mul(tf.mul(p1, 0.5), tf.add(1, tf.erf(tf.mul(p1, Math.SQRT1_2)))) as tf.Tensor2D;
    return this.linear(gelu, `${P}linear_2`, true);
  }

  /** Logits [numSeq * T, vocab] of every position; T = 3 + N + suffixLength. */
  forward(batch: TrainBatch, groups: { vision: number; text: number } = { vision: 2, text: 2 }): tf.Tensor2D {
    const v = this.shape.vision;
    const t = this.shape.text;
    const D = t.hidden;
    const N = (v.imageSize / v.patchSize) ** 2;
    const numSeq = batch.textIds.length / (3 + batch.suffixLength);
    const T = 3 + N + batch.suffixLength;
    const img = this.imageFeatures(tf.tensor2d(batch.patches, [batch.numImages * N, 3 * v.patchSize * v.patchSize]), batch.numImages, groups.vision);
    const perSeq = tf.reshape(tf.tile(tf.reshape(img, [batch.numImages, 1, N, D]), [1, batch.perImage, 1, 1]), [numSeq, N, D]);
    const oneHot = tf.cast(tf.oneHot(tf.tensor1d(batch.textIds, 'int32'), t.vocab), 'float32') as tf.Tensor2D;
    const text = tf.reshape(mm(oneHot, this.w(`${L}embed_tokens.weight`) as tf.Tensor2D), [numSeq, 3 + batch.suffixLength, D]);
    const prefix = tf.slice(text, [0, 0, 0], [-1, 3, -1]);
    const suffix = tf.slice(text, [0, 3, 0], [-1, -1, -1]);
    let x = tf.reshape(tf.concat([prefix, perSeq, suffix], 1), [numSeq * T, D]) as tf.Tensor2D;
    const positions = Array.from({ length: T }, (_, i) => i);
    const rope = this.rotary.tables(positions);
    const hd = D / t.heads;
    const applyRope = (y: tf.Tensor2D) => {
      const y4 = tf.reshape(y, [numSeq, T, t.heads, hd]);
      const [a, b] = tf.split(y4, 2, 3);
      const rot = tf.concat([tf.neg(b), a], 3);
      return tf.reshape(tf.add(tf.mul(y4, rope.cos), tf.mul(rot, rope.sin)), [numSeq * T, D]) as tf.Tensor2D;
    };
    const g = gcd(numSeq, groups.text);
    const mask = blockMask(g, T, true);
    for (let i = 0; i < t.layers; i++) {
      const pre = `${L}layers.${i}.`;
      const h = this.rmsNorm(x, `${pre}input_layernorm`);
      const q = applyRope(this.linear(h, `${pre}self_attn.q_proj`, false));
      const k = applyRope(this.linear(h, `${pre}self_attn.k_proj`, false));
      const vv = this.linear(h, `${pre}self_attn.v_proj`, false);
      x = tf.add(x, this.linear(this.attention(q, k, vv, numSeq, T, t.heads, g, mask), `${pre}self_attn.o_proj`, false));
      const h2 = this.rmsNorm(x, `${pre}post_attention_layernorm`);
      const gate = this.linear(h2, `${pre}mlp.gate_proj`, false);
      const up = this.linear(h2, `${pre}mlp.up_proj`, false);
      x = tf.add(x, this.linear(tf.mul(tf.mul(gate, tf.sigmoid(gate)), up) as tf.Tensor2D, `${pre}mlp.down_proj`, false));
    }
    return this.linear(this.rmsNorm(x, `${L}norm`), 'language_model.lm_head', false);
  }

  /**
   * Image-only logits [numImages * N, vocab]: the projected image tokens through the decoder's
   * final norm and lm_head (no decoder layers). Used to pretrain the vision tower and projector on
   * dense per-patch targets, so image tokens start out carrying their patch's content as words.
   */
  imageTokenLogits(patches: Float32Array, numImages: number, group: number): tf.Tensor2D {
    const v = this.shape.vision;
    const N = (v.imageSize / v.patchSize) ** 2;
    const feats = this.imageFeatures(tf.tensor2d(patches, [numImages * N, 3 * v.patchSize * v.patchSize]), numImages, group);
    return this.linear(this.rmsNorm(feats, `${L}norm`), 'language_model.lm_head', false);
  }

  /** Variables of the vision tower, projector, final norm and lm_head (the image-only path). */
  imagePathVariables(): tf.Variable[] {
    const keep = new Set(this.trainable());
    return [...this.params.entries()]
      .filter(([name, v]) => keep.has(v) && (name.startsWith(V) || name.startsWith(P) || name === `${L}norm.weight` || name.startsWith('language_model.lm_head')))
      .map(([, v]) => v);
  }

  /**
   * Variables of the image path without the vision tower (projector, final norm, lm_head): the
   * alignment stage on a frozen CLIP-style tower, which must keep only its contrastive training.
   */
  alignmentVariables(): tf.Variable[] {
    const tower = new Set(this.towerVariables());
    return this.imagePathVariables().filter((v) => !tower.has(v));
  }

  /** Variables of the contrastive pretraining: the whole vision tower (all blocks, post_layernorm) and the training-only text side. */
  contrastiveVariables(): tf.Variable[] {
    if (!this.params.has(`${CONTRASTIVE_PREFIX}logit_scale`)) throw new Error('this TrainableLlava has no contrastive weights (construct it with { contrastive: true })');
    return [...this.params.entries()].filter(([name]) => name.startsWith(V) || name.startsWith(CONTRASTIVE_PREFIX)).map(([, v]) => v);
  }

  /** Variables of the vision tower only (what a CLIP-style checkpoint hands the next stage). */
  towerVariables(): tf.Variable[] {
    return [...this.params.entries()].filter(([name]) => name.startsWith(V)).map(([, v]) => v);
  }

  /** Variables of the projector and the language model (everything trainable but the vision tower). */
  decoderSideVariables(): tf.Variable[] {
    const keep = new Set(this.trainable());
    return [...this.params.entries()].filter(([name, v]) => keep.has(v) && !name.startsWith(V)).map(([, v]) => v);
  }

  /** Tensors with llava-hf (old scheme) names in PyTorch layouts. */
  exportTensors(): NamedArray[] {
    const out: NamedArray[] = [];
    for (const [name, variable] of this.params) {
      const { layout, torchShape } = this.layouts.get(name)!;
      const data = variable.dataSync() as Float32Array;
      if (layout === 'plain') out.push({ name, shape: torchShape, data: Float32Array.from(data) });
      else {
        // [in, out] -> [out, in]; conv [3pp, C] -> [C, 3pp] = [C, 3, p, p]
        const [rows, cols] = variable.shape as [number, number];
        const tr = new Float32Array(rows * cols);
        for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) tr[c * rows + r] = data[r * cols + c];
        out.push({ name, shape: torchShape, data: tr });
      }
    }
    return out;
  }

  /** Loads values saved by exportTensors (PyTorch layouts); only those of `only` when given. */
  importTensors(read: (name: string) => Float32Array | undefined, only?: ReadonlySet<tf.Variable>): void {
    for (const [name, variable] of this.params) {
      if (only && !only.has(variable)) continue;
      const data = read(name);
      if (!data) throw new Error(`checkpoint has no ${name}`);
      const { layout } = this.layouts.get(name)!;
      if (layout === 'plain') variable.assign(tf.tensor(data, variable.shape));
      else {
        const [rows, cols] = variable.shape as [number, number];
        const tr = new Float32Array(rows * cols);
        for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) tr[r * cols + c] = data[c * rows + r];
        variable.assign(tf.tensor2d(tr, [rows, cols]));
      }
    }
  }

  dispose(): void {
    this.params.forEach((v) => v.dispose());
  }
}

/**
 * Initial position embeddings [1 + g*g, C]: 0 for CLS, then MAE's fixed 2-D sin-cos table (half
 * the channels for the column, half for the row) at unit amplitude. With CLIP's N(0, 0.02) init
 * the position was ~3% of a token after patch embedding, and the per-patch quadrant target was
 * still at chance after 400 steps of image-path pretraining; with this it is learnable at once.
 */
function sincosPositions(g: number, C: number): Float32Array {
  const out = new Float32Array((g * g + 1) * C);
  const quarter = C / 4;
  for (let y = 0; y < g; y++) {
    for (let x = 0; x < g; x++) {
      const row = (1 + y * g + x) * C;
      for (let i = 0; i < quarter; i++) {
        const freq = 1 / 10000 ** (i / quarter);
        out[row + i] = Math.sin(x * freq);
        out[row + quarter + i] = Math.cos(x * freq);
        out[row + 2 * quarter + i] = Math.sin(y * freq);
        out[row + 3 * quarter + i] = Math.cos(y * freq);
      }
    }
  }
  return out;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

const maskCache = new Map<string, tf.Tensor2D>();

/** Block-diagonal (optionally causal) additive mask for `group` stacked sequences of length `len`. */
export function blockMask(group: number, len: number, causal: boolean): tf.Tensor2D {
  const key = `${group}/${len}/${causal}`;
  let m = maskCache.get(key);
  if (!m) {
    const n = group * len;
    const data = new Float32Array(n * n);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        const same = Math.floor(i / len) === Math.floor(j / len);
        const visible = same && (!causal || j % len <= i % len);
        data[i * n + j] = visible ? 0 : MASKED;
      }
    }
    m = tf.keep(tf.tensor2d(data, [n, n]));
    maskCache.set(key, m);
  }
  return m;
}

/** Unfolds [3, H, W] pixels into [N, 3pp] patch rows (PatchEmbedding's order). */
export function unfoldPatches(pixels: Float32Array, size: number, p: number, out: Float32Array, offset: number): void {
  const g = size / p;
  const k = 3 * p * p;
  for (let gy = 0; gy < g; gy++) {
    for (let gx = 0; gx < g; gx++) {
      const row = offset + (gy * g + gx) * k;
      for (let c = 0; c < 3; c++) {
        for (let i = 0; i < p; i++) {
          const src = c * size * size + (gy * p + i) * size + gx * p;
          const dst = row + c * p * p + i * p;
          for (let j = 0; j < p; j++) out[dst + j] = pixels[src + j];
        }
      }
    }
  }
}
