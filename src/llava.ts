// LlavaModel: a Hugging Face LLaVA-1.5, LLaVA-NeXT or LLaVA-OneVision folder -> generate() with images.
//
// Data flow: prompt -> chat template -> token ids with one <image> id per image; each image ->
// preprocessing -> vision tower (vision-stage merging) -> projector -> spliced in place of its
// <image> id; the sequence -> decoder prefill (language-stage merging) -> decode loop on the KV cache.
// Anyres models (NeXT, OneVision: src/multimodal.ts) run every tile through the tower and splice the
// packed features; a OneVision <video> id stands for all frames of the video.
import * as tf from '@tensorflow/tfjs-core';
import { KVCache } from '../layers/index.js';
import { openWeights, type WeightSource } from '../weights/index.js';
import { selectBackend, type BackendChoice, type BackendName } from './backend.js';
import { buildLlavaPrompt } from './chat.js';
import { modelShape, patchesPerImage, readLlavaConfig, type LlavaConfig } from './config.js';
import { DEFAULT_MAX_IMAGE_PIXELS, loadImage } from './image.js';
import { loadModules, type LoadProgress } from './load.js';
import { checkConfigAgainstWeights } from './config-check.js';
import { checkWeightsFitWasmHeap, reservePrefillHeap } from './heap-guard.js';
import { ParallelPool } from '../layers/parallel.js';
import { workerTimeoutMs } from '../layers/worker-timeout.js';
import { releaseUnpackedWeightsEnabled } from '../layers/wasm-memory.js';
import { chooseResidency, type Residency, type ResidencyOption } from './streamed.js';
import { ImageProcessor } from './preprocess.js';
import { TokenSampler } from './sampling.js';
import { LlavaTokenizer } from './tokenizer.js';
import { decodeTokens, type PreparedPrompt } from './generation.js';
import type { VisionTower } from './vision.js';
import type { Projector } from './projector.js';
import type { LlamaDecoder } from './decoder.js';
import { kernelVariant, PackedRuntime, type KernelVariant } from '../layers/packed/index.js';
import type { QuantizedFile, PackedFormat } from '../weights/index.js';
import { checkWeightFormat, defaultCacheDir, openPackedCache, packed, resolveWeightFormats, weightFingerprint, writePackedCache, type WeightFormatOption, type WeightFormats } from './packing.js';
import { MergeSession, resolveMergeConfig, type MergeConfig, type MergeOption } from '../merge/index.js';
import { readChatTemplate, type ChatTemplate } from './chat-template.js';
import { chat, type ChatMessage, type ChatOptions, type ChatOutput } from './conversation.js';
import type { GenerateOptions, GenerateOutput, ImageInput, PixelValues, PromptInput } from './generate-types.js';
import { AnyresProcessor, checkAnyresPixels } from './multimodal.js';
import { anyresPromptIds, prepareAnyres } from './anyres-prompt.js';

export type { GenerateOptions, GenerateOutput, ImageInput, PixelValues, PromptInput, StageTimings } from './generate-types.js';

/** What a model is built from (see LlavaModel.fromParts). */
export interface ModelParts {
  /** Shown in messages and `illava info`. */
  name: string;
  config: LlavaConfig;
  source: WeightSource;
  tokenizer: LlavaTokenizer;
  imageProcessor: ImageProcessor;
  /** LLaVA-NeXT / OneVision: the anyres image (and video) processor (fromPretrained reads it from the folder). */
  anyres?: AnyresProcessor;
  /** Identifies the weights' contents for the packed cache (fromPretrained: the weight files' names, sizes and times); without it nothing is cached. */
  fingerprint?: string;
}

export interface LoadOptions {
  backend?: BackendName | 'auto';
  /** Default token merging of this model ('none' when absent). */
  merge?: MergeOption;
  onProgress?: (p: LoadProgress) => void;
  /**
   * 2: run the MLPs of the vision tower and the decoder split across this thread and one worker
   * thread with its own tfjs backend (layers/parallel.ts; ~1.9x on CLIP's MLP, bench/README.md).
   * 1 (default): everything on this thread.
   */
  threads?: 1 | 2;
  /**
   * Where the decoder layers' weights live: 'resident' (float32 tensors, built once), 'streamed'
   * (stored fp16/bf16/fp32 bytes on the host, each layer built just before it runs and disposed
   * after: src/streamed.ts), or 'auto' (default): streamed when the float32 weights would not fit
   * the backend's budget (chooseResidency).
   */
  weights?: ResidencyOption;
  /**
   * Largest image accepted, in pixels, for the decoded image and for every buffer its
   * preprocessing allocates (default DEFAULT_MAX_IMAGE_PIXELS, 50 megapixels); checked from the
   * file header before decoding.
   */
  maxImagePixels?: number;
  /**
   * Format of the decoder's and lm_head's linear weights: 'f32' (float32 tensors), 'f16', 'q8_0'
   * or 'q4_0' (packed in our own WebAssembly memories and kernels: layers/packed/), or 'auto'
   * (default): f32 when the float32 model fits the backend, else q8_0 (src/packing.ts).
   */
  weightFormat?: WeightFormatOption;
  /** Format of the vision tower's and projector's linear weights (default: weightFormat). */
  visionWeightFormat?: WeightFormatOption;
  /**
   * Folder of the packed cache (default $ILLAVA_CACHE_DIR or ~/.cache/illava), or false for none.
   * A load with packed formats reads the matrices from there when they match the weight files, and
   * writes them there otherwise, so a second load does not quantize again.
   */
  quantizedCache?: string | false;
  /**
   * With threads: 2, the longest wait for a worker's share of one call, in ms, before the worker
   * is reported as stalled and terminated (the call throws; default $ILLAVA_WORKER_TIMEOUT_MS, else
   * 60000).
   */
  workerTimeoutMs?: number;
  /** Sizes of the packed weights' memories (layers/packed/arena.ts): for tuning, and tests that spread a model over many memories. */
  packedMemory?: { ioBytes?: number; memoryLimit?: number };
}

/** How a model's weights were laid out at load. */
export interface WeightLayout {
  formats: WeightFormats;
  /** Bytes of packed weights (outside the tensor heap). */
  packedBytes: number;
  /** Which build of our WebAssembly kernels runs the packed layers ('relaxed': relaxed-SIMD fused multiply-adds; 'plain'); null with no packed layer. */
  kernels: KernelVariant | null;
  /** Packed-cache files read and written at load. */
  cacheRead: string[];
  cacheWritten: string[];
  warnings: string[];
}

/** An anyres model needs its processor; its tokenizer must know the config's placeholder ids. */
function checkParts(parts: ModelParts): void {
  const { config, tokenizer, name } = parts;
  if (tokenizer.imageTokenId !== config.imageTokenIndex) {
    throw new Error(`${name}: tokenizer's image token id ${tokenizer.imageTokenId} differs from config.json image_token_index ${config.imageTokenIndex}`);
  }
  if (!config.anyres) return;
  if (!parts.anyres) throw new Error(`${name}: model_type '${config.modelType}' needs its anyres processor (ModelParts.anyres, read from preprocessor_config.json by fromPretrained)`);
  const video = config.anyres.videoTokenIndex;
  if (video !== null && tokenizer.pieceToId('<video>') !== video) {
    throw new Error(`${name}: tokenizer's <video> id ${String(tokenizer.pieceToId('<video>'))} differs from config.json video_token_index ${video}`);
  }
}

export class LlavaModel {
  /** LoadOptions.maxImagePixels. */
  maxImagePixels = DEFAULT_MAX_IMAGE_PIXELS;
  /** The folder's chat template (chat_template.jinja / chat_template.json / tokenizer_config.json); chat() falls back to LLaVA-1.5's. */
  chatTemplate: ChatTemplate | undefined;
  /** LLaVA-NeXT / OneVision: the anyres processor (ModelParts.anyres); null for LLaVA-1.5. */
  anyres: AnyresProcessor | null = null;
  private disposed = false;

  private constructor(
    readonly dir: string,
    readonly config: LlavaConfig,
    readonly tokenizer: LlavaTokenizer,
    readonly imageProcessor: ImageProcessor,
    readonly vision: VisionTower,
    readonly projector: Projector,
    readonly decoder: LlamaDecoder,
    readonly backend: BackendChoice,
    /** LoadOptions.merge, resolved for this model at load (used when a call gives no merge). */
    readonly defaultMerge: MergeConfig,
    private readonly dtypes: string[],
    private readonly pool?: ParallelPool,
    /** Where the decoder layers' weights live, and why (LoadOptions.weights). */
    readonly residency: { residency: Residency; reason: string } = { residency: 'resident', reason: 'default' },
    private readonly runtime?: PackedRuntime,
    /** Weight formats, packed bytes and the packed cache used at load. */
    readonly layout: WeightLayout = { formats: { decoder: 'f32', vision: 'f32', reason: 'default' }, packedBytes: 0, kernels: null, cacheRead: [], cacheWritten: [], warnings: [] },
  ) {}

  /** Storage dtypes of the weight files (tensors are float32 in memory). */
  storedDtypes(): string[] {
    return this.dtypes;
  }

  static async fromPretrained(dir: string, options: LoadOptions = {}): Promise<LlavaModel> {
    await selectBackend(options.backend);
    const config = readLlavaConfig(dir);
    const tokenizer = await LlavaTokenizer.fromDir(dir);
    const anyres = config.anyres ? AnyresProcessor.fromDir(dir, config) : undefined;
    const imageProcessor = anyres ? anyres.tiles : await ImageProcessor.fromFile(dir);
    const chatTemplate = readChatTemplate(dir);
    const source = openWeights(dir);
    try {
      const model = await LlavaModel.fromParts({ name: dir, config, source, tokenizer, imageProcessor, anyres, fingerprint: weightFingerprint(dir) }, options);
      model.chatTemplate = chatTemplate;
      return model;
    } finally {
      source.close();
    }
  }

  /**
   * Builds a model from parts already in memory: e.g. random weights at a real architecture's
   * size for benchmarks (scripts/bench), or weights from another container. The source is read
   * once; the caller closes it.
   */
  static async fromParts(parts: ModelParts, options: LoadOptions = {}): Promise<LlavaModel> {
    const backend = await selectBackend(options.backend);
    const { config, source, tokenizer, imageProcessor } = parts;
    checkParts(parts);
    const defaultMerge = resolveMergeConfig(options.merge ?? 'none', modelShape(config)); // validated now, not at the first call
    const maxImagePixels = options.maxImagePixels ?? DEFAULT_MAX_IMAGE_PIXELS;
    if (!Number.isSafeInteger(maxImagePixels) || maxImagePixels < 1) throw new Error(`maxImagePixels must be a positive integer, got ${String(options.maxImagePixels)}`);
    const outSize = imageProcessor.fixedOutputSize();
    if (outSize && (outSize.width !== config.vision.imageSize || outSize.height !== config.vision.imageSize)) {
      throw new Error(`${parts.name}: preprocessor_config.json gives ${outSize.width}x${outSize.height} images but the vision tower expects ${config.vision.imageSize}x${config.vision.imageSize} (vision_config.image_size)`);
    }
    checkConfigAgainstWeights(config, source, parts.name); // before anything is allocated from config sizes
    const dtypes = [...new Set(source.names().map((n) => source.info(n)?.dtype ?? '?'))].sort();
    const threads = options.threads ?? 1;
    if (threads !== 1 && threads !== 2) throw new Error(`threads must be 1 or 2, got ${String(threads)}`);
    const want = options.weights ?? 'auto';
    if (want !== 'auto' && want !== 'resident' && want !== 'streamed') throw new Error(`weights must be auto, resident or streamed, got ${String(want)}`);
    const formats = resolveWeightFormats(
      config,
      backend.name,
      checkWeightFormat(options.weightFormat ?? 'auto', 'weightFormat'),
      options.visionWeightFormat === undefined ? undefined : checkWeightFormat(options.visionWeightFormat, 'visionWeightFormat'),
      releaseUnpackedWeightsEnabled(),
    );
    const decoderPacked = packed(formats.decoder);
    const visionPacked = packed(formats.vision);
    if (decoderPacked && want === 'streamed') throw new Error(`weights 'streamed' is for float32 decoder layers; ${decoderPacked} weights are always resident (packed)`);
    const residency = decoderPacked
      ? { residency: 'resident' as const, reason: `packed ${decoderPacked}` }
      : want === 'auto' ? chooseResidency(config, backend.name, { releaseWeights: releaseUnpackedWeightsEnabled() }) : { residency: want, reason: 'requested' };
    checkWeightsFitWasmHeap(parts.name, config, { decoder: formats.decoder, vision: formats.vision, residency: residency.residency, releaseWeights: releaseUnpackedWeightsEnabled() }, backend.name);
    const timeoutMs = workerTimeoutMs(options.workerTimeoutMs);
    const runtime = decoderPacked || visionPacked ? new PackedRuntime(threads, options.packedMemory?.ioBytes, options.packedMemory?.memoryLimit, { timeoutMs }) : undefined;
    // The tfjs worker (layers/parallel.ts) splits float32 MLPs; packed layers use the runtime's threads.
    const pool = threads === 2 && (!decoderPacked || !visionPacked) ? await ParallelPool.start({ timeoutMs }) : undefined;
    const cacheDir = options.quantizedCache === false || !parts.fingerprint ? null : options.quantizedCache ?? defaultCacheDir();
    const wanted = [...new Set([decoderPacked, visionPacked].filter((f): f is PackedFormat => f !== null))];
    const cache: Map<PackedFormat, QuantizedFile> = cacheDir && parts.fingerprint ? openPackedCache(cacheDir, parts.name, wanted, parts.fingerprint) : new Map();
    let modules;
    try {
      modules = loadModules(source, config, options.onProgress, {
        pool,
        residency: residency.residency,
        packed: runtime ? { runtime, decoder: decoderPacked, vision: visionPacked, cache } : undefined,
      });
    } catch (e) {
      await pool?.dispose();
      await runtime?.dispose();
      throw e;
    } finally {
      cache.forEach((f) => f.close());
    }
    const layout: WeightLayout = { formats, packedBytes: modules.packedLayers.reduce((n, l) => n + l.packedBytes, 0), kernels: modules.packedLayers.length > 0 ? kernelVariant() : null, cacheRead: [...cache.values()].map((f) => f.path), cacheWritten: [], warnings: [] };
    if (cacheDir && parts.fingerprint && modules.packedLayers.length > 0) {
      const { written, warnings } = writePackedCache(cacheDir, parts.name, parts.fingerprint, modules.packedLayers, modules.quantizedFormats);
      layout.cacheWritten = written;
      layout.warnings = warnings;
    }
    const model = new LlavaModel(parts.name, config, tokenizer, imageProcessor, modules.vision, modules.projector, modules.decoder, backend, defaultMerge, dtypes, pool, residency, runtime, layout);
    model.maxImagePixels = maxImagePixels;
    model.anyres = parts.anyres ?? null;
    return model;
  }

  /**
   * Preprocesses one image to [3, H, W] float32 (CLIPImageProcessor semantics); anyres models: to
   * its tiles [tiles, 3, T, T] with its size. `imagesInPrompt`: the prompt's image count (OneVision
   * preprocesses each of several images to one padded tile).
   */
  async pixelValues(image: ImageInput, imagesInPrompt = 1): Promise<PixelValues> {
    this.checkAlive('pixelValues');
    if (typeof image !== 'string' && !(image instanceof Uint8Array) && (typeof image !== 'object' || image === null)) {
      throw new Error(`an image must be a path, encoded bytes (Uint8Array), an RgbImage or PixelValues, got ${image === null ? 'null' : typeof image}`);
    }
    const anyres = this.anyres;
    if (anyres) {
      const multi = anyres.multiImageMode(imagesInPrompt);
      if (typeof image === 'object' && 'pixelValues' in image) {
        checkAnyresPixels(this.config, image, multi);
        return image;
      }
      const limit = this.maxImagePixels;
      return anyres.image(await loadImage(image, { maxImagePixels: limit, checkSize: (w, h) => anyres.checkSize(w, h, limit) }), multi, limit);
    }
    if (typeof image === 'object' && 'pixelValues' in image) {
      if (!(image.pixelValues instanceof Float32Array)) throw new Error('pixel values must be a Float32Array');
      const size = this.config.vision.imageSize;
      if (image.height !== size || image.width !== size || image.pixelValues.length !== 3 * size * size) {
        throw new Error(`pixel values must be [3, ${size}, ${size}], got ${image.pixelValues.length} values for ${image.width}x${image.height}`);
      }
      return image;
    }
    const limit = this.maxImagePixels;
    const rgb = await loadImage(image, { maxImagePixels: limit, checkSize: (w, h) => this.imageProcessor.checkSize(w, h, limit) });
    const processed = this.imageProcessor.preprocess(rgb, limit);
    const size = this.config.vision.imageSize;
    if (processed.height !== size || processed.width !== size) {
      throw new Error(`preprocessor_config.json gives ${processed.width}x${processed.height} images but the vision tower expects ${size}x${size}`);
    }
    return { pixelValues: processed.pixelValues, height: processed.height, width: processed.width };
  }

  /** A video frame -> [3, T, T] (OneVision's video processor). */
  async framePixelValues(frame: ImageInput): Promise<PixelValues> {
    this.checkAlive('framePixelValues');
    const anyres = this.anyres;
    if (!anyres?.video) throw new Error(`model_type '${this.config.modelType}' has no video processor`);
    if (typeof frame === 'object' && frame !== null && 'pixelValues' in frame) return frame; // checked with the others by videoFeatures
    if (typeof frame !== 'string' && !(frame instanceof Uint8Array) && (typeof frame !== 'object' || frame === null)) {
      throw new Error(`a video frame must be a path, encoded bytes (Uint8Array), an RgbImage or PixelValues, got ${frame === null ? 'null' : typeof frame}`);
    }
    const limit = this.maxImagePixels;
    const video = anyres.video;
    return anyres.frame(await loadImage(frame, { maxImagePixels: limit, checkSize: (w, h) => video.checkSize(w, h, limit) }), limit);
  }

  /** Image -> projected features [N', D] (after vision-stage merging, if any). */
  imageFeatures(pixels: PixelValues, session?: MergeSession): tf.Tensor2D {
    const input = tf.tensor3d(pixels.pixelValues, [3, pixels.height, pixels.width]);
    const features = this.vision.forward(input, session?.visionHook(this.vision.tokens, true, this.vision.numHeads));
    input.dispose();
    const projected = this.projector.apply(features);
    features.dispose();
    return projected;
  }

  /** Vision features [N, Cv] before the projector, unmerged (for checks). */
  visionFeatures(pixels: PixelValues): tf.Tensor2D {
    const input = tf.tensor3d(pixels.pixelValues, [3, pixels.height, pixels.width]);
    const features = this.vision.forward(input);
    input.dispose();
    return features;
  }

  /** Token ids of a prompt after the template (one image id per image). */
  promptIds(input: PromptInput): number[] {
    this.checkAlive('promptIds');
    if (typeof input !== 'object' || input === null) throw new Error('expected an options object { prompt, images?, ... }');
    if (typeof input.prompt !== 'string') throw new Error(`prompt must be a string (the question), got ${input.prompt === undefined ? 'none' : typeof input.prompt}`);
    for (const key of ['images', 'video'] as const) {
      if (input[key] !== undefined && !Array.isArray(input[key])) throw new Error(`${key} must be an array of images, got ${typeof input[key]}`);
    }
    if (this.anyres) return anyresPromptIds(this, input);
    const images = (input.images?.length ?? 0) + (input.video?.length ?? 0);
    const text = input.template === 'raw' ? input.prompt : buildLlavaPrompt(input.prompt, images);
    const ids = this.tokenizer.encode(text, { addBos: input.addSpecialTokens ?? true });
    const found = ids.filter((id) => id === this.config.imageTokenIndex).length;
    if (found !== images) throw new Error(`the prompt has ${found} <image> placeholder(s) but ${images} image(s) were given`);
    return ids;
  }

  /** Whether the decoder's weights are packed (LoadOptions.weightFormat). */
  get decoderPacked(): boolean {
    return this.layout.formats.decoder !== 'f32';
  }

  /**
   * Throws when the prompt (images expanded) plus `newTokens` exceeds max_position_embeddings;
   * returns the prompt's length in tokens. `promptTokens`: the expanded length when known (anyres
   * models, after preprocessing); else each image counts as one tile's features.
   */
  checkContext(ids: number[], newTokens: number, promptTokens?: number): number {
    const perImage = patchesPerImage(this.config) + (this.config.visionFeatureSelectStrategy === 'full' ? 1 : 0);
    const images = ids.filter((id) => id === this.config.imageTokenIndex).length;
    if (promptTokens === undefined) promptTokens = ids.length - images + images * perImage;
    const limit = this.config.text.maxPositionEmbeddings;
    if (promptTokens + newTokens > limit) {
      throw new Error(`the prompt is ${promptTokens} tokens (${images} image(s)${this.anyres ? '' : ` of ${perImage}`}) and ${newTokens} new tokens were asked for: ${promptTokens + newTokens} is over the model's context of ${limit} positions (max_position_embeddings); shorten the prompt or lower maxNewTokens (--max-new-tokens) to at most ${Math.max(0, limit - promptTokens)}`);
    }
    return promptTokens;
  }

  private checkAlive(what: string): void {
    if (this.disposed) throw new Error(`${what}: this model has been disposed (dispose() was called); load it again with LlavaModel.fromPretrained`);
  }

  private async prepare(input: PromptInput, newTokens = 0): Promise<PreparedPrompt> {
    if (this.anyres) return prepareAnyres(this, input, newTokens);
    const ids = this.promptIds(input);
    reservePrefillHeap(this.config, this.checkContext(ids, newTokens), newTokens, this.layout.formats.decoder !== 'f32');
    const images = [...(input.images ?? []), ...(input.video ?? [])];
    const session = new MergeSession(input.merge === undefined ? this.defaultMerge : resolveMergeConfig(input.merge, modelShape(this.config)));
    let t = performance.now();
    const pixels: PixelValues[] = [];
    for (const image of images) pixels.push(await this.pixelValues(image));
    const preprocessMs = performance.now() - t;
    t = performance.now();
    const pieces: tf.Tensor2D[] = [];
    const spans: Array<[number, number]> = [];
    let textStart = 0;
    let length = 0;
    let imageIndex = 0;
    const flushText = (end: number) => {
      if (end > textStart) {
        pieces.push(this.decoder.embed(ids.slice(textStart, end)));
        length += end - textStart;
      }
    };
    try {
      ids.forEach((id, i) => {
        if (id !== this.config.imageTokenIndex) return;
        flushText(i);
        const features = this.imageFeatures(pixels[imageIndex++], session);
        spans.push([length, length + features.shape[0]]);
        length += features.shape[0];
        pieces.push(features);
        textStart = i + 1;
      });
      flushText(ids.length);
    } catch (e) {
      pieces.forEach((p) => p.dispose());
      throw e;
    }
    const embeddings = pieces.length === 1 ? pieces[0] : tf.concat(pieces, 0);
    if (pieces.length > 1) pieces.forEach((p) => p.dispose());
    return { ids, inputIds: expandIds(ids, this.config.imageTokenIndex, spans), embeddings, spans, positionIds: session.prefillPositions(spans, length), session, timings: { preprocessMs, visionMs: performance.now() - t } };
  }

  /** Last-position logits of the prompt [vocab] (for checks and scoring). */
  async logits(input: PromptInput): Promise<Float32Array> {
    this.checkAlive('logits');
    const prepared = await this.prepare(input);
    const cache = new KVCache(this.decoder.layers.length);
    try {
      const hook = prepared.session.sequenceHook(prepared.spans, prepared.embeddings.shape[0] - 1);
      return this.decoder.forward(prepared.embeddings, prepared.positionIds, cache, hook).logits;
    } finally {
      cache.dispose();
    }
  }

  async generate(options: GenerateOptions): Promise<GenerateOutput> {
    const start = performance.now();
    this.checkAlive('generate');
    if (typeof options !== 'object' || options === null) throw new Error('generate expects an options object { prompt, images?, ... }');
    const maxNewTokens = options.maxNewTokens ?? 64;
    if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0) throw new Error(`maxNewTokens must be an integer >= 0, got ${String(maxNewTokens)}`);
    options.signal?.throwIfAborted();
    const sampler = new TokenSampler(options);
    const prepared = await this.prepare(options, maxNewTokens);
    const decoded = await decodeTokens(this.decoder, this.tokenizer, prepared, sampler, { ...options, maxNewTokens });
    const end = performance.now();
    const { prefillMs, decodeMs } = decoded;
    return {
      text: decoded.text,
      tokenIds: decoded.tokenIds,
      promptIds: prepared.ids,
      inputIds: prepared.inputIds,
      sequenceLength: { input: decoded.promptLength, afterMerge: decoded.afterMerge },
      finishReason: decoded.finishReason,
      merges: prepared.session.reports(prepared.spans.map(([s, e]) => e - s)),
      timings: {
        preprocessMs: prepared.timings.preprocessMs,
        visionMs: prepared.timings.visionMs,
        prefillMs,
        firstTokenMs: decoded.firstTokenAt - start,
        decodeMs,
        decodeTokensPerSecond: decodeMs > 0 ? ((decoded.tokenIds.length - 1) * 1000) / decodeMs : 0,
        totalMs: end - start,
      },
      kvCacheBytes: decoded.kvCacheBytes,
      logits: options.returnLogits ? decoded.logits : undefined,
    };
  }

  /**
   * A conversation of OpenAI-style messages (text and `image_url` parts: data: URLs or local paths)
   * rendered with the model's chat template, then generate() (src/conversation.ts).
   */
  async chat(messages: ChatMessage[], options: ChatOptions = {}): Promise<ChatOutput> {
    this.checkAlive('chat');
    return chat(this, messages, options);
  }

  /** Parameter count of the loaded modules (what runs: blocks past the vision feature layer are not loaded). */
  parameterCount(): number {
    return this.vision.parameterCount() + this.projector.parameterCount() + this.decoder.parameterCount();
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.vision.dispose();
    this.projector.dispose();
    this.decoder.dispose();
    void this.pool?.dispose(); // terminates the worker (it never keeps node alive anyway)
    void this.runtime?.dispose();
  }

  /** Threads the heavy layers run on (LoadOptions.threads). */
  get threads(): 1 | 2 {
    return this.pool || (this.runtime && this.runtime.threads > 1) ? 2 : 1;
  }
}

/** The ids with each image id repeated as many times as its span has rows. */
function expandIds(ids: number[], imageId: number, spans: ReadonlyArray<[number, number]>): number[] {
  const out: number[] = [];
  let image = 0;
  for (const id of ids) {
    if (id !== imageId) out.push(id);
    else {
      const [start, end] = spans[image++];
      for (let k = start; k < end; k++) out.push(id);
    }
  }
  return out;
}
