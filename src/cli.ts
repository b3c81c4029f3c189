#!/usr/bin/env node
// illava command line: generate (streams the answer), chat (interactive), serve (OpenAI-compatible
// server), info, visualize. Errors are one line on stderr, exit 1.
import { Command, Option } from 'commander';
import cliProgress from 'cli-progress';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BACKEND_NAMES, type BackendName } from './backend.js';
import type { WeightFormatOption } from './packing.js';
import { LlavaModel } from './llava.js';
import { parseMergeOption } from './merging.js';
import type { MergeOption } from '../merge/index.js';
import type { LoadProgress } from './load.js';
import type { LlavaConfig } from './config.js';
import { makeDirs, readRegularFileSync, utf8Text } from './files.js';
import { DEFAULT_MAX_IMAGE_PIXELS, probeImage } from './image.js';
import { ImageProcessor } from './preprocess.js';
import { generateJson, infoJson, runChatRepl } from './cli-chat.js';
import { serveCommand } from './cli-serve.js';
import { DEFAULT_MODEL_NAME, EMBEDDED_MODELS_DIR, PACKAGE_ROOT, embeddedModelNames, resolveModelDir } from './embedded.js';

// Writing to a closed pipe (`illava generate | head -c 10`) ends quietly, as other CLI tools do.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });
}

/** The model shipped in the package, and its sample image. */
export const DEFAULT_MODEL_DIR = join(EMBEDDED_MODELS_DIR, DEFAULT_MODEL_NAME);
export const DEFAULT_IMAGE = join(DEFAULT_MODEL_DIR, 'sample.png');

/** The question shipped with a model folder's sample image (sample.json), if any. */
function samplePrompt(dir: string): string | undefined {
  const path = join(dir, 'sample.json');
  if (!existsSync(path)) return undefined;
  const sample = JSON.parse(readFileSync(path, 'utf8')) as { prompt?: unknown };
  if (typeof sample.prompt !== 'string') throw new Error(`${path} has no prompt`);
  return sample.prompt;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** A numeric option's parser: finite, optionally an integer, within [min, max]. */
function number(name: string, integer: boolean, min = -Infinity, max = Infinity) {
  const range = min > -Infinity && max < Infinity ? ` in [${min}, ${max}]` : min > -Infinity ? ` >= ${min}` : max < Infinity ? ` <= ${max}` : '';
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min || n > max) {
      throw new Error(`--${name} expects ${integer ? 'an integer' : 'a number'}${range}, got '${value}'`);
    }
    return n;
  };
}

function progressBar(): { onProgress: (p: LoadProgress) => void; stop: () => void } {
  const bar = new cliProgress.SingleBar(
    { format: 'loading weights [{bar}] {value}/{total} tensors  {name}', stream: process.stderr, hideCursor: false, clearOnComplete: true, noTTYOutput: false, etaBuffer: 20 },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    onProgress: (p) => {
      if (!started) {
        bar.start(p.total, 0, { name: '' });
        started = true;
      }
      bar.update(p.loaded, { name: p.name.length > 60 ? `…${p.name.slice(-59)}` : p.name });
    },
    stop: () => started && bar.stop(),
  };
}

interface ModelFlags {
  model?: string;
  backend: BackendName | 'auto';
  threads: '1' | '2';
  weights: 'auto' | 'resident' | 'streamed';
  weightFormat?: WeightFormatOption;
  visionWeightFormat?: WeightFormatOption;
  /** --quantized-cache <dir> (a string), --no-quantized-cache (false), neither (true: commander's default for a --no- option). */
  quantizedCache?: string | boolean;
  maxImagePixels?: number;
}

function modelDir(flags: ModelFlags): string {
  return resolveModelDir(flags.model);
}

/**
 * Checks the images before the model loads (minutes for a 7B): each is a readable regular file
 * of a known format, not truncated, and within the pixel limit for the model's preprocessing.
 */
async function checkImages(flags: ModelFlags, images: string[]): Promise<void> {
  if (images.length === 0) return;
  const dir = modelDir(flags);
  const processor = await ImageProcessor.fromFile(dir);
  const limit = flags.maxImagePixels ?? DEFAULT_MAX_IMAGE_PIXELS;
  for (const image of images) await probeImage(image, { maxImagePixels: limit, checkSize: (w, h) => processor.checkSize(w, h, limit) });
}

async function load(flags: ModelFlags & { quiet?: boolean }, merge?: MergeOption): Promise<LlavaModel> {
  const dir = modelDir(flags);
  const bar = flags.quiet ? { onProgress: undefined, stop: () => {} } : progressBar();
  try {
    return await LlavaModel.fromPretrained(dir, {
      backend: flags.backend,
      merge,
      threads: flags.threads === '2' ? 2 : 1,
      weights: flags.weights,
      weightFormat: flags.weightFormat,
      visionWeightFormat: flags.visionWeightFormat,
      quantizedCache: flags.quantizedCache === false ? false : flags.quantizedCache === true ? undefined : flags.quantizedCache,
      maxImagePixels: flags.maxImagePixels,
      onProgress: bar.onProgress,
    });
  } finally {
    bar.stop();
  }
}

const backendOption = () => new Option('--backend <name>', 'tfjs backend').choices(['auto', ...BACKEND_NAMES]).default('auto');
const threadsOption = () =>
  new Option('--threads <n>', 'threads for the heavy matmuls (2: MLPs split with a worker thread)').choices(['1', '2']).default('1');
const weightsOption = () =>
  new Option('--weights <mode>', 'weight residency: resident, streamed (fp16 on the host, per layer), auto').choices(['auto', 'resident', 'streamed']).default('auto');

const FORMAT_CHOICES = ['auto', 'f32', 'f16', 'q8_0', 'q4_0'];
/** --weight-format, --vision-weight-format, --quantized-cache / --no-quantized-cache (src/packing.ts). */
const formatOptions = (c: Command): Command =>
  c
    .addOption(new Option('--weight-format <f>', 'decoder and lm_head weights: f32 tensors, or packed f16 / q8_0 / q4_0 in our own kernels (auto: q8_0 when f32 does not fit)').choices(FORMAT_CHOICES).default('auto'))
    .addOption(new Option('--vision-weight-format <f>', 'vision tower and projector weights (default: as --weight-format)').choices(FORMAT_CHOICES))
    .option('--quantized-cache <dir>', 'folder of the packed-weight cache (default $ILLAVA_CACHE_DIR or ~/.cache/illava)')
    .option('--no-quantized-cache', 'quantize at every load, write no cache');

const maxImagePixelsOption = () =>
  new Option('--max-image-pixels <n>', `largest image (and preprocessing buffer) accepted, in pixels`).default(DEFAULT_MAX_IMAGE_PIXELS).argParser(number('max-image-pixels', true, 1));

/** Largest prompt file read (bytes). */
const MAX_PROMPT_FILE_BYTES = 4 * 1024 * 1024;

/**
 * The prompt: --prompt or --prompt-file (not both), else the model folder's sample.json question,
 * else 'What is in this image?'. An empty prompt is refused.
 */
function readPrompt(prompt: string | undefined, promptFile: string | undefined, dir: string): string {
  if (prompt !== undefined && promptFile !== undefined) throw new Error('--prompt and --prompt-file were both given: use one');
  let text: string;
  if (promptFile !== undefined) {
    const label = `--prompt-file '${promptFile}'`;
    text = utf8Text(readRegularFileSync(promptFile, label, MAX_PROMPT_FILE_BYTES), label);
    if (text.trim() === '') throw new Error(`${label}: the file is empty`);
    return text;
  }
  text = prompt ?? samplePrompt(dir) ?? 'What is in this image?';
  if (text.trim() === '') throw new Error('--prompt is empty: give the question');
  return text;
}

const MODEL_HELP = `Hugging Face LLaVA folder, or a shipped model by name (${embeddedModelNames().join(', ')}; default: ${DEFAULT_MODEL_NAME})`;

const program = new Command();
program
  .name('illava')
  .version((JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version, '-V, --version', 'print the version')
  .description('LLaVA vision-language models on TensorFlow.js with iLLaVA token merging')
  // Argument errors: one line naming the option and what is allowed (no help dump); --help still prints help.
  .configureOutput({ outputError: (str, write) => write(`illava: ${str.replace(/^error: /, '').trim()}\n`) })
  .showSuggestionAfterError(true);

program
  .command('generate')
  .description('answer a prompt about images, streaming the text as it is produced')
  .option('--model <dir|name>', MODEL_HELP)
  .option('--image <file>', 'image file (repeatable)', collect, [])
  .option('--video <frames...>', 'video frames, in order (LLaVA-1.5: each becomes an image of the prompt; OneVision: one <video>)')
  .option('--prompt <text>', 'the question')
  .option('--prompt-file <file>', 'read the prompt from a file')
  .option('--raw', "use the prompt as it is, without the chat template (LLaVA-1.5's, or a NeXT / OneVision folder's)")
  .option('--text-only', 'no image (otherwise, without --image/--video, the model folder\'s sample.png is used when it has one)')
  .option('--stop <text>', 'stop string (repeatable)', collect, [])
  .option('--merge <preset|json|file>', 'token merging: none, illava, redundancy, tome, fastv (a preset name is always the preset), inline JSON, or a JSON file (@file, or a path that is not a preset name)', 'none')
  .option('--no-cache', 'recompute the whole sequence at every step (slow; for checks)')
  .addOption(backendOption())
  .addOption(threadsOption())
  .addOption(weightsOption())
  .addOption(maxImagePixelsOption())
  .action(async (opts) => {
    // Everything that can be checked before the model loads is checked first.
    const merge = parseMergeOption(opts.merge);
    const dir = modelDir(opts);
    const sample = join(dir, 'sample.png');
    if (opts.textOnly && (opts.image.length > 0 || opts.video)) throw new Error('--text-only cannot be combined with --image or --video');
    const images: string[] = opts.image.length === 0 && !opts.video && !opts.textOnly && existsSync(sample) ? [sample] : opts.image;
    const prompt = readPrompt(opts.prompt, opts.promptFile, dir);
    await checkImages(opts, [...images, ...(opts.video ?? [])]);
    const model = await load(opts, merge);
    const f = model.layout.formats;
    if (!opts.quiet) process.stderr.write(`backend: ${model.backend.name} (${model.backend.reason}); weights ${model.residency.residency}; ${model.threads} thread(s); formats ${f.decoder} decoder, ${f.vision} vision (${f.reason})\n`);
    model.layout.warnings.forEach((w) => process.stderr.write(`illava: warning: ${w}\n`));
    const unkId = model.tokenizer.unkId;
    if (unkId !== undefined) {
      const unknown = opts.raw ? 0 : model.tokenizer.encode(prompt, { addBos: false }).filter((id) => id === unkId).length;
      if (unknown > 0) process.stderr.write(`illava: warning: ${unknown} word(s) of the prompt are not in the tokenizer's vocabulary and become <unk>\n`);
    }
    const out = await model.generate({
      prompt,
      images,
      video: opts.video,
      template: opts.raw ? 'raw' : 'llava',
      maxNewTokens: opts.maxNewTokens,
      temperature: opts.temperature,
      topK: opts.topK,
      topP: opts.topP,
      seed: opts.seed,
      stop: opts.stop,
      useCache: opts.cache,
      onToken: opts.json ? undefined : (text) => process.stdout.write(text),
    });
    process.stdout.write(opts.json ? `${JSON.stringify(generateJson(model, out))}\n` : '\n');
    const t = out.timings;
    const lines = [
      `tokens: prompt ${out.promptIds.length} ids -> ${out.sequenceLength.input} with images -> ${out.sequenceLength.afterMerge} after language-stage merging; generated ${out.tokenIds.length} (${out.finishReason})`,
      ...out.merges.map((m, i) => `image ${i + 1}: ${[`${m.patches} patches`, ...m.vision.map((c) => `vision layer ${c.layer}: ${c.tokens}`), ...m.language.map((c) => `llm layer ${c.layer}: ${c.tokens}`)].join(' -> ')}`),
      `time: preprocess ${t.preprocessMs.toFixed(0)} ms, vision ${t.visionMs.toFixed(0)} ms, prefill ${t.prefillMs.toFixed(0)} ms, first token ${t.firstTokenMs.toFixed(0)} ms, decode ${out.tokenIds.length > 1 ? `${t.decodeTokensPerSecond.toFixed(1)} tokens/s` : 'n/a (under 2 tokens)'}, total ${t.totalMs.toFixed(0)} ms`,
    ];
    if (!opts.quiet) process.stderr.write(lines.join('\n') + '\n');
    model.dispose();
  });

/** `illava info`'s architecture line per model_type. */
const ARCHITECTURE_TEXT: Record<LlavaConfig['modelType'], string> = {
  llava: 'LLaVA-1.5 (CLIP ViT + 2-layer MLP projector + LLaMA)',
  llava_next: 'LLaVA-NeXT (CLIP ViT on anyres tiles + 2-layer MLP projector with image_newline + LLaMA)',
  llava_onevision: 'LLaVA-OneVision (SigLIP ViT on anyres tiles + 2-layer MLP projector with image_newline + Qwen2)',
};

program
  .command('info')
  .description('architecture, parameter count, dtype and backend of a model')
  .option('--model <dir|name>', MODEL_HELP)
  .addOption(backendOption())
  .addOption(threadsOption())
  .addOption(weightsOption())
  .action(async (opts) => {
    const model = await load(opts);
    const c = model.config;
    const rows: Array<[string, string]> = [
      ['model', model.dir],
      ['architecture', ARCHITECTURE_TEXT[c.modelType]],
      ['vision', `${c.vision.kind === 'clip' ? 'CLIP' : 'SigLIP'} ViT ${c.vision.numLayers} layers, width ${c.vision.hiddenSize}, ${c.vision.numHeads} heads, ${c.vision.imageSize}px / patch ${c.vision.patchSize} (${Math.floor(c.vision.imageSize / c.vision.patchSize) ** 2} patches), feature layer ${c.visionFeatureLayer}, strategy ${c.visionFeatureSelectStrategy}`],
      ['decoder', `${c.text.kind === 'llama' ? 'LLaMA' : 'Qwen2'} ${c.text.numLayers} layers, width ${c.text.hiddenSize}, ${c.text.numHeads} heads (${c.text.numKvHeads} kv), MLP ${c.text.intermediateSize}, vocab ${c.text.vocabSize}`],
      ['parameters', `${model.parameterCount().toLocaleString('en-US')} loaded (float32 in memory)`],
      ['stored dtype', model.storedDtypes().join(', ')],
      ['backend', `${model.backend.name} (${model.backend.reason})`],
      ['execution', `weights ${model.residency.residency} (${model.residency.reason}), ${model.threads} thread(s)`],
      ['formats', `decoder ${model.layout.formats.decoder}, vision ${model.layout.formats.vision} (${model.layout.formats.reason}); ${(model.layout.packedBytes / 1e9).toFixed(3)} GB packed${model.layout.kernels ? `, ${model.layout.kernels} kernels` : ''}${model.layout.cacheRead.length ? `, read from ${model.layout.cacheRead.join(', ')}` : ''}${model.layout.cacheWritten.length ? `, cached to ${model.layout.cacheWritten.join(', ')}` : ''}`],
    ];
    if (opts.json) process.stdout.write(`${JSON.stringify(infoJson(model))}\n`);
    else for (const [k, v] of rows) process.stdout.write(`${k.padEnd(13)} ${v}\n`);
    model.dispose();
  });

program
  .command('visualize')
  .description('draw the patches each surviving token holds after every merge step, and the token count per layer (PNG files)')
  .option('--model <dir|name>', MODEL_HELP)
  .option('--image <file>', 'image file (default: the embedded sample image)')
  .option('--merge <preset|json|file>', 'the merge config to draw: illava, redundancy, tome, fastv, a JSON config or a .json file', 'illava')
  .option('--plot <presets>', 'comma-separated presets whose token counts per layer are plotted', 'none,illava,tome,fastv')
  .option('--prompt <text>', 'the question (the language stage scores image tokens by its last token)')
  .option('--out <dir>', 'output folder', 'visualize')
  .option('--scale <n>', 'drawing scale of the image, 1-64 (default: at least 448 px wide; pictures are at most 4096 px wide)', number('scale', true, 1, 64))
  .addOption(backendOption())
  .addOption(threadsOption())
  .addOption(weightsOption())
  .addOption(maxImagePixelsOption())
  .action(async (opts) => {
    const { visualize } = await import('./visualize.js');
    await checkImages(opts, [opts.image ?? DEFAULT_IMAGE]);
    makeDirs(opts.out, `--out '${opts.out}'`);
    const merge = parseMergeOption(opts.merge);
    const plot = String(opts.plot)
      .split(',')
      .map((n) => n.trim())
      .filter(Boolean)
      .map((n) => ({ name: n, option: parseMergeOption(n) }));
    const model = await load(opts);
    try {
      const out = await visualize(model, {
        image: opts.image ?? DEFAULT_IMAGE,
        merge,
        plot,
        prompt: opts.prompt,
        outDir: resolve(opts.out),
        scale: opts.scale,
        name: typeof merge === 'string' ? merge : 'custom',
      });
      for (const s of out.stages) {
        const what = s.stage === 'input' ? 'input' : `${s.stage} layer ${s.layer}: ${s.tokens} tokens, ${s.regions} multi-patch regions, ${s.dropped} patches dropped`;
        process.stdout.write(`${s.file}  (${what})\n`);
      }
      process.stdout.write(`${out.overview}  (all steps side by side)\n${out.plot}  (image tokens per layer: ${out.counts.map((c) => c.name).join(', ')})\n`);
    } finally {
      model.dispose();
    }
  });

program
  .command('chat')
  .description('interactive multi-turn chat on stdin: each line is a message; /image PATH attaches an image to the next one, /reset, /exit')
  .option('--model <dir|name>', MODEL_HELP)
  .option('--image <file>', 'image attached to the first message (repeatable)', collect, [])
  .option('--system <text>', 'system message')
  .option('--merge <preset|json|file>', 'token merging (as for generate)', 'none')
  .action(async (opts) => {
    const merge = parseMergeOption(opts.merge);
    await checkImages(opts, opts.image);
    const model = await load(opts, merge);
    try {
      await runChatRepl(model, { images: opts.image, system: opts.system, quiet: opts.quiet, maxNewTokens: opts.maxNewTokens, temperature: opts.temperature, topK: opts.topK, topP: opts.topP, seed: opts.seed });
    } finally {
      model.dispose();
    }
  });

program
  .command('serve')
  .description('OpenAI-compatible HTTP server: POST /v1/chat/completions (streaming too), GET /v1/models, GET /health')
  .option('--model <dir|name>', MODEL_HELP)
  .option('--host <address>', 'address to bind (default: loopback only)', '127.0.0.1')
  .option('--port <n>', 'port (0: any free port)', number('port', true, 0, 65535), 8080)
  .option('--api-key <key>', 'require Authorization: Bearer <key> on /v1 (default: $ILLAVA_API_KEY, else none)')
  .option('--model-id <id>', 'the model id clients send (default: the model folder\'s name)')
  .option('--merge <preset|json|file>', 'default token merging (a request\'s "illava": { "merge": ... } overrides it)', 'none')
  .option('--max-queue <n>', 'requests waiting behind the running one before 503', number('max-queue', true, 0), 8)
  .option('--max-tokens <n>', 'max_tokens when a request gives none', number('max-tokens', true, 0), 64)
  .option('--body-limit <bytes>', 'largest request body', number('body-limit', true, 1), 32 * 1024 * 1024)
  .option('--max-image-bytes <bytes>', 'largest image (decoded data: URL)', number('max-image-bytes', true, 1), 16 * 1024 * 1024)
  .option('--max-images <n>', 'most images per request', number('max-images', true, 0), 8)
  .option('--allow-local-images', 'accept local file paths and file: URLs as image URLs (off: data: URLs only)')
  .action(async (opts) => {
    const merge = parseMergeOption(opts.merge);
    const model = await load(opts, merge);
    await serveCommand(model, { ...opts, apiKey: opts.apiKey ?? process.env.ILLAVA_API_KEY });
  });

/** A command on a Redis queue: batch and worker name the same server and queue. */
function queueCommand(name: string, description: string): Command {
  return program.command(name).description(description).option('--redis <url>', 'Redis server', 'redis://127.0.0.1:6379').option('--queue <name>', 'queue name', 'illava');
}

queueCommand('batch', 'enqueue a folder of images or a JSONL file ({"id", "image"|"images"|"video", "prompt"|"messages", "merge", "max_tokens"}) on a Redis queue (BullMQ), wait for the workers and write the results as JSONL')
  .argument('[input]', 'folder of images, or JSONL file')
  .option('--prompt <text>', 'the question for folder images and for lines without prompt or messages (default for folders: What is in this image?)')
  .option('--merge <preset|json|file>', 'token merging for lines without "merge"')
  .option('--max-tokens <n>', 'max_tokens for lines without one (default 64)', number('max-tokens', true, 0))
  .option('--out <file>', 'results as JSONL (default: stdout)')
  .option('--ordered', 'write the results in input order (default: as they finish)')
  .option('--detach', 'enqueue and exit without waiting')
  .option('--status', 'print the queue\'s job counts and workers as JSON and exit')
  .option('--attempts <n>', 'tries per job (bad input is never retried)', number('attempts', true, 1, 100), 3)
  .option('--backoff <ms>', 'first retry delay (doubles each retry)', number('backoff', true, 0), 1000)
  .option('--poll <ms>', 'interval between looks at the queue', number('poll', true, 10, 60000), 250)
  .option('--timeout <s>', 'give up waiting after this many seconds (0: never); the jobs stay queued', number('timeout', false, 0), 0)
  .option('-q, --quiet', 'no progress bar or summary on stderr')
  .action(async (input: string | undefined, opts) => {
    const { batchCommand } = await import('./cli-batch.js'); // bullmq is loaded by batch and worker only
    await batchCommand(input, opts);
  });

queueCommand('worker', 'load the model once and answer the jobs of a Redis queue (BullMQ) until SIGTERM')
  .option('--model <dir|name>', MODEL_HELP)
  .option('--merge <preset|json|file>', 'default token merging (a job\'s "merge" overrides it)', 'none')
  .option('--concurrency <n>', 'jobs taken at once by this process (its model answers one at a time)', number('concurrency', true, 1, 64), 1)
  .option('--name <name>', 'worker name in results and logs (default host:pid)')
  .option('--lock-duration <ms>', 'job lock lifetime; a dead worker\'s job is retaken after it', number('lock-duration', true, 100), 60000)
  .option('--stalled-interval <ms>', 'interval of the check for jobs of dead workers', number('stalled-interval', true, 100), 30000)
  .option('--max-stalled <n>', 'times a job may lose its worker before it fails', number('max-stalled', true, 0), 2)
  .option('--shutdown-timeout <ms>', 'on SIGTERM, how long the job in flight may run before it is returned to the queue', number('shutdown-timeout', true, 0), 120000)
  .action(async (opts) => {
    const { runWorker } = await import('./batch-worker.js');
    const { connectQueue } = await import('./cli-batch.js');
    await (await connectQueue(opts.redis, opts.queue)).close(); // Redis is reachable before the model loads
    const merge = parseMergeOption(opts.merge);
    const model = await load(opts, merge);
    try {
      await runWorker(model, { redis: opts.redis, queue: opts.queue, concurrency: opts.concurrency, name: opts.name, lockDuration: opts.lockDuration, stalledInterval: opts.stalledInterval, maxStalledCount: opts.maxStalled, shutdownTimeout: opts.shutdownTimeout, quiet: opts.quiet });
    } finally {
      model.dispose();
    }
  });

/** The sampling options of generate and chat. */
const samplingOptions = (c: Command): Command =>
  c
    .option('--max-new-tokens <n>', 'tokens to generate (per answer)', number('max-new-tokens', true, 0), 64)
    .option('--temperature <t>', '0 = greedy', number('temperature', false, 0), 0)
    .option('--top-k <k>', 'sample among the k most likely tokens', number('top-k', true, 0), 0)
    .option('--top-p <p>', 'nucleus sampling', number('top-p', false, 0, 1), 1)
    .option('--seed <n>', 'random seed for sampling', number('seed', true), 0);

// Weight formats for every command that loads a model; --quiet for all of them, --json where it applies.
for (const command of program.commands) {
  if (['generate', 'chat'].includes(command.name())) samplingOptions(command);
  if (['chat', 'serve', 'worker'].includes(command.name())) command.addOption(backendOption()).addOption(threadsOption()).addOption(weightsOption()).addOption(maxImagePixelsOption());
  if (['generate', 'info', 'visualize', 'chat', 'serve', 'worker'].includes(command.name())) {
    formatOptions(command);
    command.option('-q, --quiet', 'no progress bar, stage counts or timings on stderr (errors and warnings still)');
  }
  if (['generate', 'info'].includes(command.name())) command.option('--json', 'print one JSON object on stdout (text, token ids, timings, merge counts)');
}

program.parseAsync(process.argv).catch((e: unknown) => {
  if ((e as NodeJS.ErrnoException).code === 'EPIPE') process.exit(0);
  process.stderr.write(`illava: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
