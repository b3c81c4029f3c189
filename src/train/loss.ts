// Training losses and greedy answers of the shapes model, on the logits of TrainableLlava.
import * as tf from '@tensorflow/tfjs-core';
import type { LabelledBatch } from './data.js';
import type { TrainableLlava } from './model.js';

function imageTokens(model: TrainableLlava): number {
  const v = model.shape.vision;
  return (v.imageSize / v.patchSize) ** 2;
}

/** Row of answer `a` (the last prompt token before it) in the [numSeq * T, vocab] logits. */
function answerLogitRow(batch: LabelledBatch, a: number, N: number): number {
  return batch.answerSeq[a] * (3 + N + batch.suffixLength) + 3 + N + batch.answerRow[a];
}

/**
 * Cross-entropy of every answer token (weight 1) and of the EOS after it (0.5), averaged over
 * answers; plus `aux` x a dense per-patch term on the first sequence of each image: at each image
 * token, the colour, shape and quadrant words of the shape in that patch ('no' for background).
 * The aux term only trains: it makes image tokens carry their patch's content early on.
 * @param logits [numSeq * T, vocab] from model.forward(batch)
 */
export function answerLoss(logits: tf.Tensor2D, batch: LabelledBatch, model: TrainableLlava, aux: number): tf.Scalar {
  const [rows, vocab] = logits.shape;
  const N = imageTokens(model);
  const T = 3 + N + batch.suffixLength;
  const target = new Float32Array(rows * vocab);
  const count = batch.answerId.length;
  batch.answerId.forEach((id, a) => {
    const row = answerLogitRow(batch, a, N);
    target[row * vocab + id] = 1;
    target[(row + 1) * vocab + batch.eosId] = 0.5;
  });
  if (aux > 0) {
    const w = (aux * count) / (batch.numImages * N);
    batch.patchTargets.forEach((targets, i) => {
      const first = i * batch.perImage * T;
      targets.forEach((t, n) => {
        const row = first + 3 + n;
        if (t) t.forEach((id) => (target[row * vocab + id] += w / t.length));
        else target[row * vocab + batch.noId] += w;
      });
    });
  }
  return tf.div(tf.neg(tf.sum(tf.mul(tf.logSoftmax(logits), tf.tensor2d(target, [rows, vocab])))), count) as tf.Scalar;
}

/**
 * Dense per-patch loss on image-only logits [numImages * N, vocab] (TrainableLlava.imageTokenLogits):
 * the colour, shape and quadrant words of the shape in the patch (weighted up: shape patches are
 * rare), 'no' for background.
 */
export function patchLoss(logits: tf.Tensor2D, batch: LabelledBatch): tf.Scalar {
  const [rows, vocab] = logits.shape;
  const N = rows / batch.numImages;
  const target = new Float32Array(rows * vocab);
  batch.patchTargets.forEach((targets, i) =>
    targets.forEach((t, n) => {
      const row = i * N + n;
      if (t) t.forEach((id) => (target[row * vocab + id] = 2));
      else target[row * vocab + batch.noId] = 1;
    }),
  );
  return tf.div(tf.neg(tf.sum(tf.mul(tf.logSoftmax(logits), tf.tensor2d(target, [rows, vocab])))), rows) as tf.Scalar;
}

/** Greedy answer ids (argmax at each answer's row) for a batch. */
export function predictAnswers(model: TrainableLlava, batch: LabelledBatch, group: number): number[] {
  const N = imageTokens(model);
  return tf.tidy(() => {
    const arg = tf.argMax(model.forward(batch, { vision: group, text: group }), 1).dataSync();
    return batch.answerId.map((_, a) => arg[answerLogitRow(batch, a, N)]);
  });
}
