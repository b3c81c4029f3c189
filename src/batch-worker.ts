// `illava worker`: one loaded model answering the jobs of a BullMQ queue (src/batch.ts). Bad input
// (an unreadable or corrupt image, a prompt over the context, a bad merge config, malformed
// messages) fails the job at once with UnrecoverableError; any other error is retried per the
// job's attempts. SIGTERM / SIGINT: no new jobs, the one in flight finishes (a second signal, or
// the shutdown timeout, stops it and returns it to the queue), then the process exits 0. A worker
// that dies (SIGKILL) holds its job's lock until it expires; BullMQ's stalled-job check in any
// other worker then puts the job back in the queue, and it is answered once.
import { hostname } from 'node:os';
import { UnrecoverableError, WaitingError, Worker, type Job } from 'bullmq';
import { ChatInputError, prepareChat, probeChatImages, resolveImageUrl, generateChat, type ChatOutput } from './conversation.js';
import type { GenerateOutput, PixelValues } from './generate-types.js';
import type { LlavaModel } from './llava.js';
import { parseMergeOption } from './merging.js';
import { resolveMergeConfig, type MergeOption } from '../merge/index.js';
import { modelShape } from './config.js';
import { redisConnection, type BatchJobData, type BatchResult } from './batch.js';

export interface WorkerOptions {
  redis: string;
  queue: string;
  /** Jobs taken at once (default 1); the model still answers one at a time. */
  concurrency?: number;
  /** Name in results and logs (default host:pid). */
  name?: string;
  /** ms a job's lock lasts without renewal (default 60000); a dead worker's job is retaken after it. */
  lockDuration?: number;
  /** ms between stalled-job checks (default 30000). */
  stalledInterval?: number;
  /** Times a job may stall (its worker died) before it fails (default 2). */
  maxStalledCount?: number;
  /** ms SIGTERM waits for the job in flight before returning it to the queue (default 120000). */
  shutdownTimeout?: number;
  /** No per-job log lines on stderr. */
  quiet?: boolean;
  log?: (line: string) => void;
}

/** The job's input is at fault: failing again would fail the same way. */
class BadInput extends UnrecoverableError {}

function bad(e: unknown, prefix = ''): never {
  throw new BadInput(`${prefix}${e instanceof Error ? e.message : String(e)}`);
}

function mergeOption(merge: BatchJobData['merge'], model: LlavaModel): MergeOption | undefined {
  if (merge === undefined) return undefined;
  try {
    const option = parseMergeOption(typeof merge === 'string' ? merge : JSON.stringify(merge));
    resolveMergeConfig(option, modelShape(model.config));
    return option;
  } catch (e) {
    return bad(e, 'merge: ');
  }
}

async function pixelsOf(model: LlavaModel, refs: string[], label: string, first: number): Promise<PixelValues[]> {
  const out: PixelValues[] = [];
  for (const [i, ref] of refs.entries()) {
    const at = `${label} ${first + i + 1}`;
    let image: string | Uint8Array;
    try {
      image = resolveImageUrl(ref, { allowLocalFiles: true }, at);
      await probeChatImages(model, [image]);
    } catch (e) {
      return bad(e instanceof ChatInputError ? new Error(`${at}: ${e.message.replace(/^image 1: /, '')}`) : e);
    }
    try {
      // OneVision: video frames go through its video processor, several images each to one tile.
      out.push(label === 'video frame' && model.anyres?.video ? await model.framePixelValues(image) : await model.pixelValues(image, refs.length));
    } catch (e) {
      return bad(e, `${at}: `);
    }
  }
  return out;
}

/** Answers one job's data with the model: checks and decodes the input (BadInput), then generates. */
export async function answerJob(model: LlavaModel, data: BatchJobData, signal?: AbortSignal, onToken?: (n: number) => void): Promise<GenerateOutput | ChatOutput> {
  if (typeof data !== 'object' || data === null || typeof data.id !== 'string') bad(new Error('the job has no id (not enqueued by illava batch?)'));
  const merge = mergeOption(data.merge, model);
  const maxNewTokens = data.maxTokens ?? 64;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0) bad(new Error(`max_tokens must be an integer >= 0, got ${String(maxNewTokens)}`));
  let count = 0;
  const token = onToken ? () => onToken(++count) : undefined;
  if (data.messages !== undefined) {
    let prepared;
    try {
      prepared = prepareChat(model, data.messages, { maxNewTokens });
      await probeChatImages(model, prepared.images);
    } catch (e) {
      return bad(e);
    }
    try {
      return await generateChat(model, prepared, { merge, maxNewTokens, signal, onToken: token });
    } catch (e) {
      if (e instanceof ChatInputError) bad(e);
      throw e;
    }
  }
  if (typeof data.prompt !== 'string' || data.prompt === '') bad(new Error('the job has neither a prompt nor messages'));
  const images = await pixelsOf(model, data.images ?? [], 'image', 0);
  const video = await pixelsOf(model, data.video ?? [], 'video frame', 0);
  try {
    model.checkContext(model.promptIds({ prompt: data.prompt, images, video }), maxNewTokens);
  } catch (e) {
    bad(e);
  }
  return model.generate({ prompt: data.prompt, images, video: video.length ? video : undefined, merge, maxNewTokens, signal, onToken: token });
}

/** A generate() output as a result line. */
export function toResult(id: string, out: GenerateOutput, worker: string, attempt: number, queueMs: number, jobMs: number): BatchResult {
  return {
    id,
    text: out.text,
    tokenIds: out.tokenIds,
    finishReason: out.finishReason,
    tokens: { prompt: out.sequenceLength.input, afterMerge: out.sequenceLength.afterMerge, generated: out.tokenIds.length },
    merges: out.merges.map((m) => ({ patches: m.patches, tokens: m.tokens, vision: m.vision, language: m.language })),
    timings: { ...out.timings, queueMs, jobMs },
    worker,
    attempt,
  };
}

/** Runs a worker until SIGTERM / SIGINT (then resolves after closing). */
export async function runWorker(model: LlavaModel, opts: WorkerOptions): Promise<void> {
  const name = opts.name ?? `${hostname()}:${process.pid}`;
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const info = (line: string) => {
    if (!opts.quiet) log(line);
  };
  const inFlight = new Map<string, AbortController>();
  // One model answers one job at a time: with --concurrency > 1 the other jobs wait here (their
  // locks renewed meanwhile), which overlaps only the queue round trips.
  let turn: Promise<unknown> = Promise.resolve();
  const oneAtATime = <T>(f: () => Promise<T>): Promise<T> => {
    const run = turn.then(f, f);
    turn = run.catch(() => {});
    return run;
  };
  let stopping = false;
  const processor = async (job: Job<BatchJobData, BatchResult>, token?: string): Promise<BatchResult> => {
    const start = performance.now();
    const started = Date.now();
    const id = job.data?.id ?? String(job.id);
    const attempt = job.attemptsMade + 1;
    info(`worker ${name}: start ${id} (attempt ${attempt})`);
    const abort = new AbortController();
    inFlight.set(String(job.id), abort);
    try {
      let last = 0;
      const out = await oneAtATime(() =>
        answerJob(model, job.data, abort.signal, (n) => {
          if (n - last >= 16) {
            last = n;
            void job.updateProgress({ tokens: n }).catch(() => {});
          }
        }),
      );
      const result = toResult(id, out, name, attempt, started - job.timestamp, performance.now() - start);
      info(`worker ${name}: done ${id} (${out.tokenIds.length} tokens, ${result.timings.jobMs.toFixed(0)} ms)`);
      return result;
    } catch (e) {
      if (abort.signal.aborted && stopping && token !== undefined) {
        // Shutdown: the job goes back to the queue as it was (no attempt used).
        await job.moveToWait(token);
        info(`worker ${name}: returned ${id} to the queue (shutting down)`);
        throw new WaitingError();
      }
      const message = e instanceof Error ? e.message : String(e);
      info(`worker ${name}: failed ${id}: ${message}${e instanceof UnrecoverableError ? ' (bad input: not retried)' : ''}`);
      throw e;
    } finally {
      inFlight.delete(String(job.id));
    }
  };
  const worker = new Worker<BatchJobData, BatchResult>(opts.queue, processor, {
    connection: redisConnection(opts.redis),
    concurrency: opts.concurrency ?? 1,
    lockDuration: opts.lockDuration ?? 60_000,
    stalledInterval: opts.stalledInterval ?? 30_000,
    maxStalledCount: opts.maxStalledCount ?? 2,
    name,
    autorun: false,
  });
  let connectionError = '';
  worker.on('error', (e) => {
    const message = e.message;
    if (message !== connectionError) log(`illava: worker ${name}: ${message}`);
    connectionError = message;
  });
  worker.on('stalled', (jobId) => info(`worker ${name}: job ${jobId} lost its worker (stalled): back in the queue`));
  await worker.waitUntilReady().catch((e: Error) => {
    throw new Error(`cannot reach Redis at ${opts.redis}: ${e.message}`);
  });
  info(`worker ${name}: waiting for jobs on queue '${opts.queue}' at ${opts.redis} (concurrency ${opts.concurrency ?? 1})`);
  const done = new Promise<void>((resolveDone) => {
    let timer: NodeJS.Timeout | undefined;
    const stop = (signal: string) => {
      if (stopping) {
        info(`worker ${name}: ${signal} again: returning the job in flight to the queue`);
        inFlight.forEach((a) => a.abort(new Error('worker shutting down')));
        return;
      }
      stopping = true;
      info(`worker ${name}: ${signal}: finishing the job in flight, then exiting`);
      timer = setTimeout(() => inFlight.forEach((a) => a.abort(new Error('worker shutting down'))), opts.shutdownTimeout ?? 120_000);
      timer.unref();
      worker
        .close()
        .catch((e: Error) => log(`illava: worker ${name}: ${e.message}`))
        .finally(() => {
          if (timer) clearTimeout(timer);
          info(`worker ${name}: stopped`);
          resolveDone();
        });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
  void worker.run().catch((e: Error) => log(`illava: worker ${name}: ${e.message}`));
  await done;
}
