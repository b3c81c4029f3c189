// Data-parallel training on both cores: tfjs's wasm backend runs one thread per Node thread, so
// a step's images are split in two; this thread computes the gradients of the first part while a
// worker (src/train/grad-worker.ts, its own wasm instance on the other core) computes those of the
// second on a copy of all the weights sent with the request (7 MB for the shapes model). The
// two gradients are averaged and applied here, by the one optimizer. Measured in bench/README.md.
import { Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import type { BatchContext } from './data.js';
import type { TrainableLlava } from './model.js';
import type { GradReply, GradRequest, WorkerInit } from './grad-worker.js';
import { flatten, lossAndGradients, unflatten, type BatchSpec, type StepOptions } from './step.js';

export class GradientWorker {
  private constructor(private readonly worker: Worker) {}

  static start(init: WorkerInit): Promise<GradientWorker> {
    const worker = new Worker(new URL('./grad-worker.js', import.meta.url), { workerData: init });
    return new Promise((resolve, reject) => {
      worker.once('message', (m: { ready?: boolean } & Partial<GradReply>) => {
        if (m.ready) resolve(new GradientWorker(worker));
        else reject(new Error(`gradient worker failed to start: ${m.ok === false ? m.error : JSON.stringify(m)}`));
      });
      worker.once('error', reject);
    });
  }

  compute(weights: Float32Array, spec: BatchSpec): Promise<{ loss: number; grads: Float32Array }> {
    return new Promise((resolve, reject) => {
      const onError = (e: Error) => reject(new Error(`gradient worker died: ${e.message}`));
      this.worker.once('error', onError);
      this.worker.once('message', (m: GradReply) => {
        this.worker.off('error', onError);
        if (m.ok) resolve(m);
        else reject(new Error(`gradient worker: ${m.error}`));
      });
      const req: GradRequest = { weights, spec };
      this.worker.postMessage(req, [weights.buffer as ArrayBuffer]);
    });
  }

  close(): Promise<number> {
    return this.worker.terminate();
  }
}

/**
 * Loss and averaged gradients (caller-owned, `vars` order) of a batch split between this thread
 * (images [start, start + k)) and the worker (the rest); without a worker, the whole batch here.
 */
export async function parallelLossAndGradients(
  model: TrainableLlava,
  ctx: BatchContext,
  vars: tf.Variable[],
  spec: BatchSpec,
  opts: StepOptions,
  worker: GradientWorker | null,
): Promise<{ loss: number; grads: tf.Tensor[] }> {
  if (!worker || spec.numImages < 2) return lossAndGradients(model, ctx, vars, spec, opts);
  const here = Math.ceil(spec.numImages / 2);
  const pending = worker.compute(flatten([...model.params.values()]), { ...spec, start: spec.start + here, numImages: spec.numImages - here });
  const mine = lossAndGradients(model, ctx, vars, { ...spec, numImages: here }, opts);
  let theirs: { loss: number; grads: Float32Array };
  try {
    theirs = await pending;
  } catch (e) {
    tf.dispose(mine.grads);
    throw e;
  }
  const parts = unflatten(theirs.grads, vars);
  const grads = mine.grads.map((g, i) => tf.tidy(() => tf.mul(tf.add(g, tf.tensor(parts[i], g.shape)), 0.5)));
  tf.dispose(mine.grads);
  return { loss: (mine.loss + theirs.loss) / 2, grads };
}
