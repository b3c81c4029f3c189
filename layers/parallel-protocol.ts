// Messages and shared control words between layers/parallel.ts (main thread) and
// layers/parallel-worker.ts (the worker).

/** Int32 slots of the shared control buffer. */
export const CTRL = { status: 0, dead: 1 } as const;
/** ctrl[CTRL.dead] is set to 1 (before status becomes dead) when the worker exits: it stays set,
 *  while status is reset to pending at every call. Values of ctrl[CTRL.status]: pending while the worker computes, then ok / error / dead. */
export const STATUS = { pending: 0, ok: 1, error: 2, dead: 3 } as const;

/** The worker's half of one layer (host arrays, transferred). Weights are [in, out] row-major. */
export type HalfSpec =
  | { kind: 'linear'; weight: Float32Array; inF: number; outF: number; bias: Float32Array | null }
  | {
      /** TwoLayerMlp (fc2(act(fc1 x))) over a slice of the intermediate width. */
      kind: 'mlp' | 'gated';
      /** fc1 [inF, inter] ('gated': gate and up side by side, [inF, 2 inter]). */
      w1: Float32Array;
      b1: Float32Array | null;
      /** fc2 / down [inter, outF]. */
      w2: Float32Array;
      b2: Float32Array | null;
      inF: number;
      inter: number;
      outF: number;
      act: string;
    };

export type ToWorker =
  | { op: 'init'; seq: number; backend: string; releaseWeights: boolean }
  | { op: 'build'; id: number; spec: HalfSpec }
  | { op: 'buffers'; input: SharedArrayBuffer; output: SharedArrayBuffer }
  | { op: 'run'; id: number; rows: number; inF: number }
  | { op: 'dispose'; id: number }
  | { op: 'crash' }
  /** For tests: blocks the worker for ms milliseconds. */
  | { op: 'sleep'; ms: number };

export interface FromWorker {
  op: 'ack';
  seq: number;
  error?: string;
}
