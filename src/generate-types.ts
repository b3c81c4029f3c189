// The shapes of a generate() call: its inputs (prompt, images, merge, sampling) and its output
// (text, ids, merge reports, timings). Their own module so that modules LlavaModel uses
// (conversation.ts) can name them without importing llava.ts back.
import type { MergeOption, MergeReport } from '../merge/index.js';
import type { RgbImage } from './image.js';
import type { SamplingOptions } from './sampling.js';

/**
 * Already-preprocessed pixels [3, H, W] (e.g. a CLIPImageProcessor output), bypassing
 * preprocessing; for anyres models (LLaVA-NeXT, OneVision) [tiles, 3, H, W] with the size of the
 * image the tiles were cut from.
 */
export interface PixelValues {
  pixelValues: Float32Array;
  /** Of one tile. */
  height: number;
  width: number;
  /** Anyres: tiles in pixelValues, the base image first, then the grid row-major (default 1). */
  tiles?: number;
  /** Anyres: the original image's size, which fixes the tile grid and the unpadding (HF image_sizes). */
  imageSize?: { height: number; width: number };
}

/** A path, encoded bytes (PNG, JPEG, ...), decoded RGB pixels or preprocessed pixel values. */
export type ImageInput = string | Uint8Array | RgbImage | PixelValues;

export interface PromptInput {
  /** The user's text. With the default template it is wrapped as `USER: <image>\n{prompt} ASSISTANT:`. */
  prompt: string;
  images?: ImageInput[];
  /**
   * Video as a list of frames. LLaVA-1.5: each frame is an image of the prompt (after `images`);
   * OneVision: one `<video>` placeholder for all frames (2x2-pooled features, one newline).
   */
  video?: ImageInput[];
  /**
   * 'llava' (default): LLaVA-1.5's chat template, or for LLaVA-NeXT / OneVision the folder's chat
   * template with one user turn (images, then the video, then the text); 'raw': the prompt is used
   * as it is (it must hold one `<image>` per image, and `<video>` once for a video).
   */
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
  /** The ids the decoder's positions stand for: every `<image>` / `<video>` id repeated as many times as it has feature rows (HF's processor-expanded input_ids). */
  inputIds: number[];
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
