// The worker side of layers/parallel.ts: a worker_threads Worker with its own tfjs-core and its own
// tfjs-backend-wasm instance (its own ~4 GB wasm heap, its own XNNPACK), holding the worker's half
// of each tensor-parallel layer. See parallel.ts for the protocol.
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import '@tensorflow/tfjs-backend-cpu'; // --threads 2 --backend cpu
import { Linear } from './linear.js';
import { GatedMlp, TwoLayerMlp } from './mlp.js';
import { activation } from './activations.js';
import { setReleaseUnpackedWeights } from './wasm-memory.js';
import { CTRL, STATUS, type HalfSpec, type ToWorker } from './parallel-protocol.js';

interface Module {
  apply(x: tf.Tensor2D): tf.Tensor2D;
  dispose(): void;
}

const data = workerData as { ctrl: SharedArrayBuffer; errors: MessagePort };
const ctrl = new Int32Array(data.ctrl);
const errors = data.errors;
const modules = new Map<number, Module>();
let input: Float32Array | null = null;
let output: Float32Array | null = null;

function finish(status: number): void {
  Atomics.store(ctrl, CTRL.status, status);
  Atomics.notify(ctrl, CTRL.status);
}

// A worker that dies (uncaught error, process.exit) tells a waiting main thread at once.
process.on('exit', () => {
  Atomics.store(ctrl, CTRL.dead, 1);
  finish(STATUS.dead);
});

function build(spec: HalfSpec): Module {
  switch (spec.kind) {
    case 'linear':
      return Linear.fromHost(spec.weight, spec.inF, spec.outF, spec.bias);
    case 'mlp': {
      const fc1 = Linear.fromHost(spec.w1, spec.inF, spec.inter, spec.b1);
      const fc2 = Linear.fromHost(spec.w2, spec.inter, spec.outF, spec.b2);
      return new TwoLayerMlp(fc1, fc2, activation(spec.act));
    }
    case 'gated': {
      const gu = Linear.fromHost(spec.w1, spec.inF, 2 * spec.inter, spec.b1);
      const down = Linear.fromHost(spec.w2, spec.inter, spec.outF, spec.b2);
      return new GatedMlp(gu, down, activation(spec.act));
    }
  }
}

async function handle(msg: ToWorker): Promise<void> {
  switch (msg.op) {
    case 'init':
      if (!(await tf.setBackend(msg.backend))) throw new Error(`worker: backend '${msg.backend}' failed to initialise`);
      setReleaseUnpackedWeights(msg.releaseWeights);
      parentPort!.postMessage({ op: 'ack', seq: msg.seq });
      return;
    case 'build':
      modules.set(msg.id, build(msg.spec));
      finish(STATUS.ok);
      return;
    case 'buffers':
      input = new Float32Array(msg.input);
      output = new Float32Array(msg.output);
      return;
    case 'run': {
      const m = modules.get(msg.id);
      if (!m) throw new Error(`worker: no module ${msg.id}`);
      if (!input || !output) throw new Error('worker: no buffers');
      const x = tf.tensor2d(input.subarray(0, msg.rows * msg.inF), [msg.rows, msg.inF]);
      const y = m.apply(x);
      x.dispose();
      const values = y.dataSync() as Float32Array;
      y.dispose();
      output.set(values);
      finish(STATUS.ok);
      return;
    }
    case 'dispose':
      modules.get(msg.id)?.dispose();
      modules.delete(msg.id);
      return;
    case 'crash':
      // For tests: dies the way a worker would on a fatal error.
      process.exit(3);
    // falls through (never reached)
    case 'sleep':
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, msg.ms);
      return;
  }
}

parentPort!.on('message', (msg: ToWorker) => {
  handle(msg).catch((e: unknown) => {
    const message = e instanceof Error ? `${e.message}` : String(e);
    if (msg.op === 'run' || msg.op === 'build') {
      errors.postMessage(message);
      finish(STATUS.error);
    } else if ('seq' in msg) {
      parentPort!.postMessage({ op: 'ack', seq: msg.seq, error: message });
    } else {
      errors.postMessage(message);
    }
  });
});
