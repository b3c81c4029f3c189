// model.chat(): OpenAI-style messages -> the model's chat template -> token ids and images ->
// generate(). Images are `image_url` parts: `data:` URLs (base64), or local paths / `file:` URLs
// when allowed; remote URLs are never fetched. Each image part becomes one `{type: 'image'}` part of
// the template's messages, so a template places its `<image>` placeholder, and the images are given
// to the model in the order of their placeholders (message order, then part order).
import { fileURLToPath } from 'node:url';
import { ChatTemplate, LLAVA_15_TEMPLATE, type TemplateMessage } from './chat-template.js';
import { MAX_IMAGE_FILE_BYTES, statRegularFileSync } from './files.js';
import { probeImage } from './image.js';
import type { GenerateOptions, GenerateOutput, ImageInput, PixelValues, PromptInput } from './generate-types.js';
import type { ImageProcessor } from './preprocess.js';
import type { LlavaTokenizer } from './tokenizer.js';

/** What a chat needs of a model (LlavaModel has it; named here so this module does not import llava.ts, which imports it). */
export interface ChatModel {
  readonly chatTemplate: ChatTemplate | undefined;
  readonly tokenizer: LlavaTokenizer;
  readonly imageProcessor: ImageProcessor;
  readonly maxImagePixels: number;
  promptIds(input: PromptInput): number[];
  checkContext(ids: number[], newTokens: number): number;
  /** `imagesInPrompt`: how many images the prompt has (OneVision preprocesses each of several images to one tile). */
  pixelValues(image: ImageInput, imagesInPrompt?: number): Promise<PixelValues>;
  generate(options: GenerateOptions): Promise<GenerateOutput>;
}

export type ChatRole = 'system' | 'developer' | 'user' | 'assistant';

export type ChatContentPart = { type: 'text'; text: string } | { type: 'image_url'; image_url: { url: string; detail?: string } };

export interface ChatMessage {
  /** 'developer' is taken as 'system' (newer OpenAI clients send it). */
  role: ChatRole;
  content: string | ChatContentPart[];
}

export interface ChatInputOptions {
  /** Accept local paths and `file:` URLs as image URLs (default true; `illava serve` turns it off unless --allow-local-images). */
  allowLocalFiles?: boolean;
  /** Largest image accepted, in bytes (decoded `data:` URL or file). Default 256 MiB (the image file bound). */
  maxImageBytes?: number;
  /** Most images in one conversation (default 16). */
  maxImages?: number;
}

export interface ChatOptions extends Omit<GenerateOptions, 'prompt' | 'images' | 'video' | 'template' | 'addSpecialTokens'>, ChatInputOptions {}

export interface ChatOutput extends GenerateOutput {
  /** The rendered prompt text (the template's output). */
  prompt: string;
  /** The answer as a message, to append to the conversation for the next turn. */
  message: { role: 'assistant'; content: string };
}

/** A conversation checked and rendered: what generate() needs, before any image is decoded. */
export interface PreparedChat {
  prompt: string;
  ids: number[];
  addSpecialTokens: boolean;
  /** Encoded bytes or file paths, in placeholder order. */
  images: Array<string | Uint8Array>;
}

/** Bad input (a message, an image, the context length): a 400 for the server. */
export class ChatInputError extends Error {
  constructor(
    message: string,
    readonly param?: string,
  ) {
    super(message);
    this.name = 'ChatInputError';
  }
}

const ROLES: readonly string[] = ['system', 'developer', 'user', 'assistant'];

function describe(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}

/** Decodes a base64 `data:` URL, refusing other encodings, non-image media types and oversized data before decoding. */
export function decodeDataUrl(url: string, maxBytes: number, label: string): Uint8Array {
  const comma = url.indexOf(',');
  const meta = comma < 0 ? '' : url.slice(5, comma);
  if (comma < 0 || !/;base64$/i.test(meta)) throw new ChatInputError(`${label}: a data: URL must be base64 ('data:image/png;base64,...')`);
  const mediaType = meta.slice(0, -7).split(';')[0].trim().toLowerCase();
  if (mediaType !== '' && !mediaType.startsWith('image/') && mediaType !== 'application/octet-stream') {
    throw new ChatInputError(`${label}: data: URL media type '${mediaType.slice(0, 40)}' is not an image`);
  }
  const data = url.slice(comma + 1);
  const padding = data.endsWith('==') ? 2 : data.endsWith('=') ? 1 : 0;
  const bytes = Math.floor((data.length * 3) / 4) - padding;
  if (bytes > maxBytes) throw new ChatInputError(`${label}: image is ${bytes} bytes, over the ${maxBytes}-byte limit`);
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(data) || data.length % 4 === 1) throw new ChatInputError(`${label}: the data: URL is not valid base64`);
  if (bytes === 0) throw new ChatInputError(`${label}: the data: URL is empty`);
  return new Uint8Array(Buffer.from(data, 'base64'));
}

/** An image_url's URL -> bytes or a checked local path. */
export function resolveImageUrl(url: string, options: ChatInputOptions, label: string): string | Uint8Array {
  const maxBytes = options.maxImageBytes ?? MAX_IMAGE_FILE_BYTES;
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase();
  if (scheme === 'data') return decodeDataUrl(url, maxBytes, label);
  if (scheme === 'http' || scheme === 'https') throw new ChatInputError(`${label}: remote image URLs are not fetched; send the image as a data: URL (data:image/png;base64,...)`);
  if (scheme !== undefined && scheme !== 'file' && !/^[a-z]:[\\/]/i.test(url)) throw new ChatInputError(`${label}: unsupported image URL scheme '${scheme}:' (use a data: URL)`);
  if (options.allowLocalFiles === false) throw new ChatInputError(`${label}: local image files are not accepted here; send the image as a data: URL (data:image/png;base64,...)`);
  let path: string;
  try {
    path = scheme === 'file' ? fileURLToPath(url) : url;
  } catch (e) {
    throw new ChatInputError(`${label}: ${(e as Error).message}`);
  }
  try {
    statRegularFileSync(path, `${label} '${path}'`, maxBytes);
  } catch (e) {
    throw new ChatInputError((e as Error).message);
  }
  return path;
}

/** Checks OpenAI-style messages and turns them into the template's messages plus the images in order. */
export function normalizeMessages(messages: unknown, options: ChatInputOptions = {}): { messages: TemplateMessage[]; images: Array<string | Uint8Array> } {
  if (!Array.isArray(messages) || messages.length === 0) throw new ChatInputError(`messages must be a non-empty array of { role, content }, got ${describe(messages)}`, 'messages');
  const maxImages = options.maxImages ?? 16;
  const images: Array<string | Uint8Array> = [];
  const out = messages.map((m: unknown, i): TemplateMessage => {
    const at = `messages[${i}]`;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) throw new ChatInputError(`${at} must be an object { role, content }, got ${describe(m)}`, at);
    const { role, content } = m as { role?: unknown; content?: unknown };
    if (typeof role !== 'string' || !ROLES.includes(role)) throw new ChatInputError(`${at}.role must be one of ${ROLES.join(', ')}, got ${typeof role === 'string' ? `'${role.slice(0, 40)}'` : describe(role)}`, `${at}.role`);
    const templateRole = role === 'developer' ? 'system' : role;
    if (typeof content === 'string') return { role: templateRole, content: [{ type: 'text', text: content }] };
    if (!Array.isArray(content)) throw new ChatInputError(`${at}.content must be a string or an array of parts, got ${describe(content)}`, `${at}.content`);
    return {
      role: templateRole,
      content: content.map((p: unknown, j) => {
        const pat = `${at}.content[${j}]`;
        const part = (typeof p === 'object' && p !== null ? p : {}) as { type?: unknown; text?: unknown; image_url?: unknown };
        if (part.type === 'text') {
          if (typeof part.text !== 'string') throw new ChatInputError(`${pat}.text must be a string, got ${describe(part.text)}`, `${pat}.text`);
          return { type: 'text' as const, text: part.text };
        }
        if (part.type === 'image_url') {
          if (templateRole !== 'user') throw new ChatInputError(`${pat}: images are accepted in user messages only`, pat);
          const iu = part.image_url as { url?: unknown } | string | undefined;
          const url = typeof iu === 'string' ? iu : iu?.url;
          if (typeof url !== 'string' || url === '') throw new ChatInputError(`${pat}.image_url.url must be a non-empty string`, `${pat}.image_url`);
          if (images.length >= maxImages) throw new ChatInputError(`${pat}: more than ${maxImages} images in one conversation`, pat);
          images.push(resolveImageUrl(url, options, pat));
          return { type: 'image' as const };
        }
        throw new ChatInputError(`${pat}.type must be 'text' or 'image_url', got ${typeof part.type === 'string' ? `'${part.type.slice(0, 40)}'` : describe(part.type)}`, `${pat}.type`);
      }),
    };
  });
  return { messages: out, images };
}

/**
 * Renders a conversation with the model's chat template (LLAVA_15_TEMPLATE when it has none) and
 * tokenises it as transformers' processors do: the tokenizer's special tokens (BOS) are added unless
 * the rendered text already starts with the BOS token. Checks the context length for `maxNewTokens`.
 */
export function prepareChat(model: ChatModel, messages: unknown, options: ChatInputOptions & { maxNewTokens?: number } = {}): PreparedChat {
  const normalized = normalizeMessages(messages, options);
  const template: ChatTemplate = model.chatTemplate ?? LLAVA_15_TEMPLATE;
  const tok = model.tokenizer;
  const piece = (id: number | undefined) => (id === undefined ? undefined : tok.idToPiece(id));
  const bos = piece(tok.bosId);
  try {
    const prompt = template.render(normalized.messages, { bos_token: bos, eos_token: piece(tok.eosId) });
    const addSpecialTokens = !(bos !== undefined && bos !== '' && prompt.startsWith(bos));
    const ids = model.promptIds({ prompt, images: normalized.images, template: 'raw', addSpecialTokens });
    model.checkContext(ids, options.maxNewTokens ?? 64);
    return { prompt, ids, addSpecialTokens, images: normalized.images };
  } catch (e) {
    throw e instanceof ChatInputError ? e : new ChatInputError((e as Error).message);
  }
}

/** Reads each image's header (format, size, pixel limit) without decoding it. */
export async function probeChatImages(model: ChatModel, images: Array<string | Uint8Array>): Promise<void> {
  const limit = model.maxImagePixels;
  for (const [i, image] of images.entries()) {
    try {
      await probeImage(image, { maxImagePixels: limit, checkSize: (w, h) => model.imageProcessor.checkSize(w, h, limit) });
    } catch (e) {
      throw new ChatInputError(`image ${i + 1}: ${(e as Error).message}`);
    }
  }
}

/** Decodes and preprocesses the images (errors are ChatInputErrors), then generates. */
export async function generateChat(model: ChatModel, prepared: PreparedChat, options: ChatOptions = {}): Promise<ChatOutput> {
  const t = performance.now();
  const pixels: PixelValues[] = [];
  for (const [i, image] of prepared.images.entries()) {
    try {
      pixels.push(await model.pixelValues(image, prepared.images.length));
    } catch (e) {
      throw new ChatInputError(`image ${i + 1}: ${(e as Error).message}`);
    }
  }
  const preprocessMs = performance.now() - t;
  const { allowLocalFiles: _a, maxImageBytes: _b, maxImages: _c, ...generate } = options;
  const out = await model.generate({ ...generate, prompt: prepared.prompt, template: 'raw', addSpecialTokens: prepared.addSpecialTokens, images: pixels });
  out.timings.preprocessMs += preprocessMs;
  out.timings.totalMs += preprocessMs;
  out.timings.firstTokenMs += preprocessMs;
  return { ...out, prompt: prepared.prompt, message: { role: 'assistant', content: out.text } };
}

/** model.chat(messages, options). */
export async function chat(model: ChatModel, messages: ChatMessage[], options: ChatOptions = {}): Promise<ChatOutput> {
  const prepared = prepareChat(model, messages, options);
  await probeChatImages(model, prepared.images);
  return generateChat(model, prepared, options);
}
