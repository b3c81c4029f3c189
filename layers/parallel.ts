// Both cores for the heavy matmuls: tensor-parallel layers split between the main thread and one
// worker_threads Worker.
//
// Why this design (bench/README.md has the figures): tfjs-backend-wasm runs single-threaded in
// Node (WASM_HAS_MULTITHREAD_SUPPORT is hard-coded false there; a patched threaded build worked
// but is unofficial and hung after an out-of-memory error, /work/shared/reference). A Worker can
// load the stock tfjs-core + tfjs-backend-wasm packages on its own: it gets its own wasm instance,
// so its own XNNPACK and its own ~4 GB heap (the two halves of a model can address twice the
// memory one heap can). Each layer is split Megatron-style so each side does half the FLOPs and
// holds half the weights:
//   - ParallelLinear: output columns [0, h) on the main thread, [h, out) in the worker; the two
//     halves are concatenated (or handed out apart, like Linear.applyBlocks).
//   - ParallelMlp (CLIP's TwoLayerMlp, LLaMA's GatedMlp): the intermediate width is split, each
//     side computes its partial fc2 output, and the two [T, C] partials are added (fc2's bias on
//     the main side only).
// Per call: x [T, in] is copied into a SharedArrayBuffer, the worker is told by postMessage, both
// halves run at the same time, and the main thread blocks in Atomics.wait (allowed in Node's main
// thread) until the worker has written its half into a second SharedArrayBuffer. The wait has a
// timeout, and a worker that fails or dies sets an error status before it goes, so a broken
// worker gives a clear error, never a hang. Workers are unref()'d: a pool that was never disposed
// does not keep node alive.
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { GatedMlp, TwoLayerMlp } from './mlp.js';
import { Linear, hostColumns } from './linear.js';
import { activation } from './activations.js';
import { releaseUnpackedWeightsEnabled } from './wasm-memory.js';
import { stalledMessage, workerTimeoutMs } from './worker-timeout.js';
import { CTRL, STATUS, type FromWorker, type HalfSpec, type ToWorker } from './parallel-protocol.js';

export interface ParallelPoolOptions {
  /** tfjs backend in the worker (default: the main thread's current backend). */
  backend?: string;
  /** Free unpacked weights after their first matmul in the worker too (default: as on the main thread). */
  releaseWeights?: boolean;
  /** Longest wait for the worker's half of one call, in ms (default: $ILLAVA_WORKER_TIMEOUT_MS, else 60000; layers/worker-timeout.ts). */
  timeoutMs?: number;
  /** Longest wait for the worker to start and initialise its backend, in ms (default 60000). */
  initTimeoutMs?: number;
  /** Worker script (tests: a worker that never answers). Default: ./parallel-worker.js. */
  workerUrl?: URL;
}

/** One extra worker thread with its own tfjs + wasm backend, running the second half of layers. */
export class ParallelPool {
  private readonly ctrl: Int32Array;
  private readonly errors: MessagePort;
  private input = new Float32Array(new SharedArrayBuffer(4));
  private output = new Float32Array(new SharedArrayBuffer(4));
  private nextSeq = 1;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve(): void; reject(e: Error): void }>();
  private deadReason: string | null = null;
  readonly timeoutMs: number;

  private constructor(private readonly worker: Worker, ctrl: SharedArrayBuffer, errors: MessagePort, timeoutMs: number) {
    this.ctrl = new Int32Array(ctrl);
    this.errors = errors;
    this.timeoutMs = timeoutMs;
    worker.on('message', (m: FromWorker) => {
      const p = this.pending.get(m.seq);
      this.pending.delete(m.seq);
      if (m.error) p?.reject(new Error(`parallel worker: ${m.error}`));
      else p?.resolve();
    });
    worker.on('error', (e) => this.markDead(`parallel worker failed: ${e.message}`));
    worker.on('exit', (code) => this.markDead(`parallel worker exited (code ${code})`));
  }

  /** Starts the worker and its tfjs backend. */
  static async start(options: ParallelPoolOptions = {}): Promise<ParallelPool> {
    const ctrl = new SharedArrayBuffer(16);
    const { port1, port2 } = new MessageChannel();
    const worker = new Worker(options.workerUrl ?? new URL('./parallel-worker.js', import.meta.url), {
      workerData: { ctrl, errors: port2 },
      // The parent's flags minus those a worker rejects (e.g. --input-type from `node -e`).
      execArgv: process.execArgv.filter((a) => !a.startsWith('--input-type')),
      transferList: [port2],
    });
    const pool = new ParallelPool(worker, ctrl, port1, workerTimeoutMs(options.timeoutMs));
    // A pool that is never disposed must not keep node alive: the worker is ref'd only while a
    // request (start, build) is in flight (see request()).
    worker.unref();
    port1.unref();
    const initMs = options.initTimeoutMs ?? 60_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        pool.request({
          op: 'init',
          seq: 0,
          backend: options.backend ?? tf.getBackend(),
          releaseWeights: options.releaseWeights ?? releaseUnpackedWeightsEnabled(),
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`parallel worker did not start in ${initMs} ms (terminated); run with threads 1 / --threads 1`)), initMs);
        }),
      ]);
    } catch (e) {
      await pool.dispose();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    return pool;
  }

  get alive(): boolean {
    return this.deadReason === null;
  }

  /** The worker's thread id (for tests). */
  get threadId(): number {
    return this.worker.threadId;
  }

  private markDead(reason: string): void {
    if (this.deadReason === null) this.deadReason = reason;
    for (const p of this.pending.values()) p.reject(new Error(reason));
    this.pending.clear();
  }

  private check(): void {
    if (this.deadReason === null && Atomics.load(this.ctrl, CTRL.dead) === 1) this.markDead('parallel worker exited');
    if (this.deadReason !== null) throw new Error(`parallel pool is not usable: ${this.deadReason}`);
  }

  private request(msg: ToWorker & { seq: number }, transfer: ArrayBuffer[] = []): Promise<void> {
    this.check();
    const seq = this.nextSeq++;
    this.worker.ref();
    const settled = () => {
      if (this.pending.size === 0) this.worker.unref();
    };
    return new Promise<void>((resolve, reject) => {
      this.pending.set(seq, {
        resolve: () => (resolve(), settled()),
        reject: (e) => (reject(e), settled()),
      });
      this.worker.postMessage({ ...msg, seq }, transfer);
    });
  }

  /**
   * Sends the worker its half of a layer (the arrays are transferred) and waits until it is built
   * (synchronous, like run(), so model loading can stay synchronous); returns the layer's id.
   */
  build(spec: HalfSpec): number {
    this.check();
    const id = this.nextId++;
    const arrays = spec.kind === 'linear' ? [spec.weight, spec.bias] : [spec.w1, spec.b1, spec.w2, spec.b2];
    const transfer = [...new Set(arrays.filter((a): a is Float32Array => a !== null).map((a) => a.buffer as ArrayBuffer))];
    Atomics.store(this.ctrl, CTRL.status, STATUS.pending);
    this.worker.postMessage({ op: 'build', id, spec } satisfies ToWorker, transfer);
    this.waitWorker();
    return id;
  }

  /** Frees the worker's half of a layer. */
  release(id: number): void {
    if (this.alive) this.worker.postMessage({ op: 'dispose', id } satisfies ToWorker);
  }

  /**
   * Runs layer `id` on x [T, in] in the worker while `local()` runs here; returns local()'s result
   * and the worker's [T, outCols] half as a tensor. Throws (never hangs) if the worker fails.
   */
  run<R>(id: number, x: tf.Tensor2D, outCols: number, local: () => R): [R, tf.Tensor2D] {
    this.check();
    const [rows, inF] = x.shape;
    this.ensureBuffers(rows * inF, rows * outCols);
    this.input.set(x.dataSync() as Float32Array);
    Atomics.store(this.ctrl, CTRL.status, STATUS.pending);
    this.worker.postMessage({ op: 'run', id, rows, inF } satisfies ToWorker);
    let mine: R;
    try {
      mine = local();
    } catch (e) {
      try {
        this.waitWorker(); // leave the worker idle before the next call
      } catch {
        // the local error is the one to report
      }
      throw e;
    }
    try {
      this.waitWorker();
    } catch (e) {
      if (mine instanceof tf.Tensor) mine.dispose();
      else if (Array.isArray(mine)) mine.forEach((t) => t instanceof tf.Tensor && t.dispose());
      throw e;
    }
    return [mine, tf.tensor2d(this.output.subarray(0, rows * outCols), [rows, outCols])];
  }

  private waitWorker(): void {
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) {
        this.markDead(`no answer from the parallel worker in ${this.timeoutMs} ms`);
        void this.worker.terminate();
        throw new Error(stalledMessage('parallel worker', this.timeoutMs));
      }
      // The worker sets `dead` before `status`: a worker gone before this call stored `pending`
      // is seen here, one that goes later changes `status` and wakes the wait.
      const status = Atomics.load(this.ctrl, CTRL.dead) === 1 ? STATUS.dead : (Atomics.wait(this.ctrl, CTRL.status, STATUS.pending, left), Atomics.load(this.ctrl, CTRL.status));
      if (status === STATUS.ok) return;
      if (status === STATUS.error) {
        const m = receiveMessageOnPort(this.errors);
        throw new Error(`parallel worker: ${m ? String(m.message) : 'unknown error'}`);
      }
      if (status === STATUS.dead) {
        this.markDead('parallel worker exited');
        throw new Error('parallel worker exited while computing its half');
      }
    }
  }

  private ensureBuffers(inputLen: number, outputLen: number): void {
    if (inputLen <= this.input.length && outputLen <= this.output.length) return;
    const grow = (need: number, have: number) => (need <= have ? have : Math.max(need, Math.ceil(have * 1.5)));
    const input = new SharedArrayBuffer(4 * grow(inputLen, this.input.length));
    const output = new SharedArrayBuffer(4 * grow(outputLen, this.output.length));
    this.input = new Float32Array(input);
    this.output = new Float32Array(output);
    this.worker.postMessage({ op: 'buffers', input, output } satisfies ToWorker);
  }

  /** For tests: makes the worker exit abruptly at its next message. */
  crashForTest(): void {
    this.worker.postMessage({ op: 'crash' } satisfies ToWorker);
  }

  /** Terminates the worker (its layers become unusable). */
  async dispose(): Promise<void> {
    this.markDead('parallel pool disposed');
    this.errors.close();
    await this.worker.terminate();
  }
}

/** Columns split between the two sides: the main side's share, rounded to a multiple of 64 when possible. */
export function splitPoint(total: number, quantum = 64): number {
  const half = total / 2;
  const q = total >= 2 * quantum ? quantum : 1;
  return Math.max(1, Math.min(total - 1, Math.round(half / q) * q));
}

/** y = x W + b with output columns [0, h) on the main thread and [h, out) in the worker. */
export class ParallelLinear {
  readonly #pool: ParallelPool;
  /** Weights and biases held in the worker (counted by parameterCount). */
  offHeapParameters = 0;

  private constructor(
    pool: ParallelPool,
    readonly local: Linear,
    private readonly remoteId: number,
    readonly inFeatures: number,
    readonly outFeatures: number,
  ) {
    this.#pool = pool; // #private: walkers over a model's fields (tensor counts) skip the worker
  }

  /** From host data: weight [in, out] row-major, bias [out] or null. */
  static fromHost(pool: ParallelPool, weight: Float32Array, inF: number, outF: number, bias: Float32Array | null): ParallelLinear {
    if (weight.length !== inF * outF) throw new Error(`ParallelLinear: ${weight.length} values cannot be [${inF}, ${outF}]`);
    const h = splitPoint(outF);
    const id = pool.build({ kind: 'linear', weight: hostColumns(weight, inF, outF, h, outF - h), inF, outF: outF - h, bias: bias ? bias.slice(h) : null });
    let local: Linear;
    try {
      local = Linear.fromHost(hostColumns(weight, inF, outF, 0, h), inF, h, bias ? bias.slice(0, h) : null);
    } catch (e) {
      pool.release(id);
      throw e;
    }
    const made = new ParallelLinear(pool, local, id, inF, outF);
    made.offHeapParameters = (inF + (bias ? 1 : 0)) * (outF - h);
    return made;
  }

  /** x [T, in] -> the main side's blocks, then the worker's half as one [T, out - h] tensor. */
  applyBlocks(x: tf.Tensor2D): tf.Tensor2D[] {
    const [mine, theirs] = this.#pool.run(this.remoteId, x, this.outFeatures - this.local.outFeatures, () => this.local.applyBlocks(x));
    return [...mine, theirs];
  }

  /** x [T, in] -> [T, out] */
  apply(x: tf.Tensor2D): tf.Tensor2D {
    const parts = this.applyBlocks(x);
    const y = tf.concat(parts, 1) as tf.Tensor2D;
    parts.forEach((p) => p.dispose());
    return y;
  }

  /** Values of the weights: the local half, and the half the worker holds. */
  parameterCount(): number {
    return this.local.parameterCount() + this.offHeapParameters;
  }

  dispose(): void {
    this.local.dispose();
    this.#pool.release(this.remoteId);
  }
}

/** CLIP's TwoLayerMlp or LLaMA's GatedMlp with the intermediate width split between the two sides. */
export class ParallelMlp {
  readonly #pool: ParallelPool;
  /** Weights and biases held in the worker (counted by parameterCount). */
  offHeapParameters = 0;

  private constructor(
    pool: ParallelPool,
    readonly local: TwoLayerMlp | GatedMlp,
    private readonly remoteId: number,
    readonly inFeatures: number,
    readonly outFeatures: number,
  ) {
    this.#pool = pool;
  }

  /**
   * @param kind 'mlp': fc2(act(fc1 x)), w1 = fc1 [inF, inter]; 'gated': down(act(gate x) * up x),
   *   w1 = [gate | up] side by side, [inF, 2 inter]. w2 = fc2 / down [inter, outF]. Row-major host arrays.
   */
  static fromHost(
    pool: ParallelPool,
    kind: 'mlp' | 'gated',
    w: { w1: Float32Array; b1: Float32Array | null; w2: Float32Array; b2: Float32Array | null },
    inF: number,
    inter: number,
    outF: number,
    act: string,
  ): ParallelMlp {
    const cols1 = kind === 'gated' ? 2 * inter : inter;
    if (w.w1.length !== inF * cols1 || w.w2.length !== inter * outF) throw new Error(`ParallelMlp: weights do not match [${inF}, ${cols1}] and [${inter}, ${outF}]`);
    const actFn = activation(act);
    const h = splitPoint(inter, inter >= 1024 ? 512 : 64);
    // Columns [start, start + n) of the intermediate: fc1 columns (gate and up for 'gated'), fc2 rows.
    const part = (start: number, n: number, withB2: boolean) => {
      const cols = (s: number) => hostColumns(w.w1, inF, cols1, s, n);
      const bcols = (s: number) => (w.b1 ? w.b1.slice(s, s + n) : null);
      let w1: Float32Array;
      let b1: Float32Array | null;
      if (kind === 'gated') {
        const g = cols(start);
        const u = cols(inter + start);
        w1 = new Float32Array(inF * 2 * n);
        for (let r = 0; r < inF; r++) {
          w1.set(g.subarray(r * n, (r + 1) * n), r * 2 * n);
          w1.set(u.subarray(r * n, (r + 1) * n), r * 2 * n + n);
        }
        const gb = bcols(start);
        const ub = bcols(inter + start);
        b1 = gb && ub ? Float32Array.of(...gb, ...ub) : null;
      } else {
        w1 = cols(start);
        b1 = bcols(start);
      }
      return { w1, b1, w2: w.w2.slice(start * outF, (start + n) * outF), b2: withB2 ? w.b2 : null };
    };
    const remote = part(h, inter - h, false);
    const remoteParameters = remote.w1.length + (remote.b1?.length ?? 0) + remote.w2.length; // before the transfer detaches them
    const id = pool.build({ kind, ...remote, inF, inter: inter - h, outF, act });
    let local: TwoLayerMlp | GatedMlp;
    try {
      const mine = part(0, h, true);
      const fc1 = Linear.fromHost(mine.w1, inF, kind === 'gated' ? 2 * h : h, mine.b1);
      const fc2 = Linear.fromHost(mine.w2, h, outF, mine.b2);
      local = kind === 'gated' ? new GatedMlp(fc1, fc2, actFn) : new TwoLayerMlp(fc1, fc2, actFn);
    } catch (e) {
      pool.release(id);
      throw e;
    }
    const made = new ParallelMlp(pool, local, id, inF, outF);
    made.offHeapParameters = remoteParameters;
    return made;
  }

  /** x [T, C] -> [T, C_out] */
  apply(x: tf.Tensor2D): tf.Tensor2D {
    const [mine, theirs] = this.#pool.run(this.remoteId, x, this.outFeatures, () => this.local.apply(x));
    const y = tf.add(mine, theirs) as tf.Tensor2D;
    mine.dispose();
    theirs.dispose();
    return y;
  }

  /** Values of the weights: the local half, and the half the worker holds. */
  parameterCount(): number {
    return this.local.parameterCount() + this.offHeapParameters;
  }

  dispose(): void {
    this.local.dispose();
    this.#pool.release(this.remoteId);
  }
}
