// The shapes of a generate() call: its inputs (prompt, images, merge, sampling) and its output
// (text, ids, merge reports, timings). Their own module so that modules LlavaModel uses
// (conversation.ts) can name them without importing llava.ts back.
import type { MergeOption, MergeReport } from '../merge/index.js';
import type { RgbImage } from './image.js';
import type { SamplingOptions } from './sampling.js';

/** Already-preprocessed pixels [3, H, W] (e.g. a CLIPImageProcessor output), bypassing preprocessing. */
export interface PixelValues {
  pixelValues: Float32Array;
  height: number;
  width: number;
}

/** A path, encoded bytes (PNG, JPEG, ...), decoded RGB pixels or preprocessed pixel values. */
export type ImageInput = string | Uint8Array | RgbImage | PixelValues;

export interface PromptInput {
  /** The user's text. With the default template it is wrapped as `USER: <image>\n{prompt} ASSISTANT:`. */
  prompt: string;
  images?: ImageInput[];
  /** Video as a list of frames: each frame is an image of the prompt (after `images`). */
  video?: ImageInput[];
  /** 'llava' (default): LLaVA-1.5 chat template; 'raw': the prompt is used as it is (it must hold one `<image>` per image). */
  template?: 'llava' | 'raw';
  /** Token merging for this call (overrides the model's default). */
  merge?: MergeOption;
  /** false: leave out the tokenizer's special tokens (BOS), for a raw prompt that already holds them (a chat template's output). Default true. */
  addSpecialTokens?: boolean;
}

/** How the decode loop runs and stops (src/generation.ts); generate() takes the same with maxNewTokens optional. */
export interface DecodeOptions {
  maxNewTokens: number;
  /** Stop when the generated text ends with one of these (the stop string is not returned). */
  stop?: string[];
  /** Stop at these token ids (default: the EOS id). */
  stopIds?: number[];
  /** Called with each new piece of text as soon as it is complete (streaming). */
  onToken?: (text: string, tokenId: number) => void;
  /** false: recompute the whole (merged) sequence at every step instead of using the KV cache (slow; for checks). */
  useCache?: boolean;
  /** Also return the logits [vocab] that chose each generated token. */
  returnLogits?: boolean;
  /** Cancels the call between tokens (it rejects with the signal's reason; each step then yields to the event loop first); see src/server.ts. */
  signal?: AbortSignal;
}

export interface GenerateOptions extends PromptInput, SamplingOptions, Omit<DecodeOptions, 'maxNewTokens'> {
  /** Default 64. */
  maxNewTokens?: number;
}

export interface StageTimings {
  /** Image preprocessing, ms. */
  preprocessMs: number;
  /** Vision tower + projector, ms, all images. */
  visionMs: number;
  /** Decoder prefill, ms. */
  prefillMs: number;
  /** From the call to the first generated token, ms. */
  firstTokenMs: number;
  /** Decode steps after the first token, ms. */
  decodeMs: number;
  decodeTokensPerSecond: number;
  totalMs: number;
}

export interface GenerateOutput {
  text: string;
  tokenIds: number[];
  /** Prompt ids after template and tokenisation (one image id per image). */
  promptIds: number[];
  /** Sequence length entering the decoder, and after language-stage merging. */
  sequenceLength: { input: number; afterMerge: number };
  finishReason: 'stop' | 'length';
  /** Per image: token counts after every merge step and (when tracked) the patch -> token map. */
  merges: MergeReport[];
  timings: StageTimings;
  /** Bytes held by the KV cache after the prefill. */
  kvCacheBytes: number;
  /** With returnLogits: row i produced tokenIds[i] (or the stop token). */
  logits?: Float32Array[];
}
