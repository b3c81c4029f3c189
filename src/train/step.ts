// One training step's loss and gradients, shared by the main thread and the data-parallel worker
// (src/train/grad-worker.ts): the batch is a pure function of its spec, so either side can make it.
import * as tf from '@tensorflow/tfjs-core';
import { makeCaptionBatch, contrastiveLoss } from './contrastive.js';
import { makeBatch, type BatchContext } from './data.js';
import { answerLoss, patchLoss } from './loss.js';
import type { TrainableLlava } from './model.js';
import type { QuestionType, Split } from './shapes.js';

/**
 * 'vision': the image path (vision tower, projector, final norm, lm_head) on per-patch targets;
 * 'joint': the projector and the decoder on the answers (+ aux), the vision tower frozen as in
 * LLaVA's own recipe. Training the tower jointly (lr 1e-3) blew the image features up 45x in
 * 400 steps and wiped out what pretraining had put in them (per-patch probe: colour 25/25 ->
 * 10/25), and the decoder never learned to read them.
 * 'align': LLaVA's stage 1 on a frozen tower: the projector, final norm and lm_head on the
 * per-patch targets of 'vision', the vision tower untouched (for the CLIP-style tower, which must
 * keep only its contrastive training). A random projector left the joint stage on the CLIP-style
 * tower at the answer prior for ~500 steps (46.8 % after 1000); the default model's projector
 * had been aligned by 'vision'.
 * 'clip': the CLIP-style tower: the whole vision tower and the training-only text encoder on the
 * contrastive caption loss (src/train/contrastive.ts); no per-patch target. With two threads each
 * half of the batch is its own contrastive batch (negatives within the half, no gather).
 */
export type TrainMode = 'vision' | 'align' | 'joint' | 'clip';

export interface BatchSpec {
  split: Split;
  start: number;
  numImages: number;
  perImage: number;
  maxShapes: number;
  turns: number;
  /** Question types (default: the task's, shapes.QUESTION_TYPES). */
  types?: readonly QuestionType[];
}

export interface StepOptions {
  mode: TrainMode;
  /** Weight of the per-patch auxiliary loss in joint mode. */
  aux: number;
  /** Sequences per attention group (block-diagonal masks). */
  group: number;
}

/** Modes whose loss is the per-patch words ('vision', 'align'; the others: answers or captions). */
export function trainsOnPatchWords(mode: TrainMode): boolean {
  return mode === 'vision' || mode === 'align';
}

/** The variables a mode trains, in a fixed order (both threads agree on it). */
export function trainedVariables(model: TrainableLlava, mode: TrainMode): tf.Variable[] {
  if (mode === 'clip') return model.contrastiveVariables();
  if (mode === 'align') return model.alignmentVariables();
  return mode === 'vision' ? model.imagePathVariables() : model.decoderSideVariables();
}

/** Loss value and gradients (same order as `vars`, caller-owned) of one batch. */
export function lossAndGradients(model: TrainableLlava, ctx: BatchContext, vars: tf.Variable[], spec: BatchSpec, opts: StepOptions): { loss: number; grads: tf.Tensor[] } {
  if (opts.mode === 'clip') {
    const captions = makeCaptionBatch(ctx, spec.split, spec.start, spec.numImages, spec.maxShapes);
    return gradientsOf(() => contrastiveLoss(model, captions, opts.group), vars);
  }
  const batch = makeBatch(ctx, spec.split, spec.start, spec.numImages, spec.perImage, spec.maxShapes, spec.turns, spec.types);
  const f =
    trainsOnPatchWords(opts.mode)
      ? () => patchLoss(model.imageTokenLogits(batch.patches, batch.numImages, opts.group), batch)
      : () => answerLoss(model.forward(batch, { vision: opts.group, text: opts.group }), batch, model, opts.aux);
  return gradientsOf(f, vars);
}

function gradientsOf(f: () => tf.Scalar, vars: tf.Variable[]): { loss: number; grads: tf.Tensor[] } {
  const { value, grads } = tf.variableGrads(f, vars);
  const loss = value.dataSync()[0];
  value.dispose();
  return { loss, grads: vars.map((v) => grads[v.name]) };
}

/** Concatenated values of tensors (fixed order). */
export function flatten(tensors: readonly tf.Tensor[]): Float32Array {
  const out = new Float32Array(tensors.reduce((n, t) => n + t.size, 0));
  let at = 0;
  for (const t of tensors) {
    out.set(t.dataSync() as Float32Array, at);
    at += t.size;
  }
  return out;
}

/** Splits `flat` into arrays of the tensors' sizes. */
export function unflatten(flat: Float32Array, like: readonly tf.Tensor[]): Float32Array[] {
  let at = 0;
  return like.map((t) => flat.subarray(at, (at += t.size)));
}
