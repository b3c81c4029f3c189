// How long the main thread waits for a worker's share of one call (layers/parallel.ts's tfjs
// worker, layers/packed/pool.ts's kernel threads) before it reports the worker as stalled,
// terminates it and throws: LoadOptions.workerTimeoutMs, else $ILLAVA_WORKER_TIMEOUT_MS, else
// 60 s (a LLaVA-7B prefill's largest share takes a few seconds on one core).
export const DEFAULT_WORKER_TIMEOUT_MS = 60_000;

export function workerTimeoutMs(option?: number): number {
  const env = process.env.ILLAVA_WORKER_TIMEOUT_MS;
  const value = option ?? (env === undefined || env === '' ? DEFAULT_WORKER_TIMEOUT_MS : Number(env));
  if (!Number.isInteger(value) || value < 1) {
    throw new Error(option !== undefined ? `workerTimeoutMs must be an integer >= 1 (ms), got ${String(option)}` : `ILLAVA_WORKER_TIMEOUT_MS must be an integer >= 1 (ms), got '${env}'`);
  }
  return value;
}

/** The message of a stalled worker, naming the knobs. */
export function stalledMessage(who: string, ms: number): string {
  return `${who} did not answer in ${ms} ms (terminated): it stalled, or the machine is too busy; raise workerTimeoutMs / $ILLAVA_WORKER_TIMEOUT_MS, or run with threads 1 (--threads 1)`;
}
