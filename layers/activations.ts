// Activation functions by their Hugging Face names. All are elementwise on any shape.
import * as tf from '@tensorflow/tfjs-core';

export type ActivationName = 'quick_gelu' | 'gelu' | 'silu' | 'gelu_pytorch_tanh' | 'relu';
export const ACTIVATIONS: readonly ActivationName[] = ['quick_gelu', 'gelu', 'silu', 'gelu_pytorch_tanh', 'relu'];

/** CLIP's x * sigmoid(1.702 x). */
export function quickGelu<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(tf.mul(x, 1.702)))) as T;
}

/** Exact GELU, 0.5 x (1 + erf(x / sqrt 2)): the LLaVA projector's `gelu` (the tanh form differs by ~1e-3). */
export function gelu<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))))) as T;
}

/** GELU's tanh approximation, for models that name it. */
export function geluTanh<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => {
    const inner = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), Math.sqrt(2 / Math.PI));
    return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(inner)));
  }) as T;
}

/** SiLU (swish), x * sigmoid(x): LLaMA's MLP gate. */
export function silu<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(x))) as T;
}

export function activation(name: string): <T extends tf.Tensor>(x: T) => T {
  switch (name) {
    case 'quick_gelu':
      return quickGelu;
    case 'gelu':
      return gelu;
    case 'gelu_pytorch_tanh':
    case 'gelu_new':
      return geluTanh;
    case 'silu':
    case 'swish':
      return silu;
    case 'relu':
      return <T extends tf.Tensor>(x: T) => tf.relu(x) as T;
    default:
      throw new Error(`unsupported activation '${name}' (supported: ${ACTIVATIONS.join(', ')})`);
  }
}

/**
 * The same activations on one float32 value (for the host decode path of packed layers),
 * rounded to float32 like the tensor versions' outputs.
 */
export function hostActivation(name: string): (x: number) => number {
  const f = Math.fround;
  switch (name) {
    case 'silu':
    case 'swish':
      return (x) => f(x * f(1 / (1 + Math.exp(-x))));
    case 'quick_gelu':
      return (x) => f(x * f(1 / (1 + Math.exp(-f(1.702 * x)))));
    case 'relu':
      return (x) => (x > 0 ? x : 0);
    case 'gelu_pytorch_tanh':
    case 'gelu_new':
      return (x) => f(0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x))));
    default:
      throw new Error(`no host version of activation '${name}'`);
  }
}
