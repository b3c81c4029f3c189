// Issue 11: bad input found by trying the project as a new user would. Each case must give one
// clear error (or the right behaviour) in bounded time and memory.
import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Jimp } from 'jimp';
import { loadImage, probeImage } from '../src/image.js';
import { ImageProcessor } from '../src/preprocess.js';
import { LlavaModel } from '../src/llava.js';
import { parseMergeOption } from '../src/merging.js';
import { REPO_ROOT, TINY_LLAVA_DIR } from './helpers/fixture.js';
import { gifWithFrame, greyPng, tiffHeader } from './helpers/images.js';
import { tempDir } from './helpers/weights-files.js';
import { rejects } from './helpers/assert.js';

const CLI = join(REPO_ROOT, 'dist/src/cli.js');

function illava(args: string[], cwd = REPO_ROOT): { code: number | null; stdout: string; stderr: string; ms: number } {
  const t = performance.now();
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60000, cwd });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, ms: performance.now() - t };
}

/** The `illava: ...` / error lines of stderr (the progress bar and stats are not errors). */
function errorLines(stderr: string): string[] {
  return stderr.trim().split('\n').filter((l) => /^(illava:|error:|Error|\s+at )/.test(l));
}

const tmp = tempDir('illava-harden-');
after(() => tmp.cleanup());

describe('hardening: images are checked from their header before decoding or allocating', () => {
  it('refuses extreme aspect ratios before the preprocessing allocates (400000x1, 100000x2, 1x60000)', async () => {
    const proc = await ImageProcessor.fromFile(TINY_LLAVA_DIR);
    for (const [w, h] of [[400000, 1], [100000, 2], [1, 60000]]) {
      const t = performance.now();
      const png = greyPng(w, h);
      await rejects(loadImage(png, { checkSize: (a, b) => proc.checkSize(a, b) }), /preprocessing would allocate \d+x\d+ pixels .*over the 50000000-pixel limit/);
      expect(performance.now() - t).to.be.lessThan(3000);
    }
  });

  it('refuses a header over maxImagePixels, and the limit can be raised or lowered', async () => {
    await rejects(loadImage(greyPng(16000, 16000, 1)), /16000x16000 pixels is over the 50000000-pixel limit/);
    await rejects(loadImage(greyPng(4, 4), { maxImagePixels: 10 }), /4x4 pixels is over the 10-pixel limit/);
    expect((await loadImage(greyPng(4, 4), { maxImagePixels: 16 })).width).to.equal(4);
    await rejects(loadImage(greyPng(4, 4), { maxImagePixels: NaN }), /maxImagePixels must be a positive integer/);
  });

  it('refuses truncated image data: PNG (header says more rows than the data holds), TIFF, JPEG, BMP', async () => {
    await rejects(loadImage(greyPng(2000, 2000, 3)), /PNG: data is truncated \(image data inflates to \d+ of the 12002000 bytes/);
    const cut = greyPng(64, 64);
    await rejects(loadImage(cut.subarray(0, cut.length - 20)), /PNG: data is truncated/);
    await rejects(loadImage(tiffHeader(14000, 14000, 200), { maxImagePixels: 1 << 28 }), /TIFF: truncated pixel data/);
    await rejects(loadImage(tiffHeader(100, 100, 100)), /TIFF: truncated pixel data \(100 bytes of strips, 100x100 needs 10000\)/);
    const src = new Jimp({ width: 64, height: 64, color: 0x336699ff });
    const jpeg = await src.getBuffer('image/jpeg');
    await rejects(loadImage(jpeg.subarray(0, Math.floor(jpeg.length * 0.6))), /JPEG: truncated data/);
    const bmp = await src.getBuffer('image/bmp');
    await rejects(loadImage(bmp.subarray(0, 500)), /BMP: truncated pixel data/);
    expect((await loadImage(jpeg)).width).to.equal(64);
    expect((await loadImage(bmp)).width).to.equal(64);
  });

  it('refuses a GIF frame bigger than its logical screen (jimp would read it as the screen size)', async () => {
    await rejects(probeImage(gifWithFrame(1, 1, 112, 112)), /GIF: frame 112x112 at \(0, 0\) does not fit the 1x1 logical screen/);
  });

  it('reads only regular files: /dev/zero, a FIFO and a folder are refused at once', async function () {
    await rejects(loadImage('/dev/zero'), /'\/dev\/zero': is a character device, not a regular file/);
    await rejects(loadImage(tmp.dir), /is a directory, not a regular file/);
    const fifo = join(tmp.dir, 'fifo.png');
    spawnSync('mkfifo', [fifo]);
    await rejects(loadImage(fifo), /is a FIFO \(named pipe\), not a regular file/);
    await rejects(loadImage(greyPng(4, 4).subarray(0, 0)), /empty file/);
  });
});

describe('hardening: preprocessor configs that would blow up or produce NaN are refused at load', () => {
  const cases: Array<[Parameters<typeof ImageProcessor.fromConfig>[0], RegExp]> = [
    [{ image_std: 1e-300 }, /'image_std' is zero in float32/],
    [{ rescale_factor: 1e308 }, /'rescale_factor' overflows float32/],
    [{ size: { shortest_edge: 36000 } }, /'size.shortest_edge' must be at most 4096 px/],
    [{ crop_size: 100000 }, /'crop_size' must be at most 4096 px/],
  ];
  for (const [cfg, pattern] of cases) {
    it(JSON.stringify(cfg), () => {
      expect(() => ImageProcessor.fromConfig(cfg)).to.throw(pattern);
    });
  }
});

describe('hardening: API misuse gets a message naming the mistake', () => {
  let model: LlavaModel;
  before(async () => {
    model = await LlavaModel.fromPretrained(TINY_LLAVA_DIR, { backend: 'wasm' });
  });
  after(() => model?.dispose());

  it('generate without a prompt, with a non-array images, with a bad image value', async () => {
    const bad = { images: [join(TINY_LLAVA_DIR, 'image.png')] } as unknown as Parameters<LlavaModel['generate']>[0];
    await rejects(model.generate(bad), /prompt must be a string \(the question\), got none/);
    await rejects(model.generate({ prompt: 'x', images: 'a.png' as unknown as string[] }), /images must be an array of images/);
    await rejects(model.generate({ prompt: 'x', images: [42 as unknown as string] }), /an image must be a path, encoded bytes/);
  });

  it('refuses prompt + maxNewTokens beyond max_position_embeddings before the prefill', async () => {
    await rejects(model.generate({ prompt: 'What is it?', images: [join(TINY_LLAVA_DIR, 'image.png')], maxNewTokens: 5000 }), /over the model's context of 4096 positions \(max_position_embeddings\)/);
    await rejects(model.generate({ prompt: 'x', maxNewTokens: -1 }), /maxNewTokens must be an integer >= 0, got -1/);
  });

  it('the image limit applies on the API path, before decoding', async () => {
    const t = performance.now();
    await rejects(model.generate({ prompt: 'x', images: [greyPng(400000, 1)], maxNewTokens: 1 }), /preprocessing would allocate/);
    expect(performance.now() - t).to.be.lessThan(3000);
  });

  it('generate after dispose says the model was disposed', async () => {
    const m = await LlavaModel.fromPretrained(TINY_LLAVA_DIR, { backend: 'wasm' });
    m.dispose();
    m.dispose(); // twice is harmless
    await rejects(m.generate({ prompt: 'x' }), /generate: this model has been disposed/);
    await rejects(m.logits({ prompt: 'x' }), /logits: this model has been disposed/);
  });
});

describe('hardening: --merge presets are never shadowed by files', () => {
  it('a preset name is the preset even when a file or folder of that name exists; @file reads a file', () => {
    const dir = join(tmp.dir, 'cwd');
    mkdirSync(join(dir, 'illava'), { recursive: true });
    writeFileSync(join(dir, 'tome'), '{}');
    writeFileSync(join(dir, 'cfg.json'), JSON.stringify({ llm: { rule: 'fastv', layers: [1], keep: 0.5 } }));
    const cwd = process.cwd();
    try {
      process.chdir(dir);
      expect(parseMergeOption('illava')).to.equal('illava');
      expect(parseMergeOption('tome')).to.equal('tome');
      expect(parseMergeOption('@tome')).to.deep.equal({});
      expect(parseMergeOption('cfg.json')).to.deep.equal({ llm: { rule: 'fastv', layers: [1], keep: 0.5 } });
      expect(parseMergeOption('@cfg.json')).to.deep.equal({ llm: { rule: 'fastv', layers: [1], keep: 0.5 } });
      expect(() => parseMergeOption('@illava')).to.throw(/merge config file 'illava': is a directory/);
    } finally {
      process.chdir(cwd);
    }
    const r = illava(['generate', '--merge', 'illava', '--max-new-tokens', '1'], dir);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stderr).to.match(/llm layer 1: 21/);
    const t = illava(['generate', '--merge', 'tome', '--max-new-tokens', '1'], dir);
    expect(t.code, t.stderr).to.equal(0);
    expect(t.stderr).to.match(/vision layer 0: /);
  });

  it('a merge file that is not a merge config is named, never printed', () => {
    for (const v of ['/etc/passwd', '@/etc/passwd']) {
      const r = illava(['generate', '--merge', v, '--max-new-tokens', '1']);
      expect(r.code).to.equal(1);
      expect(errorLines(r.stderr)).to.deep.equal([`illava: merge config file '/etc/passwd': not valid JSON (syntax error)`]);
      expect(r.stderr).to.not.match(/root:/);
    }
  });
});

describe('hardening: the command line', () => {
  it('argument errors are one line naming the option and the allowed values; --help prints help', () => {
    const cases: Array<[string[], RegExp]> = [
      [['generate', '--threads', '3'], /^illava: option '--threads <n>' argument '3' is invalid\. Allowed choices are 1, 2\.$/],
      [['generate', '--backend', 'foo'], /^illava: option '--backend <name>' argument 'foo' is invalid\. Allowed choices are auto, tensorflow, wasm, cpu\.$/],
      [['generate', '--weights', 'foo'], /^illava: option '--weights <mode>' argument 'foo' is invalid\. Allowed choices are auto, resident, streamed\.$/],
      [['generate', '--bogus'], /^illava: unknown option '--bogus'/],
      [['generate', '--max-new-tokens', '-1'], /^illava: --max-new-tokens expects an integer >= 0, got '-1'$/],
      [['generate', '--top-p', '2'], /^illava: --top-p expects a number in \[0, 1\], got '2'$/],
      [['frobnicate'], /^illava: unknown command 'frobnicate'/],
      [['generate', '--prompt', ''], /^illava: --prompt is empty/],
      [['generate', '--prompt', 'a', '--prompt-file', 'b.txt'], /^illava: --prompt and --prompt-file were both given: use one$/],
      [['generate', '--prompt-file', '/dev/zero'], /^illava: --prompt-file '\/dev\/zero': is a character device, not a regular file$/],
      [['generate', '--image', '/dev/zero'], /^illava: image '\/dev\/zero': is a character device, not a regular file$/],
      [['visualize', '--out', '/proc/nope/x'], /^illava: --out '\/proc\/nope\/x': cannot create '\/proc\/nope' \(ENOENT\)$/],
      [['visualize', '--scale', '50'], /^illava: scale 50 draws 5600 px pictures, over the 4096 px limit/],
      [['generate', '--max-new-tokens', '500'], /^illava: the prompt is 75 tokens \(1 image\(s\) of 64\) and 500 new tokens were asked for: 575 is over the model's context of 512 positions/],
    ];
    for (const [args, pattern] of cases) {
      const r = illava(args);
      expect(r.code, args.join(' ')).to.equal(1);
      expect(r.stdout, args.join(' ')).to.equal('');
      const lines = errorLines(r.stderr);
      expect(lines, `${args.join(' ')}\n${r.stderr}`).to.have.length(1);
      expect(lines[0], args.join(' ')).to.match(pattern);
      expect(r.ms, args.join(' ')).to.be.lessThan(20000);
    }
    const help = illava(['generate', '--help']);
    expect(help.code).to.equal(0);
    expect(help.stdout).to.match(/^Usage: illava generate \[options\]/);
  });

  it('a FIFO as --image is refused at once instead of hanging', function () {
    const fifo = join(tmp.dir, 'cli-fifo');
    spawnSync('mkfifo', [fifo]);
    const r = illava(['generate', '--image', fifo]);
    expect(r.code).to.equal(1);
    expect(errorLines(r.stderr)).to.deep.equal([`illava: image '${fifo}': is a FIFO (named pipe), not a regular file`]);
  });

  it('image errors come before the model loads (a folder with unreadable weights still names the image)', () => {
    const dir = join(tmp.dir, 'no-weights');
    mkdirSync(dir, { recursive: true });
    for (const f of ['config.json', 'preprocessor_config.json', 'tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(TINY_LLAVA_DIR, f), join(dir, f));
    const bad = join(tmp.dir, 'cut.png');
    writeFileSync(bad, greyPng(300, 300, 2));
    const r = illava(['generate', '--model', dir, '--image', bad, '--prompt', 'x']);
    expect(r.code).to.equal(1);
    expect(errorLines(r.stderr)).to.have.length(1);
    expect(r.stderr).to.match(/cut\.png': cannot decode \(PNG: data is truncated/);
  });

  it('one rule for the sample image: --model models/default uses sample.png like the default; --text-only runs without', () => {
    const a = illava(['generate', '--prompt', 'What colour is the circle?', '--max-new-tokens', '1']);
    const b = illava(['generate', '--model', join(REPO_ROOT, 'models/default'), '--prompt', 'What colour is the circle?', '--max-new-tokens', '1']);
    const c = illava(['generate', '--text-only', '--prompt', 'What colour is the circle?', '--max-new-tokens', '1']);
    for (const r of [a, b, c]) expect(r.code, r.stderr).to.equal(0);
    expect(a.stderr).to.match(/image 1: 64 patches/);
    expect(b.stderr).to.match(/image 1: 64 patches/);
    expect(b.stdout).to.equal(a.stdout);
    expect(c.stderr).to.not.match(/image 1:/);
    expect(a.stderr).to.match(/decode n\/a \(under 2 tokens\)/);
  });

  it('unknown words are reported once on stderr', () => {
    const r = illava(['generate', '--prompt', 'What colour is the zorblax?', '--max-new-tokens', '1']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stderr.match(/warning: 1 word\(s\) of the prompt are not in the tokenizer's vocabulary/g)).to.have.length(1);
  });

  it('writing to a closed pipe ends quietly', async () => {
    const child = spawn(process.execPath, [CLI, 'generate', '--max-new-tokens', '2'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(stderr).to.not.match(/EPIPE|at .*\.js/);
    expect(code).to.equal(0);
  });
});

describe('hardening: every script prints usage on --help and one line on an unknown option', () => {
  const scripts = ['bench', 'bench-layers', 'bench-parallel', 'bench-streamed', 'convert-to-tfjs', 'eval', 'shapes-sample', 'train'];
  for (const name of scripts) {
    it(name, () => {
      const file = join(REPO_ROOT, `dist/scripts/${name}.js`);
      const help = spawnSync(process.execPath, [file, '--help'], { encoding: 'utf8', timeout: 30000 });
      expect(help.status, help.stderr).to.equal(0);
      expect(help.stdout).to.match(/^usage: /i);
      const bad = spawnSync(process.execPath, [file, '--bogus-option'], { encoding: 'utf8', timeout: 30000 });
      expect(bad.status).to.equal(1);
      expect(bad.stdout).to.equal('');
      expect(bad.stderr.trim().split('\n'), bad.stderr).to.have.length(1);
      expect(bad.stderr).to.match(/unknown option '--bogus-option'/i);
    });
  }
});

describe('hardening: merge functions and merge configs name the mistake', () => {
  before(async () => {
    const { selectBackend } = await import('../src/backend.js');
    await selectBackend('wasm');
  });
  it('merge functions given non-tensors or no input object', async () => {
    const merge = await import('../merge/index.js');
    const tf = await import('@tensorflow/tfjs-core');
    expect(() => merge.similarityRecycle({} as never)).to.throw(/similarityRecycle: 'keys' must be a tfjs tensor, got undefined/);
    expect(() => merge.tomeBipartite(undefined as never)).to.throw(/tomeBipartite: expected an input object/);
    expect(() => merge.fastvPrune({ lastRowAttn: [[1]] } as never)).to.throw(/fastvPrune: 'lastRowAttn' must be a tfjs tensor, got an array/);
    const x = tf.zeros([4, 2]);
    expect(() => merge.similarityRecycle({ keys: x, scores: 'abc', keep: 2 } as never)).to.throw(/'scores' must be an array of numbers/);
    x.dispose();
    expect(() => merge.illavaVision({ attn: x, remove: 1, clsToken: false } as never)).to.throw(/illavaVision: 'attn' has been disposed/);
  });

  it('merge functions before a backend is ready say how to get one', () => {
    const script = `import('${join(REPO_ROOT, 'dist/merge/index.js')}').then((m) => { try { m.fastvPrune({ hidden: { shape: [2, 2], dataSync() {} }, lastRowAttn: { shape: [1, 2], dataSync() {} }, keep: 0.5, spans: [[0, 2]] }); } catch (e) { console.log(e.message); } })`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30000 });
    expect(r.stdout.trim()).to.match(/^fastvPrune: no tfjs backend is ready yet: `await tf.setBackend\('wasm'\)`/);
  });

  it('library merge configs: NaN, strings, wrong types and numbers are refused with the real value', async () => {
    const { resolveMergeConfig, LLAVA15_SHAPE } = await import('../merge/index.js');
    const cases: Array<[unknown, RegExp]> = [
      [{ vision: { rule: 'illava', layers: [5], remove: 8, recycleRatio: NaN } }, /recycleRatio must be in \[0, 1\], got NaN/],
      [{ llm: { rule: 'fastv', layers: [2], keep: '0.5' } }, /llm: keep must be a ratio in \(0, 1\], got string/],
      [{ vision: { rule: 'tome', layers: [0], remove: 8, proportionalAttention: 'yes' } }, /proportionalAttention must be a boolean, got string/],
      [42, /merge must be a preset name \(illava, redundancy, tome, fastv, none\) or a MergeConfig object, got number/],
      [{ vision: { rule: 'tome', layers: [0], remove: Infinity } }, /remove must be an integer >= 0, got Infinity/],
      [{ llm: { rule: 'fastv', layers: [2], keep: 0.5, neighbours: 1.5 } }, /neighbours must be an integer >= 1, got 1.5/],
      [{ visoin: {} }, /unknown field 'visoin'/],
    ];
    for (const [config, pattern] of cases) {
      expect(() => resolveMergeConfig(config as never, LLAVA15_SHAPE), JSON.stringify(config)).to.throw(pattern);
    }
  });
});

describe('hardening: the parallel worker', () => {
  it('a worker that never answers init fails after initTimeoutMs instead of hanging', async () => {
    const { ParallelPool } = await import('../layers/parallel.js');
    const { pathToFileURL } = await import('node:url');
    const silent = join(tmp.dir, 'silent-worker.mjs');
    writeFileSync(silent, 'setInterval(() => {}, 1000);\n');
    const t = performance.now();
    await rejects(ParallelPool.start({ workerUrl: pathToFileURL(silent), initTimeoutMs: 300, backend: 'wasm' }), /parallel worker did not start in 300 ms \(terminated\)/);
    expect(performance.now() - t).to.be.lessThan(5000);
  });

  it('--threads 2 --backend cpu runs', () => {
    const r = illava(['generate', '--model', TINY_LLAVA_DIR, '--image', join(TINY_LLAVA_DIR, 'image.png'), '--max-new-tokens', '2', '--threads', '2', '--backend', 'cpu']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stderr).to.match(/backend: cpu.*2 thread\(s\)/);
  });
});

describe('hardening: untrusted config.json sizes are checked before anything is allocated', () => {
  function modelWith(name: string, edit: (cfg: { text_config: Record<string, unknown>; vision_config: Record<string, unknown> }) => void): string {
    const dir = join(tmp.dir, name);
    mkdirSync(dir, { recursive: true });
    for (const f of ['preprocessor_config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors']) copyFileSync(join(TINY_LLAVA_DIR, f), join(dir, f));
    const cfg = JSON.parse(readFileSync(join(TINY_LLAVA_DIR, 'config.json'), 'utf8'));
    edit(cfg);
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
    return dir;
  }
  const cases: Array<[string, (cfg: { text_config: Record<string, unknown>; vision_config: Record<string, unknown> }) => void, RegExp]> = [
    ['head-dim', (c) => (c.text_config.head_dim = 1e9), /text_config.head_dim 1000000000 is over the sane limit of 1024/],
    ['hidden', (c) => (c.text_config.hidden_size = 1e9), /text_config.hidden_size 1000000000 is over the sane limit/],
    ['inter', (c) => (c.vision_config.intermediate_size = 1e9), /vision_config.intermediate_size 1000000000 is over the sane limit/],
    ['inter-mismatch', (c) => (c.text_config.intermediate_size = 1000), /config.json \(text_config intermediate_size, hidden_size\) implies language_model.model.layers.0.mlp.gate_proj.weight of shape \[1000,64\], but the checkpoint has \[\d+,64\]/],
    ['vocab-mismatch', (c) => (c.text_config.vocab_size = 999), /implies language_model.model.embed_tokens.weight of shape \[999,64\]/],
  ];
  for (const [name, edit, pattern] of cases) {
    it(name, async () => {
      const before = process.memoryUsage().rss;
      await rejects(LlavaModel.fromPretrained(modelWith(name, edit), { backend: 'wasm' }), pattern);
      expect(process.memoryUsage().rss - before).to.be.lessThan(200 * 1024 * 1024);
    });
  }
});
