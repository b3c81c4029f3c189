// CLIP-style contrastive pretraining of the vision tower (issue 14): each image's embedding (the
// CLS token after all encoder blocks, post_layernorm, a linear projection) is matched against the
// embedding of its scene caption (sceneCaption: objects, colours, quadrants, counts) by a small
// text encoder trained alongside (a 2-block pre-LN transformer over the caption words with a
// learned CLS, CONTRASTIVE in model.ts). Symmetric InfoNCE over the batch with CLIP's learnable
// temperature. No per-patch target: the patch tokens are shaped only through what the CLS gathers.
// The text encoder and both projections are training-only (writeModelFolder leaves them out).
import * as tf from '@tensorflow/tfjs-core';
import { MASKED } from '../../layers/mask.js';
import type { BatchContext } from './data.js';
import { CONTRASTIVE, CONTRASTIVE_PREFIX, mm, unfoldPatches, type TrainableLlava } from './model.js';
import { sceneCaption, sceneWithQuestions, type Scene, type Split } from './shapes.js';

export interface CaptionBatch {
  /** [numImages * N, 3pp] host-unfolded patches. */
  patches: Float32Array;
  numImages: number;
  /** [numImages, maxWords] caption word ids, padded with padId. */
  words: Int32Array;
  /** [numImages] words per caption (the rest is padding). */
  lengths: number[];
  captions: string[];
  scenes: Scene[];
}

/** Images [start, start + numImages) of a split with their captions (the same scenes as makeBatch's). */
export function makeCaptionBatch(ctx: BatchContext, split: Split, start: number, numImages: number, maxShapes = 4): CaptionBatch {
  const v = ctx.shape.vision;
  const N = (v.imageSize / v.patchSize) ** 2;
  const k = 3 * v.patchSize * v.patchSize;
  const W = CONTRASTIVE.maxWords;
  const patches = new Float32Array(numImages * N * k);
  const words = new Int32Array(numImages * W).fill(ctx.shape.padId);
  const out: CaptionBatch = { patches, numImages, words, lengths: [], captions: [], scenes: [] };
  for (let i = 0; i < numImages; i++) {
    const { scene } = sceneWithQuestions(split, start + i, 0, maxShapes);
    const caption = sceneCaption(scene);
    const ids = ctx.tokenizer.encode(caption, { addBos: false });
    if (ids.length > W || ids.includes(0)) throw new Error(`caption '${caption}' is not ${W} or fewer known words: ${JSON.stringify(ids)}`);
    words.set(ids, i * W);
    out.lengths.push(ids.length);
    out.captions.push(caption);
    out.scenes.push(scene);
    unfoldPatches(ctx.processor.preprocess(scene.image).pixelValues, v.imageSize, v.patchSize, patches, i * N * k);
  }
  return out;
}

const X = CONTRASTIVE_PREFIX;

/** L2-normalised rows. */
function normalise(x: tf.Tensor2D): tf.Tensor2D {
  return tf.mul(x, tf.rsqrt(tf.add(tf.sum(tf.square(x), 1, true), 1e-12)));
}

/** Caption embeddings [B, embed] (unit norm): CLS + words + positions, pre-LN blocks, LN, projection. */
export function textEmbedding(model: TrainableLlava, batch: CaptionBatch): tf.Tensor2D {
  const c = CONTRASTIVE;
  const B = batch.numImages;
  const L = c.maxWords + 1;
  const d = c.width / c.heads;
  const vocab = model.shape.text.vocab;
  const oneHot = tf.cast(tf.oneHot(tf.tensor1d(batch.words, 'int32'), vocab), 'float32') as tf.Tensor2D;
  const emb = tf.reshape(mm(oneHot, model.w(`${X}text.embed.weight`) as tf.Tensor2D), [B, c.maxWords, c.width]);
  const cls = tf.tile(tf.reshape(model.w(`${X}text.cls`), [1, 1, c.width]), [B, 1, 1]);
  let x = tf.reshape(tf.add(tf.concat([cls, emb], 1), model.w(`${X}text.position.weight`)), [B * L, c.width]) as tf.Tensor2D;
  // keys past a caption's end are masked: [B * heads, 1, L]
  const pad = new Float32Array(B * c.heads * L);
  batch.lengths.forEach((n, b) => {
    for (let h = 0; h < c.heads; h++) for (let j = n + 1; j < L; j++) pad[(b * c.heads + h) * L + j] = MASKED;
  });
  const keyMask = tf.tensor3d(pad, [B * c.heads, 1, L]);
  const heads = (y: tf.Tensor2D) => tf.reshape(tf.transpose(tf.reshape(y, [B, L, c.heads, d]), [0, 2, 1, 3]), [B * c.heads, L, d]) as tf.Tensor3D;
  for (let i = 0; i < c.layers; i++) {
    const pre = `${X}text.layers.${i}.`;
    const h = model.layerNorm(x, `${pre}ln1`);
    const q = heads(tf.mul(model.linear(h, `${pre}q`, true), 1 / Math.sqrt(d)));
    const k = heads(model.linear(h, `${pre}k`, true));
    const v = heads(model.linear(h, `${pre}v`, true));
    const attn = tf.softmax(tf.add(tf.matMul(q, k, false, true), keyMask));
    const o = tf.reshape(tf.transpose(tf.reshape(tf.matMul(attn, v), [B, c.heads, L, d]), [0, 2, 1, 3]), [B * L, c.width]) as tf.Tensor2D;
    x = tf.add(x, model.linear(o, `${pre}out`, true));
    const h2 = model.layerNorm(x, `${pre}ln2`);
    const a = model.linear(h2, `${pre}fc1`, true);
    x = tf.add(x, model.linear(tf.mul(a, tf.sigmoid(tf.mul(a, 1.702))) as tf.Tensor2D, `${pre}fc2`, true));
  }
  const first = tf.reshape(tf.slice(tf.reshape(x, [B, L, c.width]), [0, 0, 0], [-1, 1, -1]), [B, c.width]) as tf.Tensor2D;
  return normalise(model.linear(model.layerNorm(first, `${X}text.final_ln`), `${X}text.projection`, false));
}

/** Image embeddings [B, embed] (unit norm): CLS after all blocks, post_layernorm, projection. */
export function imageEmbedding(model: TrainableLlava, batch: CaptionBatch, group: number): tf.Tensor2D {
  const v = model.shape.vision;
  const N = (v.imageSize / v.patchSize) ** 2;
  const cls = model.clsEmbedding(tf.tensor2d(batch.patches, [batch.numImages * N, 3 * v.patchSize * v.patchSize]), batch.numImages, group);
  return normalise(model.linear(cls, `${X}visual.projection`, false));
}

/** [B, B] image x caption logits: exp(logit_scale) (clamped at 100, as CLIP) times the cosine similarities. */
export function contrastiveLogits(model: TrainableLlava, batch: CaptionBatch, group: number): tf.Tensor2D {
  const img = imageEmbedding(model, batch, group);
  const txt = textEmbedding(model, batch);
  const scale = tf.exp(tf.minimum(model.w(`${X}logit_scale`), Math.log(100)));
  return tf.mul(mm(img, tf.transpose(txt)), scale) as tf.Tensor2D;
}

/**
 * Symmetric InfoNCE: mean of the image -> caption and caption -> image cross-entropies, the
 * matching pair on the diagonal. Two scenes with identical captions would be false negatives; with
 * 1-4 shapes of 20 kinds in 64 cells they are rare (and only cost a little signal).
 */
export function contrastiveLoss(model: TrainableLlava, batch: CaptionBatch, group: number): tf.Scalar {
  const logits = contrastiveLogits(model, batch, group);
  const B = batch.numImages;
  const eye = tf.eye(B);
  const rows = tf.neg(tf.sum(tf.mul(tf.logSoftmax(logits), eye)));
  const cols = tf.neg(tf.sum(tf.mul(tf.logSoftmax(tf.transpose(logits)), eye)));
  return tf.div(tf.add(rows, cols), 2 * B) as tf.Scalar;
}

/** Top-1 retrieval in a batch: images whose best caption is their own, captions whose best image is theirs. */
export function retrievalHits(model: TrainableLlava, batch: CaptionBatch, group: number): { imageToText: number; textToImage: number } {
  return tf.tidy(() => {
    const logits = contrastiveLogits(model, batch, group);
    const i2t = tf.argMax(logits, 1).dataSync();
    const t2i = tf.argMax(logits, 0).dataSync();
    let a = 0;
    let b = 0;
    for (let i = 0; i < batch.numImages; i++) {
      // a scene with the same caption as the right one counts as right (the caption cannot tell them apart)
      a += batch.captions[i2t[i]] === batch.captions[i] ? 1 : 0;
      b += batch.captions[t2i[i]] === batch.captions[i] ? 1 : 0;
    }
    return { imageToText: a, textToImage: b };
  });
}
