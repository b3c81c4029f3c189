// `illava batch`: enqueue a folder of images or a JSONL file on a BullMQ queue (idempotent: the job
// id comes from the input id), then wait with a progress bar and write the results as JSONL.
import cliProgress from 'cli-progress';
import { createWriteStream, type WriteStream } from 'node:fs';
import { Job, Queue } from 'bullmq';
import { checkQueueName, jobIdFor, readBatchInput, redisConnection, type BatchFailure, type BatchJobData, type BatchResult } from './batch.js';
import { makeDirs } from './files.js';
import { parseMergeOption } from './merging.js';
import { dirname, resolve } from 'node:path';

export interface BatchCommandOptions {
  redis: string;
  queue: string;
  prompt?: string;
  merge?: string;
  maxTokens?: number;
  out?: string;
  ordered?: boolean;
  detach?: boolean;
  status?: boolean;
  attempts: number;
  backoff: number;
  /** ms between polls of the queue. */
  poll: number;
  /** Seconds to wait for results (0: no limit). */
  timeout: number;
  quiet?: boolean;
}

const CONNECT_TIMEOUT_MS = 5000;

/** Resolves when Redis answers; one clear error otherwise (ioredis would retry for ever). */
export async function connectQueue(redis: string, name: string): Promise<Queue<BatchJobData, BatchResult>> {
  const queue = new Queue<BatchJobData, BatchResult>(checkQueueName(name), { connection: redisConnection(redis) });
  let timer: NodeJS.Timeout | undefined;
  let refuse: (e: Error) => void = () => {};
  const failed = new Promise<never>((_, reject) => {
    refuse = reject;
    timer = setTimeout(() => reject(new Error(`cannot reach Redis at ${redis} (no answer in ${CONNECT_TIMEOUT_MS / 1000} s; is redis-server running?)`)), CONNECT_TIMEOUT_MS);
  });
  // Refused / unknown host: said at once (ioredis itself would retry for ever).
  const onError = (e: NodeJS.ErrnoException) => refuse(new Error(`cannot reach Redis at ${redis}: ${e.code ?? e.message}${e.code === 'ECONNREFUSED' ? ' (is redis-server running?)' : ''}`));
  queue.on('error', onError);
  try {
    await Promise.race([queue.waitUntilReady().then(() => queue.getJobCounts('wait')), failed]);
  } catch (e) {
    void queue.close().catch(() => {});
    throw e;
  } finally {
    clearTimeout(timer);
    queue.off('error', onError);
  }
  // Later: Redis went away (commands wait for it to come back); said once per distinct error.
  let last = '';
  queue.on('error', (e: Error) => {
    if (e.message !== last) process.stderr.write(`illava: warning: Redis at ${redis}: ${e.message}\n`);
    last = e.message;
  });
  return queue;
}

async function inChunks<T, R>(items: T[], size: number, f: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size) out.push(...(await Promise.all(items.slice(i, i + size).map(f))));
  return out;
}

/** Adds the jobs not already on the queue; returns how many were new. */
export async function enqueue(queue: Queue<BatchJobData, BatchResult>, jobs: BatchJobData[], attempts: number, backoff: number): Promise<number> {
  const states = await inChunks(jobs, 500, (j) => queue.getJobState(jobIdFor(j.id)));
  const fresh = jobs.filter((_, i) => states[i] === 'unknown');
  for (let i = 0; i < fresh.length; i += 500) {
    await queue.addBulk(
      fresh.slice(i, i + 500).map((data) => ({
        name: 'answer',
        data,
        opts: { jobId: jobIdFor(data.id), attempts, backoff: { type: 'exponential', delay: backoff }, removeOnComplete: false, removeOnFail: false },
      })),
    );
  }
  return fresh.length;
}

type Outcome = { ok: true; result: BatchResult } | { ok: false; failure: BatchFailure };

/** The jobs that have finished (completed or failed for good), by input id. */
async function poll(queue: Queue<BatchJobData, BatchResult>, ids: string[]): Promise<Map<string, Outcome>> {
  const found = new Map<string, Outcome>();
  const states = await inChunks(ids, 500, (id) => queue.getJobState(jobIdFor(id)));
  const finished = ids.filter((_, i) => states[i] === 'completed' || states[i] === 'failed' || states[i] === 'unknown');
  await inChunks(finished, 200, async (id) => {
    const job = await Job.fromId<BatchJobData, BatchResult>(queue, jobIdFor(id));
    if (!job) found.set(id, { ok: false, failure: { id, error: 'the job was removed from the queue before it finished', attempts: 0 } });
    else if (job.returnvalue) found.set(id, { ok: true, result: job.returnvalue });
    else if (job.finishedOn) found.set(id, { ok: false, failure: { id, error: job.failedReason || 'the job finished without a result (not answered by illava worker?)', attempts: job.attemptsMade } });
  });
  return found;
}

function writer(out: string | undefined): { write: (line: string) => void; end: () => Promise<void> } {
  if (out === undefined) return { write: (line) => process.stdout.write(line), end: async () => {} };
  makeDirs(dirname(resolve(out)), `--out '${out}'`);
  const stream: WriteStream = createWriteStream(out);
  let failed: Error | undefined;
  stream.on('error', (e) => (failed = e));
  return {
    write: (line) => {
      if (failed) throw new Error(`--out '${out}': ${failed.message}`);
      stream.write(line);
    },
    end: () =>
      new Promise<void>((res, rej) => {
        stream.end(() => (failed ? rej(new Error(`--out '${out}': ${failed.message}`)) : res()));
      }),
  };
}

export async function batchCommand(input: string | undefined, opts: BatchCommandOptions): Promise<void> {
  const say = (line: string) => {
    if (!opts.quiet) process.stderr.write(`${line}\n`);
  };
  checkQueueName(opts.queue);
  redisConnection(opts.redis);
  if (opts.status) {
    const queue = await connectQueue(opts.redis, opts.queue);
    const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'completed', 'failed');
    const workers = await queue.getWorkers();
    process.stdout.write(`${JSON.stringify({ queue: opts.queue, ...counts, workers: workers.map((w) => w.rawname?.split(':w:')[1] ?? w.addr) })}\n`);
    await queue.close();
    return;
  }
  if (input === undefined) throw new Error('give a folder of images or a JSONL file (or --status)');
  if (opts.merge !== undefined) parseMergeOption(opts.merge); // checked here; each worker reads it again
  const jobs = readBatchInput(input, {
    prompt: opts.prompt,
    merge: opts.merge,
    maxTokens: opts.maxTokens,
    onDuplicate: (id, where) => process.stderr.write(`illava: warning: ${where}: id '${id.slice(0, 80)}' was already given: this line is ignored\n`),
  });
  const out = opts.detach ? undefined : writer(opts.out);
  const queue = await connectQueue(opts.redis, opts.queue);
  try {
    const added = await enqueue(queue, jobs, opts.attempts, opts.backoff);
    say(`queue '${opts.queue}': ${added} job(s) added, ${jobs.length - added} already there (of ${jobs.length})`);
    if (opts.detach || !out) return;
    if ((await queue.getWorkersCount()) === 0) say(`illava: no worker is connected to queue '${opts.queue}' yet: start one with  illava worker --redis ${opts.redis} --queue ${opts.queue}`);
    const bar = new cliProgress.SingleBar(
      { format: 'batch [{bar}] {value}/{total} done, {failed} failed  {eta_formatted}', stream: process.stderr, hideCursor: false, noTTYOutput: false, etaBuffer: 50 },
      cliProgress.Presets.shades_classic,
    );
    if (!opts.quiet) bar.start(jobs.length, 0, { failed: 0 });
    const pending = new Set(jobs.map((j) => j.id));
    const outcomes = new Map<string, Outcome>();
    let next = 0; // --ordered: the next input position to write
    let failed = 0;
    const line = (o: Outcome) => `${JSON.stringify(o.ok ? o.result : o.failure)}\n`;
    const deadline = opts.timeout > 0 ? Date.now() + opts.timeout * 1000 : Infinity;
    while (pending.size > 0) {
      const found = await poll(queue, [...pending]);
      for (const [id, o] of found) {
        pending.delete(id);
        outcomes.set(id, o);
        if (!o.ok) failed++;
        if (!opts.ordered) out.write(line(o));
      }
      if (opts.ordered) {
        while (next < jobs.length && outcomes.has(jobs[next].id)) out.write(line(outcomes.get(jobs[next++].id)!));
      }
      if (!opts.quiet) bar.update(outcomes.size, { failed });
      if (pending.size === 0) break;
      if (Date.now() > deadline) {
        if (!opts.quiet) bar.stop();
        await out.end();
        throw new Error(`--timeout: ${pending.size} job(s) still unfinished after ${opts.timeout} s (they stay on the queue; run the same command again to collect them)`);
      }
      await new Promise((r) => setTimeout(r, opts.poll));
    }
    if (!opts.quiet) bar.stop();
    await out.end();
    say(`queue '${opts.queue}': ${jobs.length - failed} done, ${failed} failed${opts.out ? `; results in ${opts.out}` : ''}`);
    if (failed > 0) process.exitCode = 2;
  } finally {
    await queue.close();
  }
}
