#!/usr/bin/env node
// illava command line: generate (streams the answer), info. Errors are one line on stderr, exit 1.
import { Command, Option } from 'commander';
import cliProgress from 'cli-progress';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BACKEND_NAMES, type BackendName } from './backend.js';
import { LlavaModel } from './llava.js';
import { parseMergeOption, type MergeOption } from './merging.js';
import type { LoadProgress } from './load.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** The model shipped in the package, and its sample image. */
export const DEFAULT_MODEL_DIR = join(ROOT, 'models/default');
export const DEFAULT_IMAGE = join(DEFAULT_MODEL_DIR, 'sample.png');

/** The question shipped with the sample image (models/default/sample.json). */
function defaultPrompt(): string {
  const sample = JSON.parse(readFileSync(join(DEFAULT_MODEL_DIR, 'sample.json'), 'utf8')) as { prompt?: unknown };
  if (typeof sample.prompt !== 'string') throw new Error(`${DEFAULT_MODEL_DIR}/sample.json has no prompt`);
  return sample.prompt;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function number(name: string, integer: boolean) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n))) throw new Error(`--${name} expects ${integer ? 'an integer' : 'a number'}, got '${value}'`);
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
}

async function load(flags: ModelFlags, merge?: MergeOption): Promise<LlavaModel> {
  const modelDir = flags.model;
  const dir = resolve(modelDir ?? DEFAULT_MODEL_DIR);
  if (!existsSync(dir)) throw new Error(`model folder '${dir}' does not exist`);
  const bar = progressBar();
  try {
    return await LlavaModel.fromPretrained(dir, { backend: flags.backend, merge, threads: flags.threads === '2' ? 2 : 1, weights: flags.weights, onProgress: bar.onProgress });
  } finally {
    bar.stop();
  }
}

const backendOption = () => new Option('--backend <name>', 'tfjs backend').choices(['auto', ...BACKEND_NAMES]).default('auto');
const threadsOption = () =>
  new Option('--threads <n>', 'threads for the heavy matmuls (2: MLPs split with a worker thread)').choices(['1', '2']).default('1');
const weightsOption = () =>
  new Option('--weights <mode>', 'weight residency: resident, streamed (fp16 on the host, per layer), auto').choices(['auto', 'resident', 'streamed']).default('auto');

function readPrompt(prompt: string | undefined, promptFile: string | undefined, defaultModel: boolean): string {
  if (promptFile) return readFileSync(promptFile, 'utf8');
  return prompt ?? (defaultModel ? defaultPrompt() : 'What is in this image?');
}

const program = new Command();
program.name('illava').description('LLaVA vision-language models on TensorFlow.js with iLLaVA token merging').showHelpAfterError();

program
  .command('generate')
  .description('answer a prompt about images, streaming the text as it is produced')
  .option('--model <dir>', 'Hugging Face LLaVA folder (default: the embedded model)')
  .option('--image <file>', 'image file (repeatable)', collect, [])
  .option('--video <frames...>', 'video frames, in order (each becomes an image of the prompt)')
  .option('--prompt <text>', 'the question')
  .option('--prompt-file <file>', 'read the prompt from a file')
  .option('--raw', 'use the prompt as it is, without the LLaVA-1.5 chat template')
  .option('--max-new-tokens <n>', 'tokens to generate', number('max-new-tokens', true), 64)
  .option('--temperature <t>', '0 = greedy', number('temperature', false), 0)
  .option('--top-k <k>', 'sample among the k most likely tokens', number('top-k', true), 0)
  .option('--top-p <p>', 'nucleus sampling', number('top-p', false), 1)
  .option('--seed <n>', 'random seed for sampling', number('seed', true), 0)
  .option('--stop <text>', 'stop string (repeatable)', collect, [])
  .option('--merge <preset|json|file>', "token merging: none, illava, tome, fastv, a JSON config or a .json file", 'none')
  .option('--no-cache', 'recompute the whole sequence at every step (slow; for checks)')
  .addOption(backendOption())
  .addOption(threadsOption())
  .addOption(weightsOption())
  .action(async (opts) => {
    const merge = parseMergeOption(opts.merge);
    const model = await load(opts, merge);
    const images: string[] = opts.image.length === 0 && !opts.video && !opts.model ? [DEFAULT_IMAGE] : opts.image;
    process.stderr.write(`backend: ${model.backend.name} (${model.backend.reason}); weights ${model.residency.residency}; ${model.threads} thread(s)\n`);
    const out = await model.generate({
      prompt: readPrompt(opts.prompt, opts.promptFile, !opts.model),
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
      onToken: (text) => process.stdout.write(text),
    });
    process.stdout.write('\n');
    const t = out.timings;
    const lines = [
      `tokens: prompt ${out.promptIds.length} ids -> ${out.sequenceLength.input} with images -> ${out.sequenceLength.afterMerge} after language-stage merging; generated ${out.tokenIds.length} (${out.finishReason})`,
      ...out.merges.map((m, i) => `image ${i + 1}: ${[`${m.patches} patches`, ...m.vision.map((c) => `vision layer ${c.layer}: ${c.tokens}`), ...m.language.map((c) => `llm layer ${c.layer}: ${c.tokens}`)].join(' -> ')}`),
      `time: preprocess ${t.preprocessMs.toFixed(0)} ms, vision ${t.visionMs.toFixed(0)} ms, prefill ${t.prefillMs.toFixed(0)} ms, first token ${t.firstTokenMs.toFixed(0)} ms, decode ${t.decodeTokensPerSecond.toFixed(1)} tokens/s, total ${t.totalMs.toFixed(0)} ms`,
    ];
    process.stderr.write(lines.join('\n') + '\n');
    model.dispose();
  });

program
  .command('info')
  .description('architecture, parameter count, dtype and backend of a model')
  .option('--model <dir>', 'Hugging Face LLaVA folder (default: the embedded model)')
  .addOption(backendOption())
  .addOption(threadsOption())
  .addOption(weightsOption())
  .action(async (opts) => {
    const model = await load(opts);
    const c = model.config;
    const rows: Array<[string, string]> = [
      ['model', model.dir],
      ['architecture', 'LLaVA-1.5 (CLIP ViT + 2-layer MLP projector + LLaMA)'],
      ['vision', `CLIP ViT ${c.vision.numLayers} layers, width ${c.vision.hiddenSize}, ${c.vision.numHeads} heads, ${c.vision.imageSize}px / patch ${c.vision.patchSize} (${(c.vision.imageSize / c.vision.patchSize) ** 2} patches), feature layer ${c.visionFeatureLayer}, strategy ${c.visionFeatureSelectStrategy}`],
      ['decoder', `LLaMA ${c.text.numLayers} layers, width ${c.text.hiddenSize}, ${c.text.numHeads} heads (${c.text.numKvHeads} kv), MLP ${c.text.intermediateSize}, vocab ${c.text.vocabSize}`],
      ['parameters', `${model.parameterCount().toLocaleString('en-US')} loaded (float32 in memory)`],
      ['stored dtype', model.storedDtypes().join(', ')],
      ['backend', `${model.backend.name} (${model.backend.reason})`],
      ['execution', `weights ${model.residency.residency} (${model.residency.reason}), ${model.threads} thread(s)`],
    ];
    for (const [k, v] of rows) process.stdout.write(`${k.padEnd(13)} ${v}\n`);
    model.dispose();
  });

program
  .command('visualize')
  .description('draw the patches each surviving token holds after every merge step, and the token count per layer (PNG files)')
  .option('--model <dir>', 'Hugging Face LLaVA folder (default: the embedded model)')
  .option('--image <file>', 'image file (default: the embedded sample image)')
  .option('--merge <preset|json|file>', 'the merge config to draw: illava, tome, fastv, a JSON config or a .json file', 'illava')
  .option('--plot <presets>', 'comma-separated presets whose token counts per layer are plotted', 'none,illava,tome,fastv')
  .option('--prompt <text>', 'the question (the language stage scores image tokens by its last token)')
  .option('--out <dir>', 'output folder', 'visualize')
  .option('--scale <n>', 'drawing scale of the image (default: at least 448 px wide)', number('scale', true))
  .addOption(backendOption())
  .addOption(threadsOption())
  .addOption(weightsOption())
  .action(async (opts) => {
    const { visualize } = await import('./visualize.js');
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

program.parseAsync(process.argv).catch((e: unknown) => {
  process.stderr.write(`illava: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
