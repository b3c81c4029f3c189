// Additive attention masks.
import * as tf from '@tensorflow/tfjs-core';

/** Large negative logit for masked entries: exp() underflows to exactly 0 in float32. */
export const MASKED = -1e9;

/**
 * Causal mask [T, pastLength + T]: query i (sequence index pastLength + i) sees keys
 * 0..pastLength+i. 0 where visible, MASKED elsewhere.
 */
export function causalMask(queryLength: number, pastLength = 0): tf.Tensor2D {
  const keys = pastLength + queryLength;
  const data = new Float32Array(queryLength * keys);
  for (let i = 0; i < queryLength; i++) {
    for (let j = pastLength + i + 1; j < keys; j++) data[i * keys + j] = MASKED;
  }
  return tf.tensor2d(data, [queryLength, keys]);
}
