// The wasm heap guard (layers/wasm-memory.ts, src/heap-guard.ts): tfjs-wasm's heap corrupts
// silently past 4 GiB, so what the runtime puts there is tracked and refused before the limit.
// The limit is lowered here (setWasmHeapLimit) so the guard is exercised on the tiny fixture.
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { weightMatMul } from '../layers/linear.js';
import { DEFAULT_WASM_HEAP_LIMIT, reserveWasmHeap, setWasmHeapLimit, wasmHeapInUse, wasmHeapLimit } from '../layers/wasm-memory.js';
import { selectBackend } from '../src/backend.js';
import { checkWeightsFitWasmHeap, weightHeapBytes } from '../src/heap-guard.js';
import { LlavaModel } from '../src/llava.js';
import { loadModules } from '../src/load.js';
import { readLlavaConfig } from '../src/config.js';
import { openWeights } from '../weights/index.js';
import { archConfig } from '../scripts/random-model.js';
import { REPO_ROOT, TINY_LLAVA_DIR } from './helpers/fixture.js';
import { rejects } from './helpers/assert.js';

const MiB = 2 ** 20;
const IMAGE = join(TINY_LLAVA_DIR, 'image.png');

describe('wasm heap guard', function () {
  this.timeout(120000);
  before(async () => {
    await selectBackend('wasm');
  });
  afterEach(() => setWasmHeapLimit(null));

  it('counts tensors and the packed copy XNNPACK keeps of each matmul weight; off wasm it does nothing', async () => {
    const w = tf.randomNormal([256, 128]) as tf.Tensor2D;
    const x = tf.ones([1, 256]) as tf.Tensor2D;
    const before = wasmHeapInUse();
    const y = weightMatMul(x, w);
    expect(wasmHeapInUse() - before).to.equal(256 * 128 * 4 + 128 * 4); // the copy, and y
    y.dispose();
    w.dispose();
    x.dispose();
    expect(wasmHeapInUse()).to.equal(before - 256 * 128 * 4 - 256 * 4);
    setWasmHeapLimit(1);
    await selectBackend('cpu');
    try {
      expect(() => reserveWasmHeap(10 * MiB, 'x')).not.to.throw();
      expect(wasmHeapInUse()).to.equal(0);
    } finally {
      await selectBackend('wasm');
    }
  });

  it('the limit: default 4 GiB less 128 MiB, $ILLAVA_WASM_HEAP_LIMIT_MB, checked values', () => {
    expect(wasmHeapLimit()).to.equal(DEFAULT_WASM_HEAP_LIMIT).and.equal(3968 * MiB);
    process.env.ILLAVA_WASM_HEAP_LIMIT_MB = '100';
    try {
      expect(wasmHeapLimit()).to.equal(100 * MiB);
      process.env.ILLAVA_WASM_HEAP_LIMIT_MB = '5000';
      expect(() => wasmHeapLimit()).to.throw("ILLAVA_WASM_HEAP_LIMIT_MB must be an integer from 1 to 4096, got '5000'");
    } finally {
      delete process.env.ILLAVA_WASM_HEAP_LIMIT_MB;
    }
    expect(() => setWasmHeapLimit(2 ** 33)).to.throw(/the wasm heap limit must be an integer from 1 to 4294967296 bytes/);
    expect(() => setWasmHeapLimit(NaN)).to.throw(/got NaN/);
  });

  it('LLaVA-1.5-7B in float32 is refused before loading, naming its size and the layouts that fit', () => {
    const c = archConfig('llava-1.5-7b');
    const layout = { decoder: 'f32', vision: 'f32', residency: 'resident', releaseWeights: false } as const;
    expect(weightHeapBytes(c, layout)).to.be.above(50e9);
    let msg = '';
    try {
      checkWeightsFitWasmHeap('llava-1.5-7b', c, layout, 'wasm');
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).to.match(/^llava-1\.5-7b: the model \(7\.05 B parameters, 26\.27 GiB as float32\) needs 52\d{3} MiB of the wasm heap with weightFormat 'f32', weights 'resident' \(XNNPACK keeps a packed copy of each float32 matmul weight\): over (its 3968 MiB limit|the \d+ MiB left of its 3968 MiB limit \(\d+ MiB are in use\)) \(tfjs-wasm corrupts memory silently past 4 GiB\); options that fit: weightFormat: 'q8_0' \(--weight-format q8_0\): 0 MiB; weightFormat: 'q4_0'/);
    expect(msg).not.to.include("weights: 'streamed'"); // the ViT-L and lm_head, twice over, leave no room
    expect(() => checkWeightsFitWasmHeap('llava-1.5-7b', c, { ...layout, decoder: 'q8_0', vision: 'q8_0' }, 'wasm')).not.to.throw();
    expect(() => checkWeightsFitWasmHeap('llava-1.5-7b', c, layout, 'tensorflow')).not.to.throw();
    expect(() => checkWeightsFitWasmHeap('llava-1.5-7b', c, { ...layout, residency: 'streamed', releaseWeights: true }, 'wasm')).not.to.throw();
  });

  it('a model whose float32 weights exceed the limit is refused before anything is allocated', async () => {
    setWasmHeapLimit(wasmHeapInUse() + 12 * MiB); // the tiny model needs 17.5 MiB in float32 (lm_head 7.8 MiB, twice)
    const tensors = tf.memory().numTensors;
    const msg = await rejects(LlavaModel.fromPretrained(TINY_LLAVA_DIR, { backend: 'wasm', weightFormat: 'f32', quantizedCache: false }), /tiny-llava: the model \(0\.00 B parameters, 0\.02 GiB as float32\) needs 18 MiB of the wasm heap with weightFormat 'f32', weights 'resident'.*over (its 12 MiB limit|the 12 MiB left of its \d+ MiB limit).*options that fit: weightFormat: 'q8_0' \(--weight-format q8_0\): 0 MiB/);
    expect(msg).not.to.include('streamed');
    expect(tf.memory().numTensors).to.equal(tensors);
    const packed = await LlavaModel.fromPretrained(TINY_LLAVA_DIR, { backend: 'wasm', weightFormat: 'q8_0', quantizedCache: false });
    expect((await packed.generate({ prompt: 'What is it?', images: [IMAGE], maxNewTokens: 2 })).tokenIds).to.have.length(2);
    packed.dispose();
  });

  it('a model is refused when the heap already holds other tensors (another model) and only the rest is left', async () => {
    const ballast = tf.zeros([4 * MiB]); // 16 MiB held by "another model"
    try {
      setWasmHeapLimit(wasmHeapInUse() + 12 * MiB);
      await rejects(LlavaModel.fromPretrained(TINY_LLAVA_DIR, { backend: 'wasm', weightFormat: 'f32', quantizedCache: false }), /needs 18 MiB of the wasm heap .*: over the 12 MiB left of its \d+ MiB limit \(\d+ MiB are in use\)/);
    } finally {
      ballast.dispose();
    }
  });

  it('the loader refuses the tensor that would cross the limit and frees what it made', () => {
    const tensors = tf.memory().numTensors;
    setWasmHeapLimit(wasmHeapInUse() + 10 * MiB); // less than the 17.5 MiB the float32 weights take
    const source = openWeights(TINY_LLAVA_DIR);
    try {
      expect(() => loadModules(source, readLlavaConfig(TINY_LLAVA_DIR))).to.throw(/^loading '[^']+' needs \d+ MiB more of the wasm heap, which holds \d+ MiB already: over its \d+ MiB limit \(tfjs-wasm corrupts memory silently past 4 GiB\); load it with weights 'streamed' or a packed weightFormat/);
    } finally {
      source.close();
    }
    expect(tf.memory().numTensors).to.equal(tensors);
  });

  it('generate reserves the prefill (KV cache and activations) before running it', async () => {
    const model = await LlavaModel.fromPretrained(TINY_LLAVA_DIR, { backend: 'wasm', weightFormat: 'f32', quantizedCache: false });
    try {
      const input = { prompt: 'What is it?', images: [IMAGE], maxNewTokens: 2 };
      const first = await model.generate(input);
      const tensors = tf.memory().numTensors;
      setWasmHeapLimit(wasmHeapInUse() + 1000); // the tiny model's prompt needs a few hundred KiB
      await rejects(model.generate(input), /^a prompt of \d+ tokens with 2 new tokens \(KV cache and activations\) needs \d+ MiB more of the wasm heap, which holds \d+ MiB already: over its \d+ MiB limit .*; shorten the prompt, lower maxNewTokens/);
      expect(tf.memory().numTensors).to.equal(tensors);
      setWasmHeapLimit(null);
      expect((await model.generate(input)).tokenIds).to.deep.equal(first.tokenIds);
    } finally {
      model.dispose();
    }
  });

  it('the CLI gives one line and exit 1 ($ILLAVA_WASM_HEAP_LIMIT_MB)', () => {
    const r = spawnSync(process.execPath, [join(REPO_ROOT, 'dist/src/cli.js'), 'generate', '--model', TINY_LLAVA_DIR, '--image', IMAGE, '--prompt', 'Q', '--backend', 'wasm', '--weight-format', 'f32', '--no-quantized-cache'], { encoding: 'utf8', timeout: 60000, env: { ...process.env, ILLAVA_WASM_HEAP_LIMIT_MB: '12' } });
    expect(r.status).to.equal(1);
    const lines = r.stderr.trim().split('\n').filter((l) => l.trim() !== '');
    expect(lines, r.stderr).to.have.length(1);
    expect(lines[0]).to.match(/^illava: .*needs 18 MiB of the wasm heap.*options that fit: weightFormat: 'q8_0'/);
  });
});
