// `illava batch` and `illava worker` on a real Redis (redis-server on a free loopback port, no
// persistence): 30 input lines (2 corrupt images, 1 repeated id), 2 worker processes of the built CLI,
// one SIGKILLed in the middle of a job; every job answered once, as generate() answers it.
import { expect } from 'chai';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UnrecoverableError } from 'bullmq';
import { LlavaModel } from '../src/llava.js';
import { freePort, redisServerArgs } from '../scripts/loopback-redis.js';
import { answerJob } from '../src/batch-worker.js';
import { jobIdFor, parseJobLine, readJsonlJobs, redisConnection, type BatchFailure, type BatchJobData, type BatchResult } from '../src/batch.js';
import { connectQueue } from '../src/cli-batch.js';
import { REPO_ROOT } from './helpers/fixture.js';
import { greyPng } from './helpers/images.js';

const CLI = join(REPO_ROOT, 'dist/src/cli.js');
const MODEL_DIR = join(REPO_ROOT, 'models/default');
const SAMPLE = join(MODEL_DIR, 'sample.png');

/** A child process of the CLI with its output collected; `waitFor` resolves when stderr matches. */
interface Proc {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
  waitFor: (pattern: RegExp, ms?: number) => Promise<RegExpMatchArray>;
}

function run(cmd: string, args: string[]): Proc {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const waiters: Array<() => void> = [];
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    waiters.forEach((w) => w());
  });
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    waiters.forEach((w) => w());
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const waitFor = (pattern: RegExp, ms = 30000) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const check = () => {
        const m = (err + out).match(pattern);
        if (m) {
          waiters.splice(waiters.indexOf(check), 1);
          clearTimeout(timer);
          resolve(m);
        }
      };
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${pattern} in: ${(err + out).slice(-2000)}`)), ms);
      waiters.push(check);
      check();
    });
  return { child, stdout: () => out, stderr: () => err, exited, waitFor };
}

const hasRedis = !spawnSync('redis-server', ['--version']).error;

describe('illava batch and worker: jobs on a Redis queue (BullMQ)', function () {
  this.timeout(120000);
  let redis: Proc | undefined;
  let port = 0;
  let dir = '';
  let model: LlavaModel;
  const workers: Proc[] = [];

  before(async function () {
    if (!hasRedis) {
      console.log('      (skipped: no redis-server binary on PATH; install the Debian package redis-server)');
      this.skip();
    }
    port = await freePort();
    redis = run('redis-server', redisServerArgs(port));
    await redis.waitFor(/Ready to accept connections/);
    dir = mkdtempSync(join(tmpdir(), 'illava-batch-'));
    model = await LlavaModel.fromPretrained(MODEL_DIR);
  });

  after(async () => {
    for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
    if (redis && redis.child.exitCode === null) {
      redis.child.kill('SIGTERM');
      await redis.exited;
    }
    model?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('parses input lines with one-line errors; job ids BullMQ accepts; redis URLs', () => {
    expect(() => parseJobLine([], 0, '/', 'in.jsonl:1')).to.throw(/in\.jsonl:1: expected a JSON object/);
    expect(() => parseJobLine({ image: 'a.png', prompt: 'x' }, 0, '/', 'in.jsonl:2')).to.throw(/"id" must be a non-empty string or an integer/);
    expect(() => parseJobLine({ id: 'a', image: 'a.png' }, 0, '/', 'in.jsonl:3')).to.throw(/no "prompt" or "messages"/);
    expect(() => parseJobLine({ id: 'a', prompt: 'x', max_tokens: -1 }, 0, '/', 'in.jsonl:4')).to.throw(/"max_tokens" must be an integer >= 0/);
    expect(() => parseJobLine({ id: 'a', prompt: 'x', colour: 1 }, 0, '/', 'in.jsonl:5')).to.throw(/unknown field 'colour'/);
    expect(() => parseJobLine({ id: 'a', prompt: 'x', image: 'https://x/y.png' }, 0, '/', 'in.jsonl:6')).to.throw(/remote image URLs are not fetched/);
    expect(parseJobLine({ id: 7, image: 'b/c.png', prompt: 'x' }, 3, '/data', 'l')).to.deep.equal({ id: '7', index: 3, images: ['/data/b/c.png'], prompt: 'x' });
    const file = join(dir, 'bad.jsonl');
    writeFileSync(file, '{"id":"a","prompt":"x"}\n{"id": nope}\n');
    expect(() => readJsonlJobs(file)).to.throw(/bad\.jsonl:2: not valid JSON/);
    expect(jobIdFor('7')).to.equal('id-7');
    expect(jobIdFor('a:b%')).to.equal('id-a%3Ab%25');
    expect(() => redisConnection('localhost:6379')).to.throw(/expected redis:\/\/HOST:PORT/);
    expect(redisConnection('redis://:pw@10.0.0.2:6380/3')).to.include({ host: '10.0.0.2', port: 6380, password: 'pw', db: 3 });
  });

  it('bad input fails with UnrecoverableError (not retried): corrupt image, too long prompt, bad merge', async () => {
    const junk = join(dir, 'junk.png');
    writeFileSync(junk, Buffer.from('not an image at all, just text'));
    const job = (d: Partial<BatchJobData>): BatchJobData => ({ id: 'x', index: 0, prompt: 'What colour is the star?', ...d });
    const fails = async (d: Partial<BatchJobData>, pattern: RegExp) => {
      let error: unknown;
      await answerJob(model, job(d)).catch((e: unknown) => (error = e));
      expect(error, JSON.stringify(d)).to.be.instanceOf(UnrecoverableError);
      expect((error as Error).message).to.match(pattern);
    };
    await fails({ images: [junk] }, /image 1: .*cannot decode/);
    await fails({ images: [join(dir, 'missing.png')] }, /image 1: .*file not found/);
    await fails({ prompt: 'star '.repeat(5000) }, /over the model's context/);
    await fails({ merge: { nonsense: true } }, /merge: /);
    await fails({ prompt: undefined, messages: [{ role: 'robot', content: 'x' } as never] }, /messages\[0\]\.role/);
    const ok = await answerJob(model, job({ images: [SAMPLE] }));
    const ref = await model.generate({ prompt: 'What colour is the star?', images: [SAMPLE] });
    expect(ok.text).to.equal(ref.text);
  });

  it('unreachable Redis: batch and worker end with one line, not a hang', async () => {
    const closed = await freePort();
    const b = run(process.execPath, [CLI, 'batch', SAMPLE, '--redis', `redis://127.0.0.1:${closed}`, '--queue', 'q']);
    // A file that is not JSONL is refused before Redis is asked.
    expect(await b.exited).to.equal(1);
    expect(b.stderr()).to.match(/^illava: .*sample\.png/);
    expect(b.stderr().trim().split('\n')).to.have.length(1);
    const imgs = join(dir, 'imgs');
    rmSync(imgs, { recursive: true, force: true });
    spawnSync('mkdir', ['-p', imgs]);
    writeFileSync(join(imgs, 'a.png'), greyPng(8, 8));
    const c = run(process.execPath, [CLI, 'batch', imgs, '--redis', `redis://127.0.0.1:${closed}`, '--queue', 'q']);
    expect(await c.exited).to.equal(1);
    expect(c.stderr().trim().split('\n')).to.have.length(1);
    expect(c.stderr()).to.match(/^illava: cannot reach Redis at redis:\/\/127\.0\.0\.1:\d+/);
    const w = run(process.execPath, [CLI, 'worker', '--quiet', '--redis', `redis://127.0.0.1:${closed}`, '--queue', 'q']);
    expect(await w.exited).to.equal(1);
    expect(w.stderr()).to.match(/illava: cannot reach Redis at redis:\/\/127\.0\.0\.1:\d+/);
  });

  it('SIGTERM with --shutdown-timeout 0 returns the job in flight to the queue (no attempt used); the next worker answers it', async () => {
    const url = `redis://127.0.0.1:${port}`;
    const input = join(dir, 'long.jsonl');
    writeFileSync(input, JSON.stringify({ id: 'long', prompt: 'Hello there', max_tokens: 500 }) + '\n');
    const w = run(process.execPath, [CLI, 'worker', '--redis', url, '--queue', 'drain', '--name', 'd1', '--shutdown-timeout', '0']);
    workers.push(w);
    await w.waitFor(/waiting for jobs/);
    const add = run(process.execPath, [CLI, 'batch', input, '--redis', url, '--queue', 'drain', '--detach']);
    expect(await add.exited, add.stderr()).to.equal(0);
    expect(add.stderr()).to.match(/1 job\(s\) added, 0 already there/);
    await w.waitFor(/start long/);
    w.child.kill('SIGTERM');
    expect(await w.exited, w.stderr()).to.equal(0);
    expect(w.stderr()).to.match(/returned long to the queue/);
    const queue = await connectQueue(url, 'drain');
    try {
      const job = await queue.getJob(jobIdFor('long'));
      expect(await job!.getState()).to.equal('waiting');
      expect(job!.attemptsMade).to.equal(0);
    } finally {
      await queue.close();
    }
    const w2 = run(process.execPath, [CLI, 'worker', '--redis', url, '--queue', 'drain', '--name', 'd2', '--quiet']);
    workers.push(w2);
    const collect = run(process.execPath, [CLI, 'batch', input, '--redis', url, '--queue', 'drain', '--quiet']);
    expect(await collect.exited, collect.stderr()).to.equal(0);
    const result = JSON.parse(collect.stdout()) as BatchResult;
    const ref = await model.generate({ prompt: 'Hello there', maxNewTokens: 500 });
    expect([result.worker, result.attempt, result.text]).to.deep.equal(['d2', 1, ref.text]);
    w2.child.kill('SIGTERM');
    expect(await w2.exited).to.equal(0);
  });

  it('30 lines, 2 workers, one SIGKILLed mid-job: each valid job answered once as generate() answers it, the 2 corrupt images failed, the queue empty', async function () {
    const url = `redis://127.0.0.1:${port}`;
    const queueName = 'acceptance';
    // Inputs: the sample image and grey images of several sizes, several questions, chat messages
    // with a data: URL, a merge preset; 2 corrupt images; line 30 repeats the id of line 1.
    const greys = [8, 24, 40].map((n) => {
      const p = join(dir, `grey${n}.png`);
      writeFileSync(p, greyPng(n, n + 4));
      return p;
    });
    const truncated = join(dir, 'truncated.png');
    writeFileSync(truncated, greyPng(32, 32, 10).subarray(0, 60));
    const junk = join(dir, 'corrupt.png');
    writeFileSync(junk, Buffer.alloc(300, 7));
    const questions = ['What colour is the star?', 'Is there a yellow star?', 'Where is the yellow star?', 'What shape is it?'];
    const dataUrl = `data:image/png;base64,${readFileSync(SAMPLE).toString('base64')}`;
    const lines: Array<Record<string, unknown>> = [];
    for (let i = 0; i < 27; i++) {
      const image = i % 4 === 3 ? greys[i % 3] : SAMPLE;
      if (i % 9 === 4) lines.push({ id: `chat-${i}`, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: dataUrl } }, { type: 'text', text: questions[i % 4] }] }], max_tokens: 12 });
      else lines.push({ id: `img-${i}`, image: image.startsWith(dir) ? image.slice(dir.length + 1) : image, prompt: questions[i % 4], max_tokens: 12, ...(i % 5 === 2 ? { merge: 'illava' } : {}) });
    }
    lines.splice(10, 0, { id: 'bad-truncated', image: truncated, prompt: 'What colour is the star?' });
    lines.splice(20, 0, { id: 'bad-corrupt', image: junk, prompt: 'What colour is the star?' });
    lines.push({ id: 'img-0', image: greys[0], prompt: 'a repeated id: ignored' });
    expect(lines).to.have.length(30);
    const input = join(dir, 'jobs.jsonl');
    writeFileSync(input, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    const unique = lines.slice(0, 29);

    // Expected answers, from generate() / chat() in this process on the same backend as the workers.
    const expected = new Map<string, { text: string; tokenIds: number[] }>();
    for (const l of unique) {
      if (String(l.id).startsWith('bad-')) continue;
      const opts = { maxNewTokens: 12 };
      const out = l.messages
        ? await model.chat(l.messages as never, opts)
        : await model.generate({ prompt: l.prompt as string, images: [String(l.image).startsWith('/') ? String(l.image) : join(dir, String(l.image))], merge: l.merge as 'illava' | undefined, ...opts });
      expected.set(String(l.id), { text: out.text, tokenIds: out.tokenIds });
    }

    const fast = ['--lock-duration', '1500', '--stalled-interval', '500', '--backend', model.backend.name];
    const [w1, w2] = ['w1', 'w2'].map((name) => run(process.execPath, [CLI, 'worker', '--redis', url, '--queue', queueName, '--name', name, ...fast]));
    workers.push(w1, w2);
    await Promise.all([w1, w2].map((w) => w.waitFor(/waiting for jobs/)));

    const out = join(dir, 'results.jsonl');
    const batch = run(process.execPath, [CLI, 'batch', input, '--redis', url, '--queue', queueName, '--out', out, '--ordered', '--poll', '100']);
    // Kill w1 right after it starts its second image job (each takes tens of ms: it is mid-job).
    const started = await w1.waitFor(/start (img-\d+)[^\n]*\n(?:[^\n]*\n)*?[^\n]*start (img-\d+)/);
    w1.child.kill('SIGKILL');
    const killedId = started[2];
    expect(await batch.exited, batch.stderr()).to.equal(2); // 2: some jobs failed
    expect(w1.stderr()).to.not.include(`done ${killedId} `);

    const results = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as BatchResult & BatchFailure);
    expect(results.map((r) => r.id), 'one line per unique id, in input order').to.deep.equal(unique.map((l) => String(l.id)));
    for (const r of results) {
      if (r.id.startsWith('bad-')) continue;
      expect(r.error, r.id).to.equal(undefined);
      expect({ text: r.text, tokenIds: r.tokenIds }, r.id).to.deep.equal(expected.get(r.id));
      expect(r.worker).to.be.oneOf(['w1', 'w2']);
      expect(r.tokens.generated).to.equal(r.tokenIds.length);
      expect(r.timings.jobMs).to.be.greaterThan(0);
    }
    const killed = results.find((r) => r.id === killedId)!;
    expect(killed.worker, 'the killed job was answered by the other worker').to.equal('w2');
    const bad = results.filter((r) => r.id.startsWith('bad-'));
    expect(bad.map((r) => [r.id, r.attempts])).to.deep.equal([
      ['bad-truncated', 1],
      ['bad-corrupt', 1],
    ]);
    expect(bad[0].error).to.match(/image 1: .*truncated\.png.*cannot decode/);
    expect(bad[1].error).to.match(/image 1: .*corrupt\.png.*cannot decode/);
    expect(results.filter((r) => r.id.startsWith('img-') && r.merges.length === 1 && r.merges[0].tokens < r.merges[0].patches).length, 'merge presets applied').to.be.greaterThan(0);
    expect(batch.stderr()).to.match(/jobs\.jsonl:30: id 'img-0' was already given/);
    expect(batch.stderr()).to.match(/27 done, 2 failed/);

    const queue = await connectQueue(url, queueName);
    try {
      const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'completed', 'failed');
      expect(counts).to.deep.equal({ waiting: 0, active: 0, delayed: 0, prioritized: 0, completed: 27, failed: 2 });
      const failed = await queue.getJob(jobIdFor('bad-corrupt'));
      expect(failed?.failedReason).to.match(/cannot decode/);
    } finally {
      await queue.close();
    }
    // Enqueuing the same file again adds nothing; collecting again gives the same results.
    const again = run(process.execPath, [CLI, 'batch', input, '--redis', url, '--queue', queueName, '--ordered', '--quiet']);
    expect(await again.exited).to.equal(2);
    expect(again.stdout().trim().split('\n').map((l) => (JSON.parse(l) as BatchResult).text)).to.deep.equal(results.map((r) => r.text));
    const status = run(process.execPath, [CLI, 'batch', '--status', '--redis', url, '--queue', queueName]);
    expect(await status.exited).to.equal(0);
    expect(JSON.parse(status.stdout())).to.deep.include({ queue: queueName, waiting: 0, active: 0, completed: 27, failed: 2, workers: ['w2'] });

    // SIGTERM: w2 stops cleanly.
    w2.child.kill('SIGTERM');
    expect(await w2.exited, w2.stderr()).to.equal(0);
    expect(w2.stderr()).to.match(/SIGTERM: finishing the job in flight/);
  });
});
