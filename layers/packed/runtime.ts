// What packed layers share: the arena holding their bytes and the threads that run their kernels.
import { WeightArena } from './arena.js';
import { KernelPool, type KernelPoolOptions } from './pool.js';
import type { PackedFormat } from '../../weights/index.js';

/**
 * Rows from which a packed linear runs the float32-panel kernel (kernels/panel.ts) instead of the
 * integer q8_0/q4_0 kernels or the row-at-a-time f16 one: the measured crossovers (bench/README.md,
 * "Float32 panels").
 */
export const PANEL_MIN_ROWS: Readonly<Record<PackedFormat, number>> = { q8_0: 8, q4_0: 8, f16: 2 };

export class PackedRuntime {
  readonly arena: WeightArena;
  readonly pool: KernelPool;
  /** The PANEL_MIN_ROWS these layers use (benches change it to compare the two paths on one shape). */
  panelMinRows: Record<PackedFormat, number> = { ...PANEL_MIN_ROWS };

  /**
   * @param threads threads that run the kernels, this one included (1: no workers)
   * @param ioBytes per-memory region for one call's activations and results (arena.ts)
   * @param memoryLimit largest arena memory (arena.ts; tests make it small)
   * @param poolOptions the kernel threads' options (timeoutMs)
   */
  constructor(threads = 1, ioBytes?: number, memoryLimit?: number, poolOptions: KernelPoolOptions = {}) {
    this.arena = new WeightArena(ioBytes, memoryLimit);
    this.pool = new KernelPool(this.arena, threads, poolOptions);
  }

  #openScratch = 0;

  /** A KV cache took arena scratch; closeScratch() when it is disposed. */
  openScratch(): void {
    this.#openScratch++;
  }

  /** The last open KV cache gone: its scratch memory is reused from the start. */
  closeScratch(): void {
    this.#openScratch = Math.max(0, this.#openScratch - 1);
    if (this.#openScratch === 0 && !this.arena.disposed) this.arena.resetScratch();
  }

  get threads(): number {
    return this.pool.threads;
  }

  async dispose(): Promise<void> {
    await this.pool.dispose();
    this.arena.dispose();
  }
}
