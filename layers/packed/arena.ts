// Memory for packed weights outside the tfjs heap: shared WebAssembly memories of up to
// MEMORY_LIMIT bytes each, as many as the weights need (a 7B model in q8_0 takes two).
//
// Why several memories: wasm32 addresses at most 4 GiB per memory, and tfjs-wasm's own heap (also
// 4 GiB) keeps the activations and the float32 tensors. Why shared: the worker threads of
// pool.ts instantiate the same kernels on the same memories, so any thread can compute any
// columns of any weight and nothing is copied between threads.
//
// Layout of each memory: [0, 64 KiB) left to the module; then an io region of `ioBytes`
// (activations in, results out; one call at a time, so one region per memory suffices); then
// weights, allocated upwards in 64-byte aligned slices. Slices are freed all at once when the
// arena is disposed: weights live as long as the model.
import { instantiateKernels, kernelModule, type KernelExports } from './kernel.js';

const PAGE = 65536;
/** Largest memory made: 3.75 GiB (under wasm32's 4 GiB, and typed-array views of it stay < 2^32 bytes). */
export const MEMORY_LIMIT = 60 * 1024 * PAGE;
const RESERVED = PAGE;
const ALIGN = 64;

/** A byte range in one of the arena's memories. */
export interface ArenaSlice {
  readonly memory: number;
  readonly offset: number;
  readonly bytes: number;
}

export class WeightArena {
  readonly memories: WebAssembly.Memory[] = [];
  /** This thread's kernels, one instance per memory. */
  readonly kernels: KernelExports[] = [];
  private readonly tops: number[] = [];
  /** Memories that hold scratch (KV caches), never weights; freed together by resetScratch(). */
  private readonly scratch = new Set<number>();
  private readonly listeners: Array<(memory: WebAssembly.Memory, index: number) => void> = [];
  #disposed = false;

  /**
   * @param ioBytes size of each memory's io region (activations and results of one call)
   * @param memoryLimit largest memory made, bytes (default MEMORY_LIMIT; smaller for tests that
   *   need weights spread over many memories)
   */
  constructor(readonly ioBytes = 64 << 20, readonly memoryLimit = MEMORY_LIMIT) {
    if (!Number.isInteger(memoryLimit) || memoryLimit % PAGE !== 0 || memoryLimit < 4 * PAGE || memoryLimit > MEMORY_LIMIT) throw new Error(`arena memory limit must be a multiple of 64 KiB from 256 KiB to ${MEMORY_LIMIT} bytes, got ${memoryLimit}`);
    if (!Number.isInteger(ioBytes) || ioBytes < PAGE || ioBytes > memoryLimit / 2) throw new Error(`arena io region must be 64 KiB .. ${memoryLimit / 2} bytes, got ${ioBytes}`);
  }

  /** Byte offset of the io region in every memory. */
  get ioOffset(): number {
    return RESERVED;
  }

  /** Calls `listener` for every memory made from now on (the pool sends them to its workers). */
  onMemory(listener: (memory: WebAssembly.Memory, index: number) => void): void {
    this.listeners.push(listener);
  }

  /** Reserves `bytes` for weights in the first memory with room, or in a new one. */
  allocate(bytes: number): ArenaSlice {
    return this.reserve(bytes, false);
  }

  /**
   * Reserves several slices in one memory (a kernel reads only its own memory, so a layer's
   * weight, scales, column scales and bias must sit together). With `scratch`, in a scratch memory
   * (KV caches): they live until resetScratch().
   */
  allocateTogether(sizes: readonly number[], scratch = false): ArenaSlice[] {
    const aligned = sizes.map((b) => Math.ceil(b / ALIGN) * ALIGN);
    const whole = this.reserve(aligned.reduce((a, b) => a + b, 0), scratch);
    let offset = whole.offset;
    return sizes.map((bytes, i) => {
      const slice = { memory: whole.memory, offset, bytes };
      offset += aligned[i];
      return slice;
    });
  }

  /** Frees every scratch slice at once (their memories stay committed, for the next ones). */
  resetScratch(): void {
    for (const i of this.scratch) this.tops[i] = RESERVED + this.ioBytes;
  }

  private reserve(bytes: number, scratch: boolean): ArenaSlice {
    if (this.#disposed) throw new Error('weight arena is disposed');
    if (!Number.isInteger(bytes) || bytes < 0) throw new Error(`arena: cannot allocate ${bytes} bytes`);
    const size = Math.ceil(bytes / ALIGN) * ALIGN;
    const first = RESERVED + this.ioBytes;
    const limit = this.memoryLimit;
    if (first + size > limit) throw new Error(`arena: a ${(bytes / 2 ** 20).toFixed(1)} MiB block does not fit one ${(limit / 2 ** 20).toFixed(0)} MiB memory`);
    let index = this.tops.findIndex((top, i) => this.scratch.has(i) === scratch && top + size <= limit);
    if (index < 0) {
      index = this.addMemory();
      if (scratch) this.scratch.add(index);
    }
    const offset = this.tops[index];
    this.tops[index] = offset + size;
    this.ensure(index, offset + size);
    return { memory: index, offset, bytes };
  }

  private addMemory(): number {
    const initial = Math.ceil((RESERVED + this.ioBytes) / PAGE);
    let memory: WebAssembly.Memory;
    try {
      memory = new WebAssembly.Memory({ initial, maximum: this.memoryLimit / PAGE, shared: true });
    } catch (e) {
      throw new Error(`arena: could not create wasm memory ${this.memories.length + 1} (${e instanceof Error ? e.message : String(e)})`);
    }
    const index = this.memories.length;
    this.memories.push(memory);
    this.kernels.push(instantiateKernels(memory, kernelModule()));
    this.tops.push(RESERVED + this.ioBytes);
    this.listeners.forEach((l) => l(memory, index));
    return index;
  }

  private ensure(index: number, end: number): void {
    const memory = this.memories[index];
    const have = memory.buffer.byteLength;
    if (end <= have) return;
    try {
      memory.grow(Math.ceil((end - have) / PAGE));
    } catch (e) {
      throw new Error(`arena: could not grow wasm memory ${index + 1} to ${(end / 2 ** 30).toFixed(2)} GiB (${e instanceof Error ? e.message : String(e)}): the machine is out of memory`);
    }
  }

  /** Bytes of a slice (a view: valid until the memory grows, so take it right before use). */
  bytes(slice: ArenaSlice): Uint8Array {
    return new Uint8Array(this.memories[slice.memory].buffer, slice.offset, slice.bytes);
  }

  floats(slice: ArenaSlice): Float32Array {
    return new Float32Array(this.memories[slice.memory].buffer, slice.offset, slice.bytes / 4);
  }

  /** Float32 view of memory `index` at byte `offset`. */
  floatView(index: number, offset: number, count: number): Float32Array {
    return new Float32Array(this.memories[index].buffer, offset, count);
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /** Forgets the memories (freed by the garbage collector once no worker holds them). */
  dispose(): void {
    this.#disposed = true;
    this.memories.length = 0;
    this.kernels.length = 0;
    this.tops.length = 0;
  }
}
