// Threads for the packed-weight kernels: this thread plus `threads - 1` worker_threads Workers,
// all running the same kernels on the same shared arena memories (arena.ts). A call is split by
// output columns: each thread writes its own columns of the result, so the only
// synchronisation is one wake-up and one wait per worker per call.
//
// Why not layers/parallel.ts's worker: that one runs a second tfjs with its own heap and copies
// activations both ways; here the weights and the io region are shared memory, so a worker needs
// nothing but the kernel arguments. A worker that fails reports its message; one that dies or
// stalls is detected by the wait's timeout, so a broken pool gives an error, never a hang.
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { kernelModule, type KernelExports } from './kernel.js';
import type { WeightArena } from './arena.js';
import { EXIT, MAX_ARGS, OP, SEQ, SLOT, STATUS, ctrlWords, slotBase, type KernelOp } from './pool-protocol.js';
import { stalledMessage, workerTimeoutMs } from '../worker-timeout.js';

export interface KernelPoolOptions {
  /** Longest wait for a worker's share of one call, ms (default: $ILLAVA_WORKER_TIMEOUT_MS, else 60000; layers/worker-timeout.ts). */
  timeoutMs?: number;
}

export class KernelPool {
  private readonly ctrl: Int32Array;
  private readonly workers: Worker[] = [];
  private readonly ports: MessagePort[] = [];
  private seq = 0;
  private deadReason: string | null = null;
  readonly timeoutMs: number;

  /** @param threads threads that compute (this one included), 1..16 */
  constructor(readonly arena: WeightArena, readonly threads: number, options: KernelPoolOptions = {}) {
    if (!Number.isInteger(threads) || threads < 1 || threads > 16) throw new Error(`threads must be an integer from 1 to 16, got ${String(threads)}`);
    this.timeoutMs = workerTimeoutMs(options.timeoutMs);
    this.ctrl = new Int32Array(new SharedArrayBuffer(4 * ctrlWords(threads - 1)));
    const module = kernelModule();
    for (let w = 0; w < threads - 1; w++) {
      const { port1, port2 } = new MessageChannel();
      const worker = new Worker(new URL('./pool-worker.js', import.meta.url), {
        workerData: { ctrl: this.ctrl.buffer, index: w, port: port2, module },
        transferList: [port2],
        execArgv: process.execArgv.filter((a) => !a.startsWith('--input-type')),
      });
      worker.unref();
      port1.unref();
      worker.on('error', (e) => this.markDead(`kernel worker ${w} failed: ${e.message}`));
      this.workers.push(worker);
      this.ports.push(port1);
    }
    arena.memories.forEach((m, i) => this.ports.forEach((p) => p.postMessage({ memory: m, index: i })));
    arena.onMemory((m, i) => this.ports.forEach((p) => p.postMessage({ memory: m, index: i })));
  }

  private markDead(reason: string): void {
    if (this.deadReason === null) this.deadReason = reason;
  }

  /**
   * Runs kernel `op` on memory `memory` over output columns [0, N), split in multiples of
   * `quantum` between the threads. `args(thread, n0, n1)` gives that thread's kernel arguments.
   */
  run(op: KernelOp, memory: number, N: number, args: (thread: number, n0: number, n1: number) => number[], quantum = 4): void {
    if (this.deadReason !== null) throw new Error(`kernel pool is not usable: ${this.deadReason}`);
    const share = Math.ceil(N / this.threads / quantum) * quantum;
    const range = (t: number): [number, number] => [Math.min(N, t * share), Math.min(N, (t + 1) * share)];
    const ctrl = this.ctrl;
    const seq = ++this.seq;
    for (let w = 0; w < this.workers.length; w++) {
      const base = slotBase(w);
      const [n0, n1] = range(w + 1);
      if (n0 >= n1) {
        ctrl[base + SLOT.op] = OP.none;
        continue;
      }
      const a = args(w + 1, n0, n1);
      if (a.length > MAX_ARGS) throw new Error(`kernel pool: ${a.length} arguments`);
      ctrl[base + SLOT.op] = OP[op];
      ctrl[base + SLOT.memory] = memory;
      for (let i = 0; i < a.length; i++) ctrl[base + SLOT.args + i] = a[i] | 0;
    }
    if (this.workers.length > 0) {
      Atomics.store(ctrl, SEQ, seq);
      Atomics.notify(ctrl, SEQ);
    }
    const [n0, n1] = range(0);
    let localError: unknown = null;
    try {
      if (n0 < n1) callKernel(this.arena.kernels[memory], op, args(0, n0, n1));
    } catch (e) {
      localError = e;
    }
    const workerError = this.waitAll(seq);
    if (localError) throw localError;
    if (workerError) throw new Error(workerError);
  }

  /** Waits for every worker's share of job `seq`; returns the first error message, or null. */
  private waitAll(seq: number): string | null {
    const deadline = Date.now() + this.timeoutMs;
    let error: string | null = null;
    for (let w = 0; w < this.workers.length; w++) {
      const base = slotBase(w);
      for (;;) {
        const done = Atomics.load(this.ctrl, base + SLOT.done);
        if (done === seq) break;
        if (Atomics.load(this.ctrl, base + SLOT.dead) === 1) {
          this.markDead(`kernel worker ${w} exited`);
          return `kernel worker ${w} exited while computing its columns`;
        }
        const left = deadline - Date.now();
        if (left <= 0) {
          this.markDead(`kernel worker ${w} did not answer in ${this.timeoutMs} ms`);
          void this.workers[w].terminate();
          return stalledMessage(`kernel worker ${w}`, this.timeoutMs);
        }
        Atomics.wait(this.ctrl, base + SLOT.done, done, left);
      }
      if (Atomics.load(this.ctrl, base + SLOT.status) === STATUS.error && error === null) {
        const m = receiveMessageOnPort(this.ports[w]) as { message: { error?: string } } | undefined;
        error = `kernel worker ${w}: ${m?.message.error ?? 'unknown error'}`;
      }
    }
    return error;
  }

  /** Stops the workers. */
  async dispose(): Promise<void> {
    this.markDead('kernel pool disposed');
    Atomics.store(this.ctrl, EXIT, 1);
    Atomics.add(this.ctrl, SEQ, 1);
    Atomics.notify(this.ctrl, SEQ);
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.ports.forEach((p) => p.close());
  }
}

/** Calls kernel `op` with its arguments (this thread and pool-worker.ts share it). */
export function callKernel(k: KernelExports, op: KernelOp, a: readonly number[]): void {
  switch (op) {
    case 'matmulQ8':
      return k.matmulQ8(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11]);
    case 'matmulQ4':
      return k.matmulQ4(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11]);
    case 'matmulF16':
      return k.matmulF16(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9]);
    case 'matmulPanel':
      return k.matmulPanel(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12]);
    case 'readLoop':
      k.readLoop(a[0], a[1]);
      return;
    case 'attendDecode':
      return k.attendDecode(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10]);
    case 'attendPrefill':
      return k.attendPrefill(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]);
  }
}
