// Worker side of data-parallel training (src/train/data-parallel.ts): a worker_threads Worker
// with its own tfjs-core and wasm instance (so its own core), holding a copy of the model. Each
// request carries all current weights (the frozen vision tower too: a first version sent only the
// trained ones, and the worker's half of every step ran on its own random vision tower) and a
// batch spec; it answers with the loss and the gradients, flattened in trainedVariables() order.
import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { ImageProcessor } from '../preprocess.js';
import { LlavaTokenizer } from '../tokenizer.js';
import { registerAllGradients } from './gradients.js';
import { TrainableLlava, type TinyLlavaShape } from './model.js';
import { flatten, lossAndGradients, trainedVariables, unflatten, type BatchSpec, type StepOptions } from './step.js';

export interface WorkerInit {
  shape: TinyLlavaShape;
  /** Folder with tokenizer.json and preprocessor_config.json. */
  filesDir: string;
  step: StepOptions;
}

export interface GradRequest {
  /** Every parameter of the model (TrainableLlava.params order), frozen ones included. */
  weights: Float32Array;
  spec: BatchSpec;
}

export type GradReply = { ok: true; loss: number; grads: Float32Array } | { ok: false; error: string };

async function main(): Promise<void> {
  const init = workerData as WorkerInit;
  if (!(await tf.setBackend('wasm'))) throw new Error('worker: the wasm backend failed to initialise');
  await registerAllGradients();
  const model = new TrainableLlava(init.shape, 0, { contrastive: init.step.mode === 'clip' });
  const vars = trainedVariables(model, init.step.mode);
  const all = [...model.params.values()];
  const ctx = { shape: init.shape, processor: await ImageProcessor.fromFile(init.filesDir), tokenizer: await LlavaTokenizer.fromDir(init.filesDir) };
  parentPort!.on('message', (req: GradRequest) => {
    let reply: GradReply;
    try {
      const values = unflatten(req.weights, all);
      all.forEach((v, i) => tf.tidy(() => v.assign(tf.tensor(values[i], v.shape))));
      const { loss, grads } = lossAndGradients(model, ctx, vars, req.spec, init.step);
      const flat = flatten(grads);
      tf.dispose(grads);
      reply = { ok: true, loss, grads: flat };
      parentPort!.postMessage(reply, [flat.buffer as ArrayBuffer]);
    } catch (e) {
      reply = { ok: false, error: e instanceof Error ? (e.stack ?? e.message) : String(e) };
      parentPort!.postMessage(reply);
    }
  });
  parentPort!.postMessage({ ready: true });
}

main().catch((e) => {
  parentPort!.postMessage({ ok: false, error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
});
