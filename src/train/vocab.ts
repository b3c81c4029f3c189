// The word-level tokenizer of the shapes model, in the Hugging Face tokenizer.json format:
// a WordPiece model whose vocabulary holds whole words (so every known word is one token),
// lower-casing, whitespace split with "?", ":", ".", ",", "!" isolated, BOS added by the
// post-processor, `<image>` an added special token (LLaVA's placeholder).
import { vocabularyWords } from './shapes.js';

export const SPECIALS = ['<unk>', '<s>', '</s>', '<pad>', '<image>'] as const;
export const BOS_ID = 1;
export const EOS_ID = 2;
export const PAD_ID = 3;
export const IMAGE_ID = 4;

export function vocabulary(): Record<string, number> {
  const vocab: Record<string, number> = {};
  [...SPECIALS, ...vocabularyWords()].forEach((w, i) => (vocab[w] = i));
  return vocab;
}

export function tokenizerJson(): Record<string, unknown> {
  const vocab = vocabulary();
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIALS.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: { type: 'Lowercase' },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'WhitespaceSplit' },
        { type: 'Split', pattern: { Regex: '[?:.,!]' }, behavior: 'Isolated', invert: false },
      ],
    },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<s>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [BOS_ID], tokens: ['<s>'] } },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: '<unk>', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
  };
}

export function tokenizerConfigJson(): Record<string, unknown> {
  return {
    add_bos_token: true,
    add_eos_token: false,
    added_tokens_decoder: Object.fromEntries(SPECIALS.map((content, id) => [String(id), { content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true }])),
    bos_token: '<s>',
    eos_token: '</s>',
    unk_token: '<unk>',
    pad_token: '<pad>',
    image_token: '<image>',
    clean_up_tokenization_spaces: true,
    model_max_length: 256,
    padding_side: 'left',
    processor_class: 'LlavaProcessor',
    tokenizer_class: 'PreTrainedTokenizerFast',
  };
}

export const SPECIAL_TOKENS_MAP = { bos_token: '<s>', eos_token: '</s>', pad_token: '<pad>', unk_token: '<unk>', image_token: '<image>' };
