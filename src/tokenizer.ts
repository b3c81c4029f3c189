// LLaVA tokenizer: a thin wrapper over @huggingface/tokenizers (tokenizer.json +
// tokenizer_config.json), plus a streaming detokenizer.
//
// With llava-hf's LLaMA tokenizer (legacy `Prepend("▁")` normalizer, BOS from the post-processor,
// `<image>` an added special token) `encode` gives exactly transformers' ids: the text is split
// around `<image>` and each piece gets its own leading "▁", e.g.
// "USER: <image>\nWhat" -> [1, 3148, 1001, 29901, 29871, 32000, 29871, 13, 5618].
// Tokenizers without an `<image>` token (original liuhaotian LLaVA checkpoints) are handled as
// LLaVA's `tokenizer_image_token` does: the prompt is split at "<image>", the pieces tokenized
// separately and joined with `imageTokenId` (default -200, LLaVA's IMAGE_TOKEN_INDEX).
import { Tokenizer } from '@huggingface/tokenizers';
import { readRegularFile, utf8Text } from './files.js';
import { parseStrictJson } from '../weights/strict-json.js';
import { join } from 'node:path';

export interface LlavaTokenizerOptions {
  /** Text of the image placeholder (default: tokenizer_config `image_token`, else "<image>"). */
  imageToken?: string;
  /** Id to use for the placeholder when it is not in the vocabulary (default -200). */
  imageTokenId?: number;
}

/** LLaVA's IMAGE_TOKEN_INDEX, used when the vocabulary has no image token. */
export const LLAVA_IMAGE_TOKEN_INDEX = -200;

type TokenSpec = string | { content?: string } | null | undefined;

function tokenText(t: TokenSpec): string | undefined {
  if (typeof t === 'string') return t;
  if (t && typeof t === 'object' && typeof t.content === 'string') return t.content;
  return undefined;
}

async function readJson(path: string, what: string): Promise<Record<string, unknown>> {
  const label = `tokenizer: ${what} '${path}'`;
  let bytes: Buffer;
  try {
    bytes = await readRegularFile(path, label, MAX_TOKENIZER_BYTES);
  } catch (e) {
    if (/file not found$/.test((e as Error).message)) throw new Error(`tokenizer: ${what} not found at '${path}'`);
    throw e;
  }
  const json = parseStrictJson(utf8Text(bytes, label), label);
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error(`${label}: not a JSON object`);
  return json as Record<string, unknown>;
}

/** Largest tokenizer.json / tokenizer_config.json read (bytes). */
const MAX_TOKENIZER_BYTES = 256 * 1024 * 1024;

export class LlavaTokenizer {
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  /** The model's unknown-token id (tokenizer.json model.unk_token), when it has one. */
  unkId: number | undefined;
  readonly imageToken: string;
  /** Id of the image placeholder: its vocabulary id, or LLAVA_IMAGE_TOKEN_INDEX / the option. */
  readonly imageTokenId: number;
  /** Whether the placeholder is a real (added) token of the vocabulary. */
  readonly imageTokenInVocab: boolean;

  constructor(
    readonly hf: Tokenizer,
    config: Record<string, unknown>,
    opts: LlavaTokenizerOptions = {},
  ) {
    const id = (t: TokenSpec) => {
      const text = tokenText(t);
      return text === undefined ? undefined : hf.token_to_id(text);
    };
    this.bosId = id(config.bos_token as TokenSpec);
    this.eosId = id(config.eos_token as TokenSpec);
    this.imageToken = opts.imageToken ?? tokenText(config.image_token as TokenSpec) ?? '<image>';
    const imageId = hf.token_to_id(this.imageToken);
    this.imageTokenInVocab = imageId !== undefined;
    this.imageTokenId = imageId ?? opts.imageTokenId ?? LLAVA_IMAGE_TOKEN_INDEX;
  }

  /** Loads tokenizer.json and tokenizer_config.json (optional) from a model directory. */
  static async fromDir(dir: string, opts: LlavaTokenizerOptions = {}): Promise<LlavaTokenizer> {
    const json = await readJson(join(dir, 'tokenizer.json'), 'tokenizer.json');
    let config: Record<string, unknown> = {};
    try {
      config = await readJson(join(dir, 'tokenizer_config.json'), 'tokenizer_config.json');
    } catch (e) {
      if (!/not found/.test((e as Error).message)) throw e;
    }
    return LlavaTokenizer.fromJson(json, config, join(dir, 'tokenizer.json'), opts);
  }

  /** Builds from tokenizer.json and tokenizer_config.json already parsed (a web page fetched them); `origin` names them in errors. */
  static fromJson(json: Record<string, unknown>, config: Record<string, unknown>, origin: string, opts: LlavaTokenizerOptions = {}): LlavaTokenizer {
    let hf: Tokenizer;
    try {
      hf = new Tokenizer(json, config);
      // Some parts (the post_processor) are only used at encode time: try them now, at load.
      hf.encode('a', { add_special_tokens: true });
    } catch (e) {
      throw new Error(`tokenizer: cannot build from '${origin}' (${String((e as Error).message).slice(0, 200)})`);
    }
    const model = json.model as { unk_token?: unknown } | undefined;
    const unk = typeof model?.unk_token === 'string' ? hf.token_to_id(model.unk_token) : undefined;
    const tok = new LlavaTokenizer(hf, config, opts);
    tok.unkId = unk;
    return tok;
  }

  get vocabSize(): number {
    return this.hf.get_vocab(true).size;
  }

  /** Token ids; `addBos` (default true) adds the post-processor's special tokens (BOS for LLaMA). */
  encode(text: string, opts: { addBos?: boolean } = {}): number[] {
    const addSpecial = opts.addBos ?? true;
    if (this.imageTokenInVocab || !text.includes(this.imageToken)) {
      return this.hf.encode(text, { add_special_tokens: addSpecial }).ids;
    }
    // No image token in the vocabulary: LLaVA tokenizer_image_token.
    const ids: number[] = [];
    text.split(this.imageToken).forEach((chunk, i) => {
      if (i > 0) ids.push(this.imageTokenId);
      if (chunk.length > 0) ids.push(...this.hf.encode(chunk, { add_special_tokens: false }).ids);
    });
    return addSpecial && this.bosId !== undefined ? [this.bosId, ...ids] : ids;
  }

  /** Text of ids; `skipSpecialTokens` (default false, as HF) drops BOS/EOS/<image>/<pad>. */
  decode(ids: number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    const kept = this.imageTokenInVocab ? ids : ids.filter((i) => i !== this.imageTokenId);
    if (kept.length === 0) return ''; // the library refuses empty input
    return this.hf.decode(kept, { skip_special_tokens: opts.skipSpecialTokens ?? false });
  }

  /** The vocabulary piece of an id ("▁mirror", "<0x0A>", "<image>"), or undefined. */
  idToPiece(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }

  pieceToId(piece: string): number | undefined {
    return this.hf.token_to_id(piece);
  }
}

export interface StreamDecoder {
  /** Adds one id; returns the text completed by it ('' while a UTF-8 character is incomplete). */
  push(id: number): string;
  /** Returns whatever is still held back (an incomplete byte sequence decodes to U+FFFD here). */
  flush(): string;
}

/**
 * Incremental detokenizer: the concatenation of everything `push` and `flush` return equals
 * `tokenizer.decode(allIds, opts)`. It decodes a short window of ids (from the last emitted
 * boundary) and emits the new suffix, holding text back while it ends in U+FFFD, i.e. while
 * byte-fallback tokens (<0xF0><0x9F>...) have not yet completed a character. Decoding windows
 * keeps SentencePiece "▁" spaces right: the leading-space strip hits the window's first token in
 * both the old and the new text, so it cancels out.
 */
const MAX_HELD = 16;

export function createStreamDecoder(tokenizer: LlavaTokenizer, opts: { skipSpecialTokens?: boolean } = {}): StreamDecoder {
  const ids: number[] = [];
  let prefix = 0; // window start
  let read = 0; // ids before this are emitted
  const dec = (from: number, to?: number) => tokenizer.decode(ids.slice(from, to), opts);
  const step = (final: boolean): string => {
    if (read >= ids.length) return '';
    const before = dec(prefix, read);
    const now = dec(prefix);
    if (now.length <= before.length && !final) return '';
    // Hold while the text ends in an incomplete character; a UTF-8 character needs at most 4
    // byte pieces, so past MAX_HELD held ids (only garbage bytes) emit anyway: no quadratic blowup.
    if (!final && now.endsWith('\uFFFD') && ids.length - read < MAX_HELD) return '';
    const out = now.startsWith(before) ? now.slice(before.length) : now.slice(Math.min(before.length, now.length));
    prefix = read;
    read = ids.length;
    return out;
  };
  return {
    push(id: number): string {
      ids.push(id);
      return step(false);
    },
    flush(): string {
      return step(true);
    },
  };
}
