// model.chat(): OpenAI-style messages rendered with the model's chat template (or LLaVA-1.5's),
// tokenised exactly as the template defines, images taken from data: URLs and local paths.
import { expect } from 'chai';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { LlavaModel } from '../src/llava.js';
import { ChatTemplate, LLAVA_15_TEMPLATE, readChatTemplate } from '../src/chat-template.js';
import { ChatInputError, decodeDataUrl, normalizeMessages, prepareChat, type ChatMessage } from '../src/conversation.js';
import { REPO_ROOT, TINY_LLAVA_DIR } from './helpers/fixture.js';
import { greyPng } from './helpers/images.js';

const TEMPLATES = join(REPO_ROOT, 'test/fixtures/chat-templates');
const DEFAULT_DIR = join(REPO_ROOT, 'models/default');
const SAMPLE = join(DEFAULT_DIR, 'sample.png');
const dataUrl = (bytes: Uint8Array) => `data:image/png;base64,${Buffer.from(bytes).toString('base64')}`;

// Pieces of the LLaMA-2 vocabulary of the tiny-llava fixture (tokenizer.json model.vocab), by hand.
const BOS = 1;
const IMAGE = 32000;
const SPACE = 29871; // "▁"
const NEWLINE = 13; // "<0x0A>"
const USER_ = [3148, 1001, 29901]; // "▁US" "ER" ":"
const ASSISTANT_ = [319, 1799, 9047, 13566, 29901]; // "▁A" "SS" "IST" "ANT" ":"
const WHAT_IS_SHOWN = [5618, 338, 4318, 297, 445, 1967, 29973]; // "What" "▁is" "▁shown" "▁in" "▁this" "▁image" "?"

describe('chat: templates and token ids', function () {
  this.timeout(60000);
  let tiny: LlavaModel;

  before(async () => {
    tiny = await LlavaModel.fromPretrained(TINY_LLAVA_DIR, { backend: 'wasm' });
  });
  after(() => tiny?.dispose());
  afterEach(() => {
    tiny.chatTemplate = undefined;
  });

  it('single turn with the LLaVA-1.5 fallback gives the fixture ids (those of transformers for llava-1.5-7b-hf)', () => {
    const png = dataUrl(readFileSync(join(TINY_LLAVA_DIR, 'image.png')));
    const p = prepareChat(tiny, [{ role: 'user', content: [{ type: 'image_url', image_url: { url: png } }, { type: 'text', text: 'What is shown in this image?' }] }]);
    const fixture = JSON.parse(readFileSync(join(TINY_LLAVA_DIR, 'expected.json'), 'utf8')) as { prompts: { image: { text: string; input_ids: number[] } } };
    expect(p.prompt).to.equal(fixture.prompts.image.text);
    expect(p.ids).to.deep.equal(fixture.prompts.image.input_ids);
    expect(p.images).to.have.length(1);
  });

  it('multi-turn with images in earlier turns: the ids derived by hand from the template', () => {
    const png = dataUrl(greyPng(8, 8));
    const messages: ChatMessage[] = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: [{ type: 'image_url', image_url: { url: png } }, { type: 'text', text: 'What is shown in this image?' }] },
      { role: 'assistant', content: 'A cat.' },
      { role: 'user', content: [{ type: 'image_url', image_url: { url: SAMPLE } }, { type: 'text', text: 'And this?' }] },
    ];
    const p = prepareChat(tiny, messages);
    expect(p.prompt).to.equal('Be brief. USER: <image>\nWhat is shown in this image? ASSISTANT: A cat. USER: <image>\nAnd this? ASSISTANT:');
    // "▁Be▁brief.▁USER:▁" <image> "▁\nWhat▁is▁shown▁in▁this▁image?▁ASSISTANT:▁A▁cat.▁USER:▁" <image> "▁\nAnd▁this?▁ASSISTANT:"
    // (each piece between special tokens gets the legacy normalizer's leading "▁"; "\nAnd" is "<0x0A>" "And").
    const expected = [
      BOS, 1522, 11473, 29889, ...USER_, SPACE, IMAGE,
      SPACE, NEWLINE, ...WHAT_IS_SHOWN, ...ASSISTANT_, 319, 6635, 29889, ...USER_, SPACE, IMAGE,
      SPACE, NEWLINE, 2855, 445, 29973, ...ASSISTANT_,
    ];
    expect(p.ids).to.deep.equal(expected);
    expect(p.images[0]).to.be.instanceOf(Uint8Array);
    expect(p.images[1]).to.equal(SAMPLE);
  });

  it("a folder's chat_template.json is used: transformers' ids for the llava-next fixture's messages", () => {
    const dir = mkdtempSync(join(tmpdir(), 'illava-chat-'));
    try {
      copyFileSync(join(TEMPLATES, 'llava-next.chat_template.json'), join(dir, 'chat_template.json'));
      tiny.chatTemplate = readChatTemplate(dir);
      expect(tiny.chatTemplate?.origin).to.equal(join(dir, 'chat_template.json'));
    } finally {
      rmSync(dir, { recursive: true });
    }
    const expected = JSON.parse(readFileSync(join(TEMPLATES, 'llava-next.expected.json'), 'utf8')) as {
      chat_messages: Record<string, Array<{ role: string; content: Array<{ type: string; text?: string }> }>>;
      prompts: Record<string, string>;
      input_ids: Record<string, number[]>;
    };
    const png = dataUrl(greyPng(8, 8));
    for (const name of ['image', 'multi', 'text']) {
      // The fixture's messages in HF form ({type: 'image'}) -> OpenAI form (image_url parts).
      const messages = expected.chat_messages[name].map((m) => ({
        role: m.role,
        content: m.content.map((c) => (c.type === 'image' ? { type: 'image_url', image_url: { url: png } } : { type: 'text', text: c.text })),
      })) as ChatMessage[];
      const p = prepareChat(tiny, messages);
      expect(p.prompt, name).to.equal(expected.prompts[name]);
      expect(p.ids, name).to.deep.equal(expected.input_ids[name]);
    }
  });

  it('tokenizer_config.json chat_template, ChatML templates, and no second BOS when the template writes it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'illava-chat-'));
    try {
      const onevision = (JSON.parse(readFileSync(join(TEMPLATES, 'llava-onevision.chat_template.json'), 'utf8')) as { chat_template: string }).chat_template;
      writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ chat_template: [{ name: 'default', template: onevision }] }));
      tiny.chatTemplate = readChatTemplate(dir);
    } finally {
      rmSync(dir, { recursive: true });
    }
    const p = prepareChat(tiny, [
      { role: 'user', content: [{ type: 'image_url', image_url: { url: SAMPLE } }, { type: 'text', text: 'Hi' }] },
      { role: 'assistant', content: 'Hello' },
      { role: 'user', content: 'Bye' },
    ]);
    expect(p.prompt).to.equal('<|im_start|>user\n<image>\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n');
    expect(p.ids[0]).to.equal(BOS);

    tiny.chatTemplate = new ChatTemplate("{{ bos_token }}{% for m in messages %}{{ m['role'] + ': ' + m['content'][0]['text'] + '\\n' }}{% endfor %}", 'test');
    const q = prepareChat(tiny, [{ role: 'user', content: 'Hi' }]);
    expect(q.prompt).to.equal('<s>user: Hi\n');
    expect(q.addSpecialTokens).to.equal(false);
    expect(q.ids.filter((id) => id === BOS)).to.have.length(1);
    expect(q.ids[0]).to.equal(BOS);
  });

  it('the fallback template is the single-turn LLaVA-1.5 prompt of generate()', () => {
    expect(LLAVA_15_TEMPLATE.render([{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'Q?' }] }])).to.equal('USER: <image>\nQ? ASSISTANT:');
    expect(readChatTemplate(DEFAULT_DIR)).to.equal(undefined);
    expect(() => new ChatTemplate('{% for %}', 'broken.json')).to.throw(/broken\.json: cannot parse the chat template/);
  });

  it('refuses bad messages and images with one clear ChatInputError', () => {
    const bad: Array<[unknown, RegExp]> = [
      [[], /messages must be a non-empty array/],
      [[{ role: 'robot', content: 'x' }], /messages\[0\]\.role must be one of/],
      [[{ role: 'user', content: 5 }], /messages\[0\]\.content must be a string or an array/],
      [[{ role: 'user', content: [{ type: 'audio' }] }], /content\[0\]\.type must be 'text' or 'image_url'/],
      [[{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/cat.png' } }] }], /remote image URLs are not fetched/],
      [[{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png,abc' } }] }], /must be base64/],
      [[{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:text/plain;base64,YWJj' } }] }], /'text\/plain' is not an image/],
      [[{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,@@@@' } }] }], /not valid base64/],
      [[{ role: 'user', content: [{ type: 'image_url', image_url: { url: '/nonexistent.png' } }] }], /nonexistent\.png': file not found/],
      [[{ role: 'assistant', content: [{ type: 'image_url', image_url: { url: SAMPLE } }] }], /images are accepted in user messages only/],
    ];
    for (const [messages, pattern] of bad) {
      expect(() => normalizeMessages(messages), JSON.stringify(messages)).to.throw(ChatInputError, pattern);
    }
    expect(() => normalizeMessages([{ role: 'user', content: [{ type: 'image_url', image_url: { url: SAMPLE } }] }], { allowLocalFiles: false })).to.throw(/local image files are not accepted/);
    expect(() => decodeDataUrl(dataUrl(new Uint8Array(100)), 99, 'x')).to.throw(/100 bytes, over the 99-byte limit/);
    expect(normalizeMessages([{ role: 'user', content: [{ type: 'image_url', image_url: { url: pathToFileURL(SAMPLE).href } }] }]).images).to.deep.equal([SAMPLE]);
    expect(() => prepareChat(tiny, [{ role: 'user', content: 'word '.repeat(5000) }])).to.throw(ChatInputError, /over the model's context/);
  });
});

describe('chat: model.chat on the embedded model', function () {
  this.timeout(60000);
  let model: LlavaModel;
  before(async () => {
    model = await LlavaModel.fromPretrained(DEFAULT_DIR, { backend: 'wasm' });
  });
  after(() => model?.dispose());

  it('answers as generate() does, from a data: URL or a path, and continues the conversation', async () => {
    const sample = JSON.parse(readFileSync(join(DEFAULT_DIR, 'sample.json'), 'utf8')) as { prompt: string; answer: string };
    const direct = await model.generate({ prompt: sample.prompt, images: [SAMPLE], maxNewTokens: 4 });
    for (const url of [dataUrl(readFileSync(SAMPLE)), SAMPLE]) {
      const out = await model.chat([{ role: 'user', content: [{ type: 'image_url', image_url: { url } }, { type: 'text', text: sample.prompt }] }], { maxNewTokens: 4 });
      expect(out.text).to.equal(direct.text);
      expect(out.tokenIds).to.deep.equal(direct.tokenIds);
      expect(out.promptIds).to.deep.equal(direct.promptIds);
      expect(out.message).to.deep.equal({ role: 'assistant', content: direct.text });
    }
    const first: ChatMessage = { role: 'user', content: [{ type: 'image_url', image_url: { url: SAMPLE } }, { type: 'text', text: sample.prompt }] };
    const one = await model.chat([first], { maxNewTokens: 4 });
    const two = await model.chat([first, one.message, { role: 'user', content: 'Is there a yellow star?' }], { maxNewTokens: 4 });
    expect(two.prompt).to.equal(`USER: <image>\n${sample.prompt} ASSISTANT: ${one.text} USER: Is there a yellow star? ASSISTANT:`);
    expect(two.text.trim()).to.equal('yes');
  });

  it('an aborted signal cancels generate() without leaking tensors', async () => {
    const { memory } = await import('@tensorflow/tfjs-core');
    const before = memory().numTensors;
    const controller = new AbortController();
    const run = model.generate({ prompt: 'What colour is the star?', images: [SAMPLE], maxNewTokens: 50, signal: controller.signal, onToken: () => controller.abort(new Error('stop here')) });
    let error: unknown;
    await run.catch((e: unknown) => (error = e));
    expect((error as Error).message).to.equal('stop here');
    expect(memory().numTensors).to.equal(before);
  });
});
