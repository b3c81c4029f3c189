// `illava serve` (src/server.ts) on an ephemeral loopback port with the embedded model: OpenAI's
// chat-completions protocol (plain and streamed), the official `openai` client, queueing,
// OpenAI-shaped 4xx errors, and cancellation when a client leaves.
import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import OpenAI from 'openai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LlavaModel } from '../src/llava.js';
import { startServer, type RunningServer } from '../src/server.js';
import { REPO_ROOT } from './helpers/fixture.js';
import { greyPng } from './helpers/images.js';

const DIR = join(REPO_ROOT, 'models/default');
const SAMPLE = join(DIR, 'sample.png');
const SAMPLE_URL = `data:image/png;base64,${readFileSync(SAMPLE).toString('base64')}`;
const QUESTION = 'What colour is the star?';

const userMessage = (text: string, url = SAMPLE_URL) => ({ role: 'user', content: [{ type: 'image_url', image_url: { url } }, { type: 'text', text }] });

interface Completion {
  choices: Array<{ message: { role: string; content: string }; finish_reason: string }>;
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number; illava: { image_tokens_before_merge: number; image_tokens_after_merge: number; prompt_tokens_after_merge: number } };
}
interface ApiErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

async function post(server: RunningServer, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${server.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: res.status, json: await res.json() };
}

/** A streamed completion: the content deltas joined, the chunks, and whether it ended with [DONE]. */
async function stream(server: RunningServer, body: Record<string, unknown>): Promise<{ text: string; chunks: Array<Record<string, unknown>>; done: boolean; contentType: string | null }> {
  const res = await fetch(`${server.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, stream: true }) });
  const raw = await res.text();
  const events = raw.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
  const done = events.at(-1) === '[DONE]';
  const chunks = events.filter((e) => e !== '[DONE]').map((e) => JSON.parse(e) as Record<string, unknown>);
  const text = chunks.map((c) => ((c.choices as Array<{ delta: { content?: string } }>)[0]?.delta.content ?? '')).join('');
  return { text, chunks, done, contentType: res.headers.get('content-type') };
}

function expectApiError(r: { status: number; json: unknown }, status: number, pattern: RegExp, code?: string): void {
  expect(r.status, JSON.stringify(r.json)).to.equal(status);
  const e = (r.json as ApiErrorBody).error;
  expect(e).to.be.an('object');
  expect(e.message).to.be.a('string').and.match(pattern);
  expect(e.type).to.be.a('string');
  expect(e).to.have.property('param');
  expect(e).to.have.property('code');
  if (code) expect(e.code).to.equal(code);
}

describe('server: OpenAI-compatible chat completions', function () {
  this.timeout(120000);
  let model: LlavaModel;
  let server: RunningServer;
  const logs: string[] = [];
  let expected: string;

  before(async () => {
    model = await LlavaModel.fromPretrained(DIR, { backend: 'wasm' });
    server = await startServer(model, { port: 0, bodyLimit: 1024 * 1024, maxImageBytes: 64 * 1024, maxQueue: 2, log: (line) => logs.push(line) });
    expected = (await model.generate({ prompt: QUESTION, images: [SAMPLE], maxNewTokens: 8 })).text;
  });
  after(async () => {
    await server?.close();
    model?.dispose();
  });

  it('binds loopback; GET /health and /v1/models', async () => {
    expect(server.url).to.match(/^http:\/\/127\.0\.0\.1:\d+$/);
    const health = (await (await fetch(`${server.url}/health`)).json()) as { status: string; model: string };
    expect(health).to.include({ status: 'ok', model: 'default' });
    const models = (await (await fetch(`${server.url}/v1/models`)).json()) as { object: string; data: Array<{ id: string; object: string }> };
    expect(models.object).to.equal('list');
    expect(models.data.map((m) => m.id)).to.deep.equal(['default']);
  });

  it('a non-streaming completion with a data: URL image gives the text of generate(), with usage and merge counts', async () => {
    const r = await post(server, { model: 'default', messages: [userMessage(QUESTION)], max_tokens: 8, illava: { merge: 'illava' } });
    expect(r.status, JSON.stringify(r.json)).to.equal(200);
    const c = r.json as Completion;
    const merged = await model.generate({ prompt: QUESTION, images: [SAMPLE], maxNewTokens: 8, merge: 'illava' });
    expect(c.choices[0].message).to.deep.include({ role: 'assistant', content: merged.text });
    expect(c.choices[0].finish_reason).to.equal(merged.finishReason);
    expect(c.usage.completion_tokens).to.equal(merged.tokenIds.length);
    expect(c.usage.prompt_tokens).to.equal(merged.sequenceLength.input);
    expect(c.usage.total_tokens).to.equal(c.usage.prompt_tokens + c.usage.completion_tokens);
    // models/default with the illava preset: 64 patches -> 32 after the vision stage -> 21 in the LLM.
    expect(c.usage.illava).to.include({ image_tokens_before_merge: 64, image_tokens_after_merge: 21 });
    const plain = await post(server, { messages: [userMessage(QUESTION)], max_tokens: 8 });
    expect((plain.json as Completion).choices[0].message.content).to.equal(expected);
    expect(logs.some((l) => /POST \/v1\/chat\/completions 200 .*images 64 -> 21 tokens/.test(l)), logs.join('\n')).to.equal(true);
  });

  it('a streaming completion sends OpenAI chunks that add up to the same text, then [DONE]', async () => {
    const s = await stream(server, { model: 'default', messages: [userMessage(QUESTION)], max_tokens: 8, stream_options: { include_usage: true } });
    expect(s.contentType).to.match(/^text\/event-stream/);
    expect(s.done).to.equal(true);
    expect(s.text).to.equal(expected);
    expect(s.chunks[0]).to.include({ object: 'chat.completion.chunk', model: 'default' });
    expect((s.chunks[0].choices as Array<{ delta: unknown }>)[0].delta).to.deep.equal({ role: 'assistant', content: '' });
    const finish = s.chunks.map((c) => (c.choices as Array<{ finish_reason: string | null }>)[0]?.finish_reason).filter(Boolean);
    expect(finish).to.deep.equal(['stop']);
    expect((s.chunks.at(-1)?.usage as Completion['usage']).completion_tokens).to.be.greaterThan(0);
  });

  it('stop strings end the text in both modes (a stop string split across tokens is never streamed)', async () => {
    const body = { messages: [userMessage('Where is the yellow star?')], max_tokens: 8, stop: ['-left'] };
    const full = (await post(server, { ...body, stop: [] })).json as Completion;
    expect(full.choices[0].message.content).to.equal('top-left');
    const r = (await post(server, body)).json as Completion;
    expect(r.choices[0].message.content).to.equal('top');
    const s = await stream(server, body);
    expect(s.text).to.equal('top');
  });

  it('the official openai client works against it (plain and streaming)', async () => {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const list = await client.models.list();
    expect(list.data.map((m) => m.id)).to.deep.equal(['default']);
    const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: 'user', content: [{ type: 'image_url', image_url: { url: SAMPLE_URL } }, { type: 'text', text: QUESTION }] }];
    const c = await client.chat.completions.create({ model: 'default', messages, max_tokens: 8, temperature: 0 });
    expect(c.choices[0].message.content).to.equal(expected);
    const s = await client.chat.completions.create({ model: 'default', messages, max_tokens: 8, stream: true });
    let text = '';
    for await (const chunk of s) text += chunk.choices[0]?.delta.content ?? '';
    expect(text).to.equal(expected);
    const err = await client.chat.completions.create({ model: 'gpt-4o', messages, max_tokens: 8 }).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(OpenAI.NotFoundError);
    expect((err as InstanceType<typeof OpenAI.NotFoundError>).code).to.equal('model_not_found');
  });

  it('2 concurrent requests both succeed with the answers of sequential ones; a full queue gets 503', async () => {
    const questions = [QUESTION, 'Where is the yellow star?'];
    const sequential: string[] = [];
    for (const q of questions) sequential.push(((await post(server, { messages: [userMessage(q)], max_tokens: 8 })).json as Completion).choices[0].message.content);
    const concurrent = await Promise.all(questions.map((q) => post(server, { messages: [userMessage(q)], max_tokens: 8 })));
    expect(concurrent.map((r) => r.status)).to.deep.equal([200, 200]);
    expect(concurrent.map((r) => (r.json as Completion).choices[0].message.content)).to.deep.equal(sequential);
    // 1 running + 2 waiting (maxQueue 2): the 4th and 5th are refused at once.
    const long = { messages: [userMessage(QUESTION)], max_tokens: 100, illava: { ignore_eos: true } };
    const burst = await Promise.all(Array.from({ length: 5 }, () => post(server, long)));
    expect(burst.map((r) => r.status).sort()).to.deep.equal([200, 200, 200, 503, 503]);
    expectApiError(burst.find((r) => r.status === 503)!, 503, /the server is busy/, 'queue_full');
  });

  it('bad requests get the right 4xx with an OpenAI-shaped error', async () => {
    const corrupt = `data:image/png;base64,${Buffer.from('not an image at all, just text').toString('base64')}`;
    const truncated = `data:image/png;base64,${greyPng(112, 112, 10).toString('base64')}`;
    const huge = `data:image/png;base64,${greyPng(20000, 20000, 1).toString('base64')}`;
    const big = `data:image/png;base64,${Buffer.alloc(100 * 1024).toString('base64')}`;
    expectApiError(await post(server, { messages: [userMessage(QUESTION, 'x'.repeat(10))], padding: 'x'.repeat(2 * 1024 * 1024) }), 413, /request body is over the 1048576-byte limit/, 'request_too_large');
    expectApiError(await post(server, { messages: [userMessage(QUESTION, corrupt)] }), 400, /image 1: .*(format|recogni|unknown|not)/i);
    expectApiError(await post(server, { messages: [userMessage(QUESTION, truncated)] }), 400, /image 1: .*truncated/i);
    expectApiError(await post(server, { messages: [userMessage(QUESTION, huge)] }), 400, /image 1: .*pixels/);
    expectApiError(await post(server, { messages: [userMessage(QUESTION, big)] }), 400, /over the 65536-byte limit/);
    expectApiError(await post(server, { model: 'llava-13b', messages: [userMessage(QUESTION)] }), 404, /the model 'llava-13b' does not exist; this server serves 'default'/, 'model_not_found');
    expectApiError(await post(server, '{"messages": [ '), 400, /not valid JSON/, 'invalid_json');
    expectApiError(await post(server, { messages: 'hello' }), 400, /messages must be array/);
    expectApiError(await post(server, { messages: [userMessage(QUESTION)], temperature: -1 }), 400, /temperature must be >= 0/);
    expectApiError(await post(server, { messages: [userMessage(QUESTION)], max_tokens: 1000 }), 400, /over the model's context of 512 positions .*lower max_tokens to at most 437/, 'context_length_exceeded');
    expectApiError(await post(server, { messages: [userMessage(QUESTION, 'https://example.com/a.png')] }), 400, /remote image URLs are not fetched/);
    expectApiError(await post(server, { messages: [userMessage(QUESTION, SAMPLE)] }), 400, /local image files are not accepted/);
    expectApiError(await post(server, { messages: [userMessage(QUESTION)], illava: { merge: 'bogus' } }), 400, /bogus/);
    const notFound = await fetch(`${server.url}/v1/completions`, { method: 'POST' });
    expectApiError({ status: notFound.status, json: await notFound.json() }, 404, /no route POST \/v1\/completions/);
    const text = await fetch(`${server.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hi' });
    expectApiError({ status: text.status, json: await text.json() }, 415, /content-type/i);
  });

  it('an API key is required and compared when set: a wrong or missing key gets 401', async () => {
    const keyed = await startServer(model, { port: 0, apiKey: 'sekret-key', log: false });
    try {
      const body = { messages: [userMessage(QUESTION)], max_tokens: 4 };
      expectApiError(await post(keyed, body, { authorization: 'Bearer wrong-key' }), 401, /incorrect API key/, 'invalid_api_key');
      expectApiError(await post(keyed, body), 401, /missing API key/, 'invalid_api_key');
      expect((await post(keyed, body, { authorization: 'Bearer sekret-key' })).status).to.equal(200);
      expect((await fetch(`${keyed.url}/health`)).status).to.equal(200);
      const client = new OpenAI({ baseURL: `${keyed.url}/v1`, apiKey: 'nope', maxRetries: 0 });
      expect(await client.models.list().catch((e: unknown) => e)).to.be.instanceOf(OpenAI.AuthenticationError);
    } finally {
      await keyed.close();
    }
  });

  it('a disconnected streaming client frees the model: the next request is served at once, and 50 requests leak no tensor', async () => {
    const long = { messages: [userMessage(QUESTION)], max_tokens: 150, illava: { ignore_eos: true }, stream: true };
    // How long a whole long generation takes, to show that a cancelled one does not run to its end.
    let t = performance.now();
    await stream(server, long);
    const fullMs = performance.now() - t;

    const disconnect = async () => {
      const controller = new AbortController();
      const res = await fetch(`${server.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(long), signal: controller.signal });
      const reader = res.body!.getReader();
      await reader.read(); // the first chunk arrived: generation is running
      controller.abort();
    };
    const before = tf.memory().numTensors;
    const cancelledBefore = logs.filter((l) => /cancelled/.test(l)).length;
    t = performance.now();
    await disconnect();
    const next = await post(server, { messages: [userMessage(QUESTION)], max_tokens: 8 });
    const nextMs = performance.now() - t;
    expect((next.json as Completion).choices[0].message.content).to.equal(expected);
    expect(nextMs, `a full long generation takes ${fullMs.toFixed(0)} ms`).to.be.lessThan(fullMs * 0.8);
    expect(logs.filter((l) => /cancelled/.test(l)).length).to.equal(cancelledBefore + 1);

    for (let i = 0; i < 50; i++) {
      if (i % 10 === 0) await disconnect();
      else if (i % 2 === 0) expect((await stream(server, { messages: [userMessage(QUESTION)], max_tokens: 8 })).text).to.equal(expected);
      else expect((await post(server, { messages: [userMessage(QUESTION)], max_tokens: 8 })).status).to.equal(200);
    }
    // Let the last cancelled request reach its next token boundary and unwind.
    for (let i = 0; i < 100 && ((await (await fetch(`${server.url}/health`)).json()) as { queue: { running: number } }).queue.running > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(tf.memory().numTensors).to.equal(before);
  });
});
