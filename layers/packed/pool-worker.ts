// A kernel thread of pool.ts: instantiates the kernels on every arena memory it is sent and runs
// its slot of each job (its share of a matmul's output columns) until told to exit. It blocks in
// Atomics.wait between jobs, so memories arrive through receiveMessageOnPort, not events.
import { receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { instantiateKernels, type KernelExports } from './kernel.js';
import { EXIT, MAX_ARGS, OP, SEQ, SLOT, STATUS, slotBase, type KernelOp } from './pool-protocol.js';
import { callKernel } from './pool.js';

const data = workerData as { ctrl: SharedArrayBuffer; index: number; port: MessagePort; module: WebAssembly.Module };
const ctrl = new Int32Array(data.ctrl);
const base = slotBase(data.index);
const kernels: KernelExports[] = [];
const OP_NAMES = Object.fromEntries(Object.entries(OP).filter(([name]) => name !== 'none').map(([name, code]) => [code, name])) as Record<number, KernelOp | undefined>;

function kernelsFor(memory: number): KernelExports {
  while (kernels.length <= memory) {
    const msg = receiveMessageOnPort(data.port) as { message: { memory: WebAssembly.Memory; index: number } } | undefined;
    if (!msg) throw new Error(`kernel worker ${data.index}: memory ${memory} was never sent`);
    kernels[msg.message.index] = instantiateKernels(msg.message.memory, data.module);
  }
  return kernels[memory];
}

function run(): void {
  const op = Atomics.load(ctrl, base + SLOT.op);
  if (op === OP.none) return;
  const k = kernelsFor(Atomics.load(ctrl, base + SLOT.memory));
  const name = OP_NAMES[op];
  if (name === undefined) throw new Error(`kernel worker ${data.index}: unknown op ${op}`);
  callKernel(k, name, Array.from(ctrl.subarray(base + SLOT.args, base + SLOT.args + MAX_ARGS)));
}

process.on('exit', () => {
  Atomics.store(ctrl, base + SLOT.dead, 1);
  Atomics.store(ctrl, base + SLOT.done, -1);
  Atomics.notify(ctrl, base + SLOT.done);
});

// Jobs are numbered from 1: a worker that starts after the first job was posted still runs it.
let seen = 0;
for (;;) {
  Atomics.wait(ctrl, SEQ, seen);
  const seq = Atomics.load(ctrl, SEQ);
  if (Atomics.load(ctrl, EXIT) === 1) break;
  if (seq === seen) continue;
  seen = seq;
  try {
    run();
    Atomics.store(ctrl, base + SLOT.status, STATUS.ok);
  } catch (e) {
    Atomics.store(ctrl, base + SLOT.status, STATUS.error);
    data.port.postMessage({ error: e instanceof Error ? e.message : String(e) });
  }
  Atomics.store(ctrl, base + SLOT.done, seq);
  Atomics.notify(ctrl, base + SLOT.done);
}
