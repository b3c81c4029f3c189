// `illava serve`: an OpenAI-compatible HTTP server (fastify) over one loaded LlavaModel.
//
//   POST /v1/chat/completions   chat completions, non-streaming or `stream: true` (server-sent events
//                               in OpenAI's chunk format); the `illava` field sets the merge per request
//   GET  /v1/models             the one model served
//   GET  /health                liveness and queue state (no API key needed)
//
// Requests run one at a time through a bounded queue (503 when full). Input is checked before it
// is queued (body size, messages, images' bytes and header dimensions, prompt tokens against the
// context length) and refused with a 4xx in OpenAI's error shape { error: { message, type, param,
// code } }. A client that disconnects cancels its request, queued or running.
import Fastify, { type FastifyError, type FastifyInstance, type FastifyRequest } from 'fastify';
import PQueue from 'p-queue';
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { basename } from 'node:path';
import { parseMergeSpec } from '../merge/index.js';
import { ChatInputError, generateChat, prepareChat, probeChatImages, type ChatOutput } from './conversation.js';
import type { LlavaModel } from './llava.js';
import { resolveModelMerge } from './merging.js';
import type { MergeOption } from '../merge/index.js';

export interface ServerOptions {
  /** Default 127.0.0.1 (loopback only). */
  host?: string;
  /** Default 8080; 0 picks a free port. */
  port?: number;
  /** When set, /v1 requests need `Authorization: Bearer <key>` (compared in constant time). */
  apiKey?: string;
  /** The id clients send as `model` (default: the model folder's name). */
  modelId?: string;
  /** Requests waiting behind the running one before new ones get 503 (default 8). */
  maxQueue?: number;
  /** Largest request body, bytes (default 32 MiB). */
  bodyLimit?: number;
  /** Largest image, bytes after base64 decoding (default 16 MiB). Pixels: the model's maxImagePixels. */
  maxImageBytes?: number;
  /** Most images per request (default 8). */
  maxImages?: number;
  /** Accept local paths / file: URLs as image URLs (default false). */
  allowLocalImages?: boolean;
  /** max_tokens when a request gives none (default 64, as `illava generate`). */
  defaultMaxTokens?: number;
  /** One line per request; false for none (default: stderr). */
  log?: ((line: string) => void) | false;
}

export interface RunningServer {
  /** http://host:port */
  url: string;
  port: number;
  modelId: string;
  app: FastifyInstance;
  /** Stops accepting requests, cancels running ones, and closes the server (the model stays loaded). */
  close(): Promise<void>;
}

type ErrorType = 'invalid_request_error' | 'authentication_error' | 'not_found_error' | 'server_error';

/** An error answered as { error: { message, type, param, code } } with an HTTP status. */
class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: ErrorType = 'invalid_request_error',
    readonly code: string | null = null,
    readonly param: string | null = null,
  ) {
    super(message);
  }
}

function errorBody(e: ApiError): { error: { message: string; type: string; param: string | null; code: string | null } } {
  return { error: { message: e.message, type: e.type, param: e.param, code: e.code } };
}

/** Fastify's own errors (body parsing, size, media type, schema), ChatInputErrors and the rest, as ApiErrors. */
function toApiError(e: unknown, bodyLimit = 0): ApiError {
  if (e instanceof ApiError) return e;
  if (e instanceof ChatInputError) {
    const context = /over the model's context/.test(e.message);
    const message = context ? e.message.replace('maxNewTokens (--max-new-tokens)', 'max_tokens') : e.message;
    return new ApiError(400, message, 'invalid_request_error', context ? 'context_length_exceeded' : 'invalid_value', e.param ?? (context ? 'messages' : null));
  }
  const f = e as FastifyError & { validation?: unknown };
  if (f.validation) return new ApiError(400, `invalid request: ${f.message}`, 'invalid_request_error', 'invalid_value', null);
  const codes: Record<string, [number, string]> = {
    FST_ERR_CTP_BODY_TOO_LARGE: [413, 'request_too_large'],
    FST_ERR_CTP_INVALID_JSON_BODY: [400, 'invalid_json'],
    FST_ERR_CTP_EMPTY_JSON_BODY: [400, 'invalid_json'],
    FST_ERR_CTP_INVALID_MEDIA_TYPE: [415, 'unsupported_media_type'],
    FST_ERR_CTP_INVALID_CONTENT_LENGTH: [400, 'invalid_request'],
  };
  const known = f.code ? codes[f.code] : undefined;
  if (known) {
    const messages: Record<string, string> = {
      FST_ERR_CTP_BODY_TOO_LARGE: `request body is over the ${bodyLimit}-byte limit`,
      FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported content-type: send the body as JSON (content-type: application/json)',
    };
    const message = messages[f.code] ?? (known[1] === 'invalid_json' ? `the body is not valid JSON (${f.message})` : f.message);
    return new ApiError(known[0], message, 'invalid_request_error', known[1]);
  }
  if (typeof f.statusCode === 'number' && f.statusCode >= 400 && f.statusCode < 500) return new ApiError(f.statusCode, f.message, 'invalid_request_error', f.code ?? null);
  return new ApiError(500, `internal error: ${(e as Error)?.message ?? String(e)}`, 'server_error', null);
}

/** The JSON schema of the fields read from a chat completion request (others are ignored). */
const chatSchema = {
  type: 'object',
  required: ['messages'],
  properties: {
    model: { type: 'string' },
    messages: { type: 'array', minItems: 1 },
    stream: { type: 'boolean' },
    stream_options: { type: ['object', 'null'], properties: { include_usage: { type: 'boolean' } } },
    max_tokens: { type: ['integer', 'null'], minimum: 0 },
    max_completion_tokens: { type: ['integer', 'null'], minimum: 0 },
    temperature: { type: ['number', 'null'], minimum: 0, maximum: 2 },
    top_p: { type: ['number', 'null'], exclusiveMinimum: 0, maximum: 1 },
    seed: { type: ['integer', 'null'] },
    stop: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' }, maxItems: 4 }, { type: 'null' }] },
    n: { type: ['integer', 'null'], minimum: 1, maximum: 1 },
    illava: {
      type: 'object',
      additionalProperties: false,
      properties: { merge: { type: ['string', 'object'] }, top_k: { type: 'integer', minimum: 0 }, ignore_eos: { type: 'boolean' } },
    },
  },
} as const;

interface ChatBody {
  model?: string;
  messages: unknown[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean } | null;
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  seed?: number | null;
  stop?: string | string[] | null;
  illava?: { merge?: string | Record<string, unknown>; top_k?: number; ignore_eos?: boolean };
  tools?: unknown;
  logprobs?: unknown;
}

/** `usage` of a completion: OpenAI's counts plus the image tokens before and after merging. */
function usage(out: ChatOutput) {
  const sum = (f: (m: ChatOutput['merges'][number]) => number) => out.merges.reduce((n, m) => n + f(m), 0);
  return {
    prompt_tokens: out.sequenceLength.input,
    completion_tokens: out.tokenIds.length,
    total_tokens: out.sequenceLength.input + out.tokenIds.length,
    illava: {
      prompt_tokens_after_merge: out.sequenceLength.afterMerge,
      image_tokens_before_merge: sum((m) => m.patches),
      image_tokens_after_vision_merge: sum((m) => m.vision.at(-1)?.tokens ?? m.patches),
      image_tokens_after_merge: sum((m) => m.tokens),
      merges: out.merges.map((m) => ({ patches: m.patches, vision: m.vision, language: m.language, tokens: m.tokens })),
    },
  };
}

/** How much of `text` can be sent without sending the start of a stop string that may still complete. */
function safeLength(text: string, stops: string[]): number {
  let safe = text.length;
  for (const stop of stops) {
    for (let k = Math.min(stop.length - 1, text.length); k > 0; k--) {
      if (text.endsWith(stop.slice(0, k))) {
        safe = Math.min(safe, text.length - k);
        break;
      }
    }
  }
  return safe;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

export async function startServer(model: LlavaModel, options: ServerOptions = {}): Promise<RunningServer> {
  const modelId = options.modelId ?? basename(model.dir);
  const maxQueue = options.maxQueue ?? 8;
  const maxTokensDefault = options.defaultMaxTokens ?? 64;
  const log = options.log === false ? () => {} : options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const keyDigest = options.apiKey !== undefined ? digest(options.apiKey) : undefined;
  const queue = new PQueue({ concurrency: 1 });
  const running = new Set<AbortController>();
  const created = Math.floor(Date.now() / 1000);

  const bodyLimit = options.bodyLimit ?? 32 * 1024 * 1024;
  const app = Fastify({
    bodyLimit,
    logger: false,
    forceCloseConnections: true,
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allowUnionTypes: true } },
  });

  app.removeContentTypeParser('text/plain'); // JSON only: anything else is a 415
  app.setErrorHandler((e, _request, reply) => {
    const api = toApiError(e, bodyLimit);
    void reply.code(api.status).send(errorBody(api));
  });
  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send(errorBody(new ApiError(404, `no route ${request.method} ${request.url.split('?')[0]}`, 'invalid_request_error', 'unknown_url')));
  });
  // One line per request; chat completions add their tokens, time and merge counts.
  const notes = new WeakMap<FastifyRequest, string>();
  app.addHook('onResponse', async (request, reply) => {
    log(`${request.method} ${request.url.split('?')[0]} ${reply.statusCode} ${reply.elapsedTime.toFixed(0)} ms${notes.has(request) ? ` ${notes.get(request)}` : ''}`);
  });
  app.addHook('onRequest', async (request) => {
    if (!keyDigest || !request.url.startsWith('/v1/')) return;
    const header = request.headers.authorization ?? '';
    const m = /^Bearer\s+(.+)$/i.exec(header);
    if (!m) throw new ApiError(401, 'missing API key: send the header Authorization: Bearer <key>', 'invalid_request_error', 'invalid_api_key');
    if (!timingSafeEqual(digest(m[1].trim()), keyDigest)) throw new ApiError(401, 'incorrect API key provided', 'invalid_request_error', 'invalid_api_key');
  });

  const modelObject = () => ({ id: modelId, object: 'model', created, owned_by: 'illava' });
  app.get('/health', async () => ({ status: 'ok', model: modelId, queue: { running: queue.pending, waiting: queue.size, max_waiting: maxQueue } }));
  app.get('/v1/models', async () => ({ object: 'list', data: [modelObject()] }));
  app.get<{ Params: { id: string } }>('/v1/models/:id', async (request) => {
    if (request.params.id !== modelId) throw new ApiError(404, `the model '${request.params.id}' does not exist; this server serves '${modelId}'`, 'invalid_request_error', 'model_not_found', 'model');
    return modelObject();
  });

  app.post<{ Body: ChatBody }>('/v1/chat/completions', { schema: { body: chatSchema } }, async (request, reply) => {
    const body = request.body;
    if (body.model !== undefined && body.model !== modelId) {
      throw new ApiError(404, `the model '${body.model.slice(0, 100)}' does not exist; this server serves '${modelId}' (GET /v1/models)`, 'invalid_request_error', 'model_not_found', 'model');
    }
    if (Array.isArray(body.tools) && body.tools.length > 0) throw new ApiError(400, 'tools are not supported', 'invalid_request_error', 'unsupported_parameter', 'tools');
    if (body.logprobs === true) throw new ApiError(400, 'logprobs are not supported', 'invalid_request_error', 'unsupported_parameter', 'logprobs');
    let merge: MergeOption | undefined;
    if (body.illava?.merge !== undefined) {
      try {
        const spec = body.illava.merge;
        merge = parseMergeSpec(typeof spec === 'string' ? spec : JSON.stringify(spec));
        resolveModelMerge(merge, model.config);
      } catch (e) {
        throw new ApiError(400, (e as Error).message, 'invalid_request_error', 'invalid_value', 'illava.merge');
      }
    }
    const maxNewTokens = body.max_completion_tokens ?? body.max_tokens ?? maxTokensDefault;
    const stop = typeof body.stop === 'string' ? [body.stop] : body.stop ?? [];
    const input = { allowLocalFiles: options.allowLocalImages ?? false, maxImageBytes: options.maxImageBytes ?? 16 * 1024 * 1024, maxImages: options.maxImages ?? 8, maxNewTokens };
    const prepared = prepareChat(model, body.messages, input);
    await probeChatImages(model, prepared.images);
    if (queue.pending + queue.size >= 1 + maxQueue) {
      void reply.header('retry-after', '1');
      throw new ApiError(503, `the server is busy: ${queue.pending} request running and ${queue.size} waiting (the queue holds ${maxQueue}); retry later`, 'server_error', 'queue_full');
    }

    const controller = new AbortController();
    const res = reply.raw;
    res.on('close', () => {
      if (!res.writableFinished) controller.abort(new Error('client disconnected'));
    });
    if (request.raw.socket.destroyed) controller.abort(new Error('client disconnected')); // while its input was checked
    const id = `chatcmpl-${randomUUID().replace(/-/g, '')}`;
    const stamp = Math.floor(Date.now() / 1000);
    const chunk = (delta: Record<string, unknown>, finish: string | null = null) => ({ id, object: 'chat.completion.chunk', created: stamp, model: modelId, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] });
    const send = (data: unknown) => {
      if (!res.destroyed) res.write(`data: ${JSON.stringify(data)}\n\n`);
    };
    let streaming = false;
    /** Text reported by generate() so far, and how much of it was sent (held back: a possible stop string's start). */
    let streamed = '';
    let sent = 0;
    const startStream = () => {
      if (streaming) return;
      streaming = true;
      reply.hijack();
      res.on('error', () => {});
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
      send(chunk({ role: 'assistant', content: '' }));
    };
    const queuedAt = performance.now();
    let waitedMs = 0;
    const summary = (out: ChatOutput) => {
      const u = usage(out).illava;
      return `prompt ${out.sequenceLength.input} -> ${out.sequenceLength.afterMerge} tokens, images ${u.image_tokens_before_merge} -> ${u.image_tokens_after_merge} tokens, completion ${out.tokenIds.length} (${out.finishReason}), queue ${waitedMs.toFixed(0)} ms, generate ${out.timings.totalMs.toFixed(0)} ms${body.stream ? ', stream' : ''}`;
    };
    running.add(controller);
    try {
      const out = await queue.add(
        async () => {
          waitedMs = performance.now() - queuedAt;
          controller.signal.throwIfAborted();
          return generateChat(model, prepared, {
            maxNewTokens,
            temperature: body.temperature ?? 0,
            topP: body.top_p ?? 1,
            topK: body.illava?.top_k ?? 0,
            seed: body.seed ?? 0,
            stop,
            stopIds: body.illava?.ignore_eos ? [] : undefined,
            merge,
            signal: controller.signal,
            onToken: body.stream
              ? (piece) => {
                  startStream();
                  streamed += piece;
                  const upTo = safeLength(streamed, stop);
                  if (upTo > sent) send(chunk({ content: streamed.slice(sent, upTo) }));
                  sent = Math.max(sent, upTo);
                }
              : undefined,
          });
        },
        { signal: controller.signal },
      );
      if (!out) throw new ApiError(500, 'the request was dropped from the queue', 'server_error');
      notes.set(request, summary(out));
      if (!body.stream) {
        return {
          id,
          object: 'chat.completion',
          created: stamp,
          model: modelId,
          choices: [{ index: 0, message: { role: 'assistant', content: out.text, refusal: null }, logprobs: null, finish_reason: out.finishReason }],
          usage: usage(out),
        };
      }
      startStream();
      if (out.text.length > sent) send(chunk({ content: out.text.slice(sent) }));
      send(chunk({}, out.finishReason));
      if (body.stream_options?.include_usage) send({ id, object: 'chat.completion.chunk', created: stamp, model: modelId, choices: [], usage: usage(out) });
      res.end('data: [DONE]\n\n'); // the onResponse hook logs it
      return reply;
    } catch (e) {
      if (controller.signal.aborted) {
        log(`POST /v1/chat/completions cancelled after ${(performance.now() - queuedAt).toFixed(0)} ms (${String((controller.signal.reason as Error)?.message ?? 'aborted')})`);
        if (!streaming) reply.hijack();
        res.destroy();
        return reply;
      }
      if (!streaming) throw e;
      const api = toApiError(e, bodyLimit);
      notes.set(request, `error in stream: ${api.status} ${api.message}`);
      send(errorBody(api));
      res.end('data: [DONE]\n\n');
      return reply;
    } finally {
      running.delete(controller);
    }
  });

  await app.listen({ host: options.host ?? '127.0.0.1', port: options.port ?? 8080 });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : (options.port ?? 8080);
  const host = options.host ?? '127.0.0.1';
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    modelId,
    app,
    close: async () => {
      running.forEach((c) => c.abort(new Error('server closing')));
      queue.clear();
      await app.close();
    },
  };
}
