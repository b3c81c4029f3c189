// Registers tfjs-core's gradient functions. Node's entry of @tensorflow/tfjs-core (the CJS
// bundle) has none registered (the union package @tensorflow/tfjs does it with
// register_all_gradients, which only exists as extensionless ESM). The registries and the engine
// live in the global namespace, so the ESM copy's gradients land in the engine everyone uses.
import { register } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';

let done = false;

export async function registerAllGradients(): Promise<void> {
  if (done) return;
  register('./gradients-hooks.js', import.meta.url);
  await import('@tensorflow/tfjs-core/dist/register_all_gradients.js');
  if (!tf.getGradient('RealDiv')) throw new Error('tfjs gradients did not register');
  done = true;
}
