// LLaVA tokenizer (ids must equal the fixture's transformers ids) and the streaming detokenizer.
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LLAVA_IMAGE_TOKEN_INDEX, LlavaTokenizer, createStreamDecoder } from '../src/tokenizer.js';
import { TINY_LLAVA_DIR, expectations } from './helpers/fixture.js';

/** Streams ids through a fresh decoder; returns the chunks (flush last). */
function stream(tok: LlavaTokenizer, ids: number[], skipSpecialTokens = false): string[] {
  const d = createStreamDecoder(tok, { skipSpecialTokens });
  const chunks = ids.map((id) => d.push(id));
  chunks.push(d.flush());
  return chunks;
}

describe('tokenizer: LlavaTokenizer on the tiny-llava fixture', () => {
  let tok: LlavaTokenizer;
  before(async () => {
    tok = await LlavaTokenizer.fromDir(TINY_LLAVA_DIR);
  });

  it('gives exactly the fixture input_ids for the image and text prompts', () => {
    const { image, text } = expectations().prompts;
    expect(tok.encode(image.text)).to.deep.equal(image.input_ids);
    expect(tok.encode(image.text).indexOf(tok.imageTokenId)).to.equal(image.image_token_position);
    expect(tok.encode(text.text)).to.deep.equal(text.input_ids);
    expect(tok.encode(image.text, { addBos: false })).to.deep.equal(image.input_ids.slice(1));
  });

  it('knows BOS, EOS, <image> and pieces', () => {
    expect([tok.bosId, tok.eosId, tok.imageTokenId, tok.imageTokenInVocab]).to.deep.equal([1, 2, 32000, true]);
    expect(tok.idToPiece(13)).to.equal('<0x0A>');
    expect(tok.idToPiece(29871)).to.equal('▁');
    expect(tok.idToPiece(32000)).to.equal('<image>');
    expect(tok.idToPiece(99999)).to.equal(undefined);
    expect(tok.pieceToId('▁mirror')).to.equal(19571);
  });

  it('decode round-trips and can skip special tokens', () => {
    for (const s of ['What is shown in this image?', 'a\nb  c', 'héllo 😀 中文 ok', '¿€𝄞? 👍🏽']) {
      expect(tok.decode(tok.encode(s), { skipSpecialTokens: true })).to.equal(s);
    }
    const { image } = expectations().prompts;
    // The "▁" (29871) on each side of <image> both decode to spaces.
    expect(tok.decode(image.input_ids, { skipSpecialTokens: true })).to.equal('USER:  \nWhat is shown in this image? ASSISTANT:');
    expect(tok.decode(image.input_ids)).to.match(/^<s> USER: <image> \nWhat/);
    expect(tok.decode([])).to.equal('');
  });

  it('stream decoder equals decode-all on the fixture greedy ids, with no U+FFFD', () => {
    const { image, text } = expectations().prompts;
    for (const ids of [image.greedy_ids, text.greedy_ids]) {
      const chunks = stream(tok, ids);
      expect(chunks.join('')).to.equal(tok.decode(ids));
      expect(chunks.some((c) => c.includes('\uFFFD'))).to.equal(false);
    }
    expect(stream(tok, image.greedy_ids).slice(0, 4)).to.deep.equal(['mirror', 'yect', 'och', ' Within']);
  });

  it('stream decoder holds byte-fallback pieces until the UTF-8 character is complete', () => {
    const s = 'héllo 😀 中文 ok\n¿€𝄞? 👍🏽 done';
    const ids = tok.encode(s, { addBos: false });
    const pieces = ids.map((i) => tok.idToPiece(i));
    expect(pieces.filter((p) => /^<0x[0-9A-F]{2}>$/.test(p ?? '')).length).to.be.greaterThan(8); // byte fallback in use
    const chunks = stream(tok, ids);
    expect(chunks.join('')).to.equal(s);
    expect(chunks.some((c) => c.includes('\uFFFD'))).to.equal(false);
    // The 4 byte pieces of 😀 emit '', '', '', '😀'.
    const at = pieces.indexOf('<0xF0>');
    expect(chunks.slice(at, at + 4)).to.deep.equal(['', '', '', '😀']);
    // An incomplete sequence at the end is held, and flush gives what decode-all gives.
    const d = createStreamDecoder(tok);
    expect([d.push(tok.pieceToId('<0xF0>')!), d.push(tok.pieceToId('<0x9F>')!)]).to.deep.equal(['', '']);
    expect(d.flush()).to.equal(tok.decode([tok.pieceToId('<0xF0>')!, tok.pieceToId('<0x9F>')!]));
  });

  it('stream decoder can skip special tokens (BOS/EOS)', () => {
    const ids = [1, ...tok.encode('Hi there', { addBos: false }), 2];
    expect(stream(tok, ids, true).join('')).to.equal('Hi there');
    expect(stream(tok, ids).join('')).to.equal(tok.decode(ids));
  });

  it('missing tokenizer.json gives a clear error', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'illava-tok-'));
    try {
      await LlavaTokenizer.fromDir(dir).then(
        () => expect.fail('no error'),
        (e: Error) => expect(e.message).to.match(/tokenizer: tokenizer\.json not found at '.*tokenizer\.json'/),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('without <image> in the vocabulary, splits like LLaVA tokenizer_image_token (-200)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'illava-tok-'));
    try {
      const json = JSON.parse(readFileSync(join(TINY_LLAVA_DIR, 'tokenizer.json'), 'utf8')) as { added_tokens: { content: string }[] };
      json.added_tokens = json.added_tokens.filter((t) => t.content !== '<image>');
      writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(json));
      const cfg = JSON.parse(readFileSync(join(TINY_LLAVA_DIR, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
      delete (cfg.added_tokens_decoder as Record<string, unknown>)['32000'];
      delete cfg.image_token;
      delete cfg.extra_special_tokens;
      writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(cfg));
      const t = await LlavaTokenizer.fromDir(dir);
      expect([t.imageTokenInVocab, t.imageTokenId]).to.deep.equal([false, LLAVA_IMAGE_TOKEN_INDEX]);
      const { image } = expectations().prompts;
      expect(t.encode(image.text)).to.deep.equal(image.input_ids.map((i) => (i === 32000 ? LLAVA_IMAGE_TOKEN_INDEX : i)));
      expect(t.decode(t.encode('USER: <image>\nHi'), { skipSpecialTokens: true })).to.equal('USER:  \nHi');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
