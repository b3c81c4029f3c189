// Throughput of `illava worker` processes on one Redis queue: images/s over N jobs for 1, 2 and 4
// worker processes of the embedded model (each process loads its own model, concurrency 1). Starts
// its own redis-server on a free loopback port unless --redis is given. Prints a table and writes
// JSON to bench/results/batch-throughput-<date>.json.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Job } from 'bullmq';
import { jobIdFor, type BatchJobData, type BatchResult } from '../src/batch.js';
import { connectQueue, enqueue } from '../src/cli-batch.js';
import { scriptArgs, runScript } from './args.js';
import { freePort, redisServerArgs } from './loopback-redis.js';

const USAGE = `
node dist/scripts/batch-throughput.js [--jobs 200] [--workers 1,2,4] [--max-tokens 12] [--redis redis://HOST:PORT] [--backend auto]
  images/s of 1, 2, 4 worker processes (embedded model) answering --jobs image jobs on one queue
`;
const args = scriptArgs('batch-throughput', USAGE, {
  jobs: { type: 'string', default: '200' },
  workers: { type: 'string', default: '1,2,4' },
  'max-tokens': { type: 'string', default: '12' },
  redis: { type: 'string' },
  backend: { type: 'string', default: 'auto' },
});
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = join(ROOT, 'dist/src/cli.js');
const SAMPLE = join(ROOT, 'models/default/sample.png');
const JOBS = Number(args.jobs);
const MAX_TOKENS = Number(args['max-tokens']);
const COUNTS = args.workers.split(',').map(Number);
if (!Number.isInteger(JOBS) || JOBS < 1 || !Number.isInteger(MAX_TOKENS) || MAX_TOKENS < 0 || COUNTS.some((n) => !Number.isInteger(n) || n < 1)) {
  process.stderr.write('batch-throughput: --jobs, --workers (comma-separated) and --max-tokens take positive integers\n');
  process.exit(1);
}

function waitForLine(child: ChildProcess, pattern: RegExp, ms: number): Promise<void> {
  return new Promise((res, rej) => {
    let text = '';
    const timer = setTimeout(() => rej(new Error(`timed out waiting for ${pattern}: ${text.slice(-500)}`)), ms);
    const on = (d: Buffer) => {
      text += d.toString();
      if (pattern.test(text)) {
        clearTimeout(timer);
        res();
      }
    };
    child.stdout?.on('data', on);
    child.stderr?.on('data', on);
    child.once('exit', (code) => rej(new Error(`exited (${code}) before ${pattern}: ${text.slice(-500)}`)));
  });
}

async function main(): Promise<void> {
  let redisProc: ChildProcess | undefined;
  let url = args.redis;
  if (!url) {
    const port = await freePort();
    redisProc = spawn('redis-server', redisServerArgs(port), { stdio: ['ignore', 'pipe', 'pipe'] });
    redisProc.on('error', (e) => {
      process.stderr.write(`batch-throughput: cannot start redis-server (${e.message}); install it or give --redis\n`);
      process.exit(1);
    });
    await waitForLine(redisProc, /Ready to accept connections/, 10000);
    url = `redis://127.0.0.1:${port}`;
  }
  const questions = ['What colour is the star?', 'Is there a yellow star?', 'Where is the yellow star?', 'What shape is it?'];
  const rows: Array<{ workers: number; jobs: number; seconds: number; imagesPerSecond: number; meanJobMs: number; meanQueueMs: number; perWorker: Record<string, number> }> = [];
  try {
    for (const n of COUNTS) {
      const queueName = `throughput-${n}-${Date.now()}`;
      const workers = Array.from({ length: n }, (_, i) =>
        spawn(process.execPath, [CLI, 'worker', '--redis', url!, '--queue', queueName, '--name', `w${i + 1}`, '--backend', args.backend], { stdio: ['ignore', 'pipe', 'pipe'] }),
      );
      try {
        await Promise.all(workers.map((w) => waitForLine(w, /waiting for jobs/, 120000)));
        const queue = await connectQueue(url, queueName);
        try {
          const jobs: BatchJobData[] = Array.from({ length: JOBS }, (_, i) => ({ id: `j${i}`, index: i, images: [SAMPLE], prompt: questions[i % questions.length], maxTokens: MAX_TOKENS }));
          const t0 = performance.now();
          await enqueue(queue, jobs, 3, 1000);
          for (;;) {
            const c = await queue.getJobCounts('completed', 'failed');
            if (c.completed + c.failed >= JOBS) break;
            await new Promise((r) => setTimeout(r, 50));
          }
          const seconds = (performance.now() - t0) / 1000;
          const results = (await Promise.all(jobs.map((j) => Job.fromId<BatchJobData, BatchResult>(queue, jobIdFor(j.id))))).map((j) => j?.returnvalue).filter((r): r is BatchResult => Boolean(r));
          const perWorker: Record<string, number> = {};
          for (const r of results) perWorker[r.worker] = (perWorker[r.worker] ?? 0) + 1;
          const mean = (f: (r: BatchResult) => number) => results.reduce((s, r) => s + f(r), 0) / Math.max(1, results.length);
          rows.push({ workers: n, jobs: results.length, seconds, imagesPerSecond: results.length / seconds, meanJobMs: mean((r) => r.timings.jobMs), meanQueueMs: mean((r) => r.timings.queueMs), perWorker });
          process.stderr.write(`${n} worker(s): ${results.length}/${JOBS} jobs in ${seconds.toFixed(1)} s\n`);
          await queue.obliterate({ force: true });
        } finally {
          await queue.close();
        }
      } finally {
        await Promise.all(
          workers.map(
            (w) =>
              new Promise<void>((res) => {
                if (w.exitCode !== null) return res();
                w.once('exit', () => res());
                w.kill('SIGTERM');
              }),
          ),
        );
      }
    }
  } finally {
    redisProc?.kill('SIGTERM');
  }
  const base = rows[0]?.imagesPerSecond ?? 1;
  const table = [
    '| workers | jobs | seconds | images/s | speed-up | mean job ms | jobs per worker |',
    '|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.workers} | ${r.jobs} | ${r.seconds.toFixed(1)} | ${r.imagesPerSecond.toFixed(1)} | ${(r.imagesPerSecond / base).toFixed(2)}x | ${r.meanJobMs.toFixed(0)} | ${Object.values(r.perWorker).join(' / ')} |`),
  ].join('\n');
  const machine = { cpus: cpus().length, availableParallelism: availableParallelism(), model: cpus()[0]?.model ?? '', loadavg: loadavg() };
  process.stdout.write(`${table}\n\n${machine.availableParallelism} CPU(s) available (${machine.model}); load average ${machine.loadavg.map((l) => l.toFixed(2)).join(' ')}\n`);
  const dir = join(ROOT, 'bench/results');
  mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().slice(0, 16).replace(/[T:]/g, '-');
  const file = join(dir, `batch-throughput-${stamp}.json`);
  writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), jobs: JOBS, maxTokens: MAX_TOKENS, backend: args.backend, machine, rows }, null, 2) + '\n');
  process.stdout.write(`${file}\n`);
}

runScript('batch-throughput', main);
