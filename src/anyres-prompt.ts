// The prompt side of the anyres models (LLaVA-NeXT, OneVision) in LlavaModel: the folder's chat
// template rendering one user turn (images, then the video, then the text), the placeholder checks,
// and prepare(): preprocessing first, so the processor's expansion of every <image> / <video> is
// known (and the context checked) before the vision tower runs; each placeholder's features must
// then have exactly that many rows.
import * as tf from '@tensorflow/tfjs-core';
import type { LlavaConfig } from './config.js';
import type { ChatTemplate, TemplateMessage } from './chat-template.js';
import type { LlavaTokenizer } from './tokenizer.js';
import type { LlamaDecoder } from './decoder.js';
import type { VisionTower } from './vision.js';
import type { Projector } from './projector.js';
import type { PreparedPrompt } from './generation.js';
import type { ImageInput, PixelValues, PromptInput } from './generate-types.js';
import { reservePrefillHeap } from './heap-guard.js';
import { anyresImageFeatures, videoFeatures, type AnyresProcessor } from './multimodal.js';
import { modelShape } from './config.js';
import { MergeSession, resolveMergeConfig, type MergeConfig } from '../merge/index.js';

/** What the anyres prompt path needs of a model (LlavaModel has it). */
export interface AnyresPromptModel {
  readonly dir: string;
  readonly config: LlavaConfig;
  readonly tokenizer: LlavaTokenizer;
  readonly chatTemplate: ChatTemplate | undefined;
  readonly anyres: AnyresProcessor | null;
  readonly vision: VisionTower;
  readonly projector: Projector;
  readonly decoder: LlamaDecoder;
  readonly defaultMerge: MergeConfig;
  /** Whether the decoder's weights are packed (the prefill heap reservation differs). */
  readonly decoderPacked: boolean;
  promptIds(input: PromptInput): number[];
  checkContext(ids: number[], newTokens: number, promptTokens?: number): number;
  pixelValues(image: ImageInput, imagesInPrompt?: number): Promise<PixelValues>;
  framePixelValues(frame: ImageInput): Promise<PixelValues>;
}

/**
 * Anyres prompt ids: the folder's chat template renders one user turn (images, then the video,
 * then the text) unless the template is 'raw' or the text already holds the placeholders.
 */
export function anyresPromptIds(model: AnyresPromptModel, input: PromptInput): number[] {
  const images = input.images?.length ?? 0;
  const hasVideo = (input.video?.length ?? 0) > 0;
  const videoId = model.config.anyres?.videoTokenIndex ?? null;
  if (hasVideo && videoId === null) throw new Error(`model_type '${model.config.modelType}' has no video input (give the frames as images instead)`);
  const tok = model.tokenizer;
  const piece = (id: number | undefined) => (id === undefined ? undefined : tok.idToPiece(id));
  const bos = piece(tok.bosId);
  let text = input.prompt;
  if (input.template !== 'raw') {
    const template = model.chatTemplate;
    if (!template) throw new Error(`${model.dir}: no chat template (chat_template.json / tokenizer_config.json); pass template 'raw' with the whole prompt`);
    const marked = text.includes(tok.imageToken) || text.includes('<video>');
    const parts: TemplateMessage['content'] = marked ? [] : [...Array.from({ length: images }, () => ({ type: 'image' as const })), ...(hasVideo ? [{ type: 'video' as const }] : [])];
    text = template.render([{ role: 'user', content: [...parts, { type: 'text', text }] }], { bos_token: bos, eos_token: piece(tok.eosId) });
  }
  const addBos = input.addSpecialTokens ?? !(bos !== undefined && bos !== '' && text.startsWith(bos));
  const ids = tok.encode(text, { addBos });
  const foundImages = ids.filter((id) => id === model.config.imageTokenIndex).length;
  if (foundImages !== images) throw new Error(`the prompt has ${foundImages} <image> placeholder(s) but ${images} image(s) were given`);
  const foundVideos = videoId === null ? 0 : ids.filter((id) => id === videoId).length;
  if (foundVideos !== (hasVideo ? 1 : 0)) throw new Error(`the prompt has ${foundVideos} <video> placeholder(s) but ${hasVideo ? 'one video was' : 'no video was'} given (one <video> stands for all frames)`);
  return ids;
}

/**
 * prepare() of an anyres model: the images (and the video's frames) preprocessed first, so that
 * the processor's expansion of every placeholder is known (and the context checked) before the
 * tower runs; each placeholder's features must then have exactly that many rows.
 */
export async function prepareAnyres(model: AnyresPromptModel, input: PromptInput, newTokens: number): Promise<PreparedPrompt> {
  const anyres = model.anyres;
  if (!anyres) throw new Error(`model_type '${model.config.modelType}' has no anyres processor`);
  const ids = model.promptIds(input);
  const session = new MergeSession(input.merge === undefined ? model.defaultMerge : resolveMergeConfig(input.merge, modelShape(model.config)));
  let t = performance.now();
  const imageCount = input.images?.length ?? 0;
  const multi = anyres.multiImageMode(imageCount);
  const pixels: PixelValues[] = [];
  for (const image of input.images ?? []) pixels.push(await model.pixelValues(image, imageCount));
  const frames: PixelValues[] = [];
  for (const frame of input.video ?? []) frames.push(await model.framePixelValues(frame));
  const preprocessMs = performance.now() - t;
  const videoId = model.config.anyres?.videoTokenIndex ?? null;
  let imageIndex = 0;
  const counts = ids.map((id) => (id === model.config.imageTokenIndex ? anyres.imageTokens(pixels[imageIndex++], multi) : id === videoId ? anyres.videoTokens(frames.length) : 1));
  const promptTokens = counts.reduce((a, b) => a + b, 0);
  reservePrefillHeap(model.config, model.checkContext(ids, newTokens, promptTokens), newTokens, model.decoderPacked);
  t = performance.now();
  const pieces: tf.Tensor2D[] = [];
  const spans: Array<[number, number]> = [];
  const inputIds: number[] = [];
  let textStart = 0;
  imageIndex = 0;
  const flushText = (end: number) => {
    if (end > textStart) pieces.push(model.decoder.embed(ids.slice(textStart, end)));
    inputIds.push(...ids.slice(textStart, end));
  };
  try {
    ids.forEach((id, i) => {
      if (id !== model.config.imageTokenIndex && id !== videoId) return;
      flushText(i);
      const isImage = id === model.config.imageTokenIndex;
      const features = isImage
        ? anyresImageFeatures(model.config, model.vision, model.projector, pixels[imageIndex++], multi, session)
        : videoFeatures(model.config, model.vision, model.projector, frames, session);
      pieces.push(features);
      // A vision-stage merge packs fewer tokens than the processor's count (merge/session.ts, src/anyres-merge.ts).
      if (features.shape[0] !== counts[i] && !session.visionMerges(isImage ? 'image' : 'video')) {
        throw new Error(`the processor expands ${isImage ? `<image> ${imageIndex}` : '<video>'} to ${counts[i]} tokens but the model packs ${features.shape[0]} features for it`);
      }
      spans.push([inputIds.length, inputIds.length + features.shape[0]]);
      for (let k = 0; k < features.shape[0]; k++) inputIds.push(id);
      textStart = i + 1;
    });
    flushText(ids.length);
  } catch (e) {
    pieces.forEach((p) => p.dispose());
    throw e;
  }
  const embeddings = pieces.length === 1 ? pieces[0] : tf.concat(pieces, 0);
  if (pieces.length > 1) pieces.forEach((p) => p.dispose());
  return { ids, inputIds, embeddings, spans, positionIds: session.prefillPositions(spans, embeddings.shape[0]), session, timings: { preprocessMs, visionMs: performance.now() - t } };
}
