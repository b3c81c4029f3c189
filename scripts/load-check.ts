#!/usr/bin/env node
// Load check of `illava serve` (not a test): `node dist/scripts/load-check.js [options]`.
//
// Starts the server in this process on an ephemeral loopback port with the embedded model (or
// targets --url, a server already running on this machine), then sends --requests chat
// completions (the sample image as a data: URL, the sample questions in turn, every other one
// streamed) from --clients concurrent clients, and reports latency p50/p95/max, requests/s and
// errors (a non-200 status, or an answer that differs from the one the same question gets alone).
// Prints a table and writes JSON under bench/results/. Traffic goes to loopback only.
import { Command } from 'commander';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { intOption, runScript } from './args.js';
import { LlavaModel } from '../src/llava.js';
import { startServer, type RunningServer } from '../src/server.js';
import { REPO_ROOT } from './random-model.js';

const DIR = join(REPO_ROOT, 'models/default');

interface Options {
  url?: string;
  requests: number;
  clients: number;
  maxTokens: number;
  backend: string;
  out: string;
}

const program = new Command()
  .name('load-check')
  .description('load check of illava serve on loopback: latency percentiles, requests/s, errors')
  .option('--url <url>', 'a server already running on this machine (loopback), e.g. http://127.0.0.1:8080 (default: start one in this process)')
  .option('--requests <n>', 'requests in all', intOption('requests', 1), 200)
  .option('--clients <n>', 'concurrent clients', intOption('clients', 1), 4)
  .option('--max-tokens <n>', 'max_tokens per request', intOption('max-tokens', 1), 8)
  .option('--backend <name>', 'backend of the in-process server', 'wasm')
  .option('--out <dir>', 'folder for the JSON result', join(REPO_ROOT, 'bench', 'results'));

interface Sample {
  prompt: string;
  other_questions: Array<{ prompt: string }>;
}

interface Result {
  ms: number;
  status: number;
  text: string;
  stream: boolean;
}

async function once(url: string, question: string, image: string, maxTokens: number, stream: boolean): Promise<Result> {
  const t = performance.now();
  const body = { model: 'default', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: image } }, { type: 'text', text: question }] }], max_tokens: maxTokens, stream };
  try {
    const res = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(60000) });
    const raw = await res.text();
    let text = '';
    if (res.status === 200 && stream) {
      for (const event of raw.split('\n\n')) {
        if (!event.startsWith('data: ') || event === 'data: [DONE]') continue;
        text += (JSON.parse(event.slice(6)) as { choices: Array<{ delta: { content?: string } }> }).choices[0]?.delta.content ?? '';
      }
    } else if (res.status === 200) {
      text = (JSON.parse(raw) as { choices: Array<{ message: { content: string } }> }).choices[0].message.content;
    }
    return { ms: performance.now() - t, status: res.status, text, stream };
  } catch {
    return { ms: performance.now() - t, status: 0, text: '', stream };
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

async function main(): Promise<void> {
  const o = program.parse().opts<Options>();
  if (o.url && !/^http:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?\/?$/.test(o.url)) throw new Error(`--url must be a loopback address (127.x.x.x, localhost, [::1]), got '${o.url}'`);
  let server: RunningServer | undefined;
  let model: LlavaModel | undefined;
  if (!o.url) {
    model = await LlavaModel.fromPretrained(DIR, { backend: o.backend as 'wasm' });
    server = await startServer(model, { port: 0, maxQueue: o.clients, log: false });
  }
  const url = (o.url ?? server!.url).replace(/\/$/, '');
  const sample = JSON.parse(readFileSync(join(DIR, 'sample.json'), 'utf8')) as Sample;
  const questions = [sample.prompt, ...sample.other_questions.map((q) => q.prompt)];
  const image = `data:image/png;base64,${readFileSync(join(DIR, 'sample.png')).toString('base64')}`;
  try {
    // Each question alone first (also the warm-up): the answers every loaded request must give.
    const expected: string[] = [];
    for (const q of questions) expected.push((await once(url, q, image, o.maxTokens, false)).text);
    const results: Array<Result & { ok: boolean }> = [];
    let next = 0;
    const start = performance.now();
    const client = async () => {
      for (let i = next++; i < o.requests; i = next++) {
        const r = await once(url, questions[i % questions.length], image, o.maxTokens, i % 2 === 1);
        results.push({ ...r, ok: r.status === 200 && r.text === expected[i % questions.length] });
      }
    };
    await Promise.all(Array.from({ length: o.clients }, client));
    const wallMs = performance.now() - start;
    const summary = (rs: typeof results) => {
      const ms = rs.map((r) => r.ms).sort((a, b) => a - b);
      return { requests: rs.length, errors: rs.filter((r) => !r.ok).length, p50Ms: percentile(ms, 50), p95Ms: percentile(ms, 95), maxMs: ms.at(-1) ?? 0 };
    };
    const rows = [
      { name: 'all', ...summary(results), requestsPerSecond: (results.length * 1000) / wallMs },
      { name: 'non-streaming', ...summary(results.filter((r) => !r.stream)) },
      { name: 'streaming', ...summary(results.filter((r) => r.stream)) },
    ];
    const statuses = Object.fromEntries([...new Set(results.map((r) => r.status))].map((s) => [s, results.filter((r) => r.status === s).length]));
    const head = `illava serve load check: ${o.requests} requests from ${o.clients} concurrent clients to ${o.url ? url : `an in-process server (models/default, ${o.backend})`} on loopback, max_tokens ${o.maxTokens}, sample image as a data: URL, every other request streamed; ${cpus().length} cores; wall ${(wallMs / 1000).toFixed(1)} s`;
    const header = ['requests', 'n', 'errors', 'p50', 'p95', 'max', 'req/s'];
    const cells = rows.map((r) => [r.name, String(r.requests), String(r.errors), `${r.p50Ms.toFixed(0)} ms`, `${r.p95Ms.toFixed(0)} ms`, `${r.maxMs.toFixed(0)} ms`, 'requestsPerSecond' in r ? r.requestsPerSecond.toFixed(2) : '']);
    const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
    const line = (c: string[]) => `| ${c.map((v, i) => v.padEnd(widths[i])).join(' | ')} |`;
    const table = [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...cells.map(line)].join('\n');
    process.stdout.write(`${head}\n\n${table}\n\nstatus codes: ${JSON.stringify(statuses)}\n`);
    mkdirSync(o.out, { recursive: true });
    const file = join(o.out, `load-check-${new Date().toISOString().slice(0, 16).replace(/[:T]/g, '-')}.json`);
    writeFileSync(file, `${JSON.stringify({ description: head, command: `node dist/scripts/load-check.js ${process.argv.slice(2).join(' ')}`.trim(), expected: Object.fromEntries(questions.map((q, i) => [q, expected[i]])), statuses, rows }, null, 2)}\n`);
    process.stdout.write(`wrote ${file}\n`);
    if (results.some((r) => !r.ok)) process.exitCode = 1;
  } finally {
    await server?.close();
    model?.dispose();
  }
}

runScript('load-check', main);
