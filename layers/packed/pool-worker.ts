// A kernel thread of pool.ts: instantiates the kernels on every arena memory it is sent and runs
// its slot of each job (its share of a matmul's output columns) until told to exit. It blocks in
// Atomics.wait between jobs, so memories arrive through receiveMessageOnPort, not events.
import { receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { instantiateKernels, type KernelExports } from './kernel.js';
import { EXIT, OP, SEQ, SLOT, STATUS, slotBase } from './pool-protocol.js';

const data = workerData as { ctrl: SharedArrayBuffer; index: number; port: MessagePort; module: WebAssembly.Module };
const ctrl = new Int32Array(data.ctrl);
const base = slotBase(data.index);
const kernels: KernelExports[] = [];

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
  const a = Array.from(ctrl.subarray(base + SLOT.args, base + SLOT.args + 12));
  switch (op) {
    case OP.matmulQ8:
      k.matmulQ8(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11]);
      return;
    case OP.matmulQ4:
      k.matmulQ4(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11]);
      return;
    case OP.matmulF16:
      k.matmulF16(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10]);
      return;
    case OP.readLoop:
      k.readLoop(a[0], a[1]);
      return;
    case OP.attendDecode:
      k.attendDecode(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10]);
      return;
    default:
      throw new Error(`kernel worker ${data.index}: unknown op ${op}`);
  }
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
