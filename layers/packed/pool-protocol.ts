// Shared control words between pool.ts (main thread) and pool-worker.ts (each worker).
//
// ctrl[SEQ] counts jobs: the main thread fills every worker's slot, then bumps SEQ and notifies;
// each worker runs its slot and stores the job's number in its DONE word. One job = one kernel
// call split by output columns, so a matmul costs one wake-up and one wait per worker.

export const SEQ = 0;
/** Set to 1 to make the workers exit. */
export const EXIT = 1;
/** Int32 words per worker slot, and where the slots start. */
export const SLOT_WORDS = 24;
export const SLOTS_AT = 8;
/** Offsets in a slot. */
export const SLOT = { op: 0, memory: 1, args: 2, done: 20, status: 21, dead: 22 } as const;
export const MAX_ARGS = 16;

/** Kernel ops a slot can name (0: nothing to do for this worker). */
export const OP = { none: 0, matmulQ8: 1, matmulQ4: 2, matmulF16: 3, readLoop: 4, attendDecode: 5, attendPrefill: 6, matmulPanel: 7 } as const;
export type KernelOp = Exclude<keyof typeof OP, 'none'>;

export const STATUS = { ok: 0, error: 1 } as const;

export function slotBase(worker: number): number {
  return SLOTS_AT + worker * SLOT_WORDS;
}

export function ctrlWords(workers: number): number {
  return SLOTS_AT + workers * SLOT_WORDS;
}
