// Converts a Hugging Face LLaVA folder (safetensors, single or sharded, either naming scheme) into
// a tfjs weights manifest (model.json + group1-shard*.bin) and copies the config, tokenizer and
// processor files, so the output folder loads the same way as the input one.
//
//   node dist/scripts/convert-to-tfjs.js --model HF_DIR --out OUT_DIR [--float16] [--shard-mb 4]
import cliProgress from 'cli-progress';
import { Command } from 'commander';
import { copyFileSync, existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { openWeights } from '../weights/index.js';
import { writeTfjsWeights } from '../weights/tfjs-format.js';

/** Non-weight files a model folder may hold; each is copied when present. */
export const MODEL_FILES = [
  'config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json',
  'added_tokens.json', 'preprocessor_config.json', 'processor_config.json', 'chat_template.json', 'chat_template.jinja',
];

interface Options { model: string; out: string; float16?: boolean; shardMb: string }

function convert(opts: Options): void {
  if (!existsSync(opts.model)) throw new Error(`--model ${opts.model}: no such file or directory`);
  const modelDir = statSync(opts.model).isDirectory() ? opts.model : dirname(opts.model);
  if (resolve(modelDir) === resolve(opts.out)) throw new Error(`--out must differ from the model folder (${modelDir}): it would overwrite the input`);
  const shardMb = Number(opts.shardMb);
  if (!(shardMb > 0)) throw new Error(`--shard-mb must be a positive number, got '${opts.shardMb}'`);
  const source = openWeights(opts.model);
  const bar = new cliProgress.SingleBar(
    { stream: process.stderr, format: 'converting [{bar}] {value}/{total} tensors | {eta_formatted} left' },
    cliProgress.Presets.shades_classic,
  );
  try {
    bar.start(source.names().length, 0);
    const result = writeTfjsWeights(source, opts.out, {
      float16: opts.float16 ?? false,
      shardBytes: Math.round(shardMb * 1024 * 1024),
      onTensor: (_name, done) => bar.update(done),
    });
    bar.stop();
    mkdirSync(opts.out, { recursive: true });
    const copied = MODEL_FILES.filter((f) => existsSync(join(modelDir, f)));
    for (const f of copied) copyFileSync(join(modelDir, f), join(opts.out, f));
    const mib = (result.bytes / 2 ** 20).toFixed(1);
    console.log(`${result.manifestPath}: ${result.tensors} tensors, ${mib} MiB ${opts.float16 ? 'float16' : 'float32'} in ${result.shardPaths.length} shards; copied ${copied.join(', ') || 'no other files'}`);
  } finally {
    bar.stop();
    source.close();
  }
}

const program = new Command()
  .name('convert-to-tfjs')
  .description('Convert a Hugging Face LLaVA folder to a tfjs weights manifest + shards')
  .option('--model <dir>', 'Hugging Face model folder (safetensors) or tfjs folder (required)')
  .option('--out <dir>', 'output folder (required)')
  .option('--float16', 'store weights as IEEE float16 (half the size)')
  .option('--shard-mb <n>', 'shard file size in MiB', '4')
  .action((opts: Options) => {
    // Checked here, not with requiredOption, so that an unknown option is reported first.
    for (const k of ['model', 'out'] as const) if (!opts[k]) program.error(`error: required option '--${k} <dir>' not specified`);
    try {
      convert(opts);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      console.error(`convert-to-tfjs: error: ${msg.replace(/\s*\n\s*/g, ' ')}`);
      process.exitCode = 1;
    }
  });

program.parse();
