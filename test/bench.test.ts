// Benchmark pieces: random-weight models (scripts/random-model.ts), releasing XNNPACK-packed
// weights (layers/wasm-memory.ts), column-blocked linears, and `npm run bench` end to end on the
// tiny fixture (JSON written, table printed).
import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LlavaModel } from '../src/llava.js';
import { selectBackend } from '../src/backend.js';
import { readLlavaConfig, visionLayersRun } from '../src/config.js';
import { LlavaTokenizer } from '../src/tokenizer.js';
import { Linear, blockWidths, isReleased, setReleaseUnpackedWeights, wasmHeapBytes } from '../layers/index.js';
import { RandomWeightSource, archConfig, clipImageProcessor, randomUniform, tensorSpecs } from '../scripts/random-model.js';
import { maxAbsDiff, REPO_ROOT, TINY_LLAVA_DIR } from './helpers/fixture.js';

describe('bench: random-weight models', function () {
  before(() => selectBackend('wasm'));

  it('llava-1.5-7b config has the real sizes; slices cut the depth only', () => {
    const c = archConfig('llava-1.5-7b');
    expect([c.vision.hiddenSize, c.vision.intermediateSize, c.vision.numLayers, c.vision.numHeads, c.vision.imageSize, c.vision.patchSize]).to.deep.equal([1024, 4096, 24, 16, 336, 14]);
    expect([c.text.hiddenSize, c.text.intermediateSize, c.text.numLayers, c.text.numHeads, c.text.vocabSize]).to.deep.equal([4096, 11008, 32, 32, 32064]);
    expect(c.visionFeatureLayer).to.equal(-2);
    expect(visionLayersRun(c)).to.equal(23);
    const s = archConfig('llava-1.5-7b', { llmLayers: 2, vitLayers: 4 });
    expect([s.text.numLayers, s.vision.numLayers, visionLayersRun(s), s.text.hiddenSize]).to.deep.equal([2, 4, 3, 4096]);
    // 7B, 2-layer slice: every tensor the loader reads, float32 (vision 23 layers, projector, 2 LLaMA layers, embedding, lm_head): 3.6 GiB.
    const bytes = new RandomWeightSource(archConfig('llava-1.5-7b', { llmLayers: 2 })).totalBytes;
    expect(bytes / 2 ** 30).to.be.within(3.6, 3.7);
  });

  it('random values are seeded, uniform with the asked standard deviation', () => {
    const a = randomUniform(100000, 0.02, 7);
    expect(Array.from(a.subarray(0, 5))).to.deep.equal(Array.from(randomUniform(5, 0.02, 7)));
    expect(Array.from(randomUniform(5, 0.02, 8))).to.not.deep.equal(Array.from(a.subarray(0, 5)));
    let sum = 0;
    let sq = 0;
    for (const v of a) {
      sum += v;
      sq += v * v;
    }
    expect(Math.abs(sum / a.length)).to.be.below(5e-4);
    expect(Math.sqrt(sq / a.length)).to.be.closeTo(0.02, 5e-4);
  });

  it('a random model with the fixture shapes loads through LlavaModel.fromParts and generates deterministically', async () => {
    const config = readLlavaConfig(TINY_LLAVA_DIR);
    const tokenizer = await LlavaTokenizer.fromDir(TINY_LLAVA_DIR);
    const source = new RandomWeightSource(config, 3);
    expect(source.names()).to.have.length(tensorSpecs(config).size);
    const run = async () => {
      const model = await LlavaModel.fromParts({ name: 'random tiny', config, source, tokenizer, imageProcessor: clipImageProcessor(56) }, { backend: 'wasm' });
      try {
        return await model.generate({ prompt: 'What is this?', images: [join(TINY_LLAVA_DIR, 'image.png')], maxNewTokens: 4, stopIds: [], merge: 'illava' });
      } finally {
        model.dispose();
      }
    };
    const a = await run();
    const b = await run();
    expect(a.tokenIds).to.have.length(4);
    expect(a.tokenIds).to.deep.equal(b.tokenIds);
    expect(a.merges[0].tokens).to.equal(5);
  });
});

describe('bench: layers for speed and memory', function () {
  before(() => selectBackend('wasm'));
  afterEach(() => setReleaseUnpackedWeights(false));

  it('column-blocked Linear equals one matmul; blocks follow the block size', () => {
    expect(blockWidths(1024, 4096, 4 << 20)).to.deep.equal([1024, 1024, 1024, 1024]);
    expect(blockWidths(1024, 1000, 4 << 20)).to.deep.equal([1000]);
    expect(blockWidths(4096, 300, 1 << 20)).to.deep.equal([64, 64, 64, 64, 44]);
    const w = randomUniform(32 * 200, 1, 1);
    const b = randomUniform(200, 1, 2);
    const x = tf.tensor2d(randomUniform(5 * 32, 1, 3), [5, 32]);
    const blocked = Linear.fromHost(w, 32, 200, b, [64, 64, 72]);
    const plain = tf.tidy(() => tf.add(tf.matMul(x, tf.tensor2d(w, [32, 200])), b));
    const y = blocked.apply(x);
    expect(maxAbsDiff(y.dataSync(), plain.dataSync())).to.be.below(1e-4);
    expect(Array.from(blocked.hostWeights().weight)).to.deep.equal(Array.from(w));
    [x, y, plain].forEach((t) => t.dispose());
    blocked.dispose();
  });

  it('releasing the unpacked weight after XNNPACK packed it keeps results exact (and later tensors use the memory)', () => {
    setReleaseUnpackedWeights(true);
    const n = 512;
    const x = tf.tensor2d(randomUniform(4 * n, 1, 4), [4, n]);
    const before = tf.memory().numTensors;
    const linear = Linear.fromHost(randomUniform(n * n, 1, 5), n, n, randomUniform(n, 1, 6), [n]);
    const backend = tf.backend() as unknown as { getMemoryOffset(dataId: object): number };
    const offset = backend.getMemoryOffset(linear.blocks[0].weight.dataId);
    const first = linear.apply(x);
    expect(isReleased(linear.blocks[0].weight)).to.equal(true);
    // The weight now points at a 4-byte placeholder; its 1 MiB went back to the allocator.
    expect(backend.getMemoryOffset(linear.blocks[0].weight.dataId)).to.not.equal(offset);
    expect(wasmHeapBytes()).to.be.greaterThan(0);
    const fillers: tf.Tensor[] = [];
    for (let i = 0; i < 5; i++) {
      const again = linear.apply(x);
      expect(maxAbsDiff(again.dataSync(), first.dataSync())).to.equal(0);
      again.dispose();
      // New tensors may take the released memory: the packed weights are not affected.
      fillers.push(tf.fill([n, n], 7));
    }
    fillers.forEach((t) => t.dispose());
    expect(() => linear.hostWeights()).to.throw(/released/);
    linear.dispose();
    first.dispose();
    x.dispose();
    expect(tf.memory().numTensors).to.equal(before - 1);
  });

  it('`npm run bench -- --arch tiny` prints the table and writes the JSON', function () {
    this.timeout(120000);
    const out = mkdtempSync(join(tmpdir(), 'illava-bench-'));
    try {
      const stdout = execFileSync(process.execPath, [join(REPO_ROOT, 'dist/scripts/bench.js'), '--arch', 'tiny', '--runs', '1', '--warmup', '0', '--new-tokens', '3', '--out', out], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      expect(stdout).to.match(/\| config +\| img tokens vision\/LLM/);
      expect(stdout).to.match(/\| illava +\| +8\/5 \|/);
      const files = readdirSync(out);
      expect(files).to.have.length(1);
      expect(files[0]).to.match(/^tiny-llava-\d{4}-\d\d-\d\d-\d\d-\d\d\.json$/);
      const json = JSON.parse(readFileSync(join(out, files[0]), 'utf8'));
      expect(json.backend).to.equal('wasm');
      expect(json.machine.cores).to.be.a('number');
      expect(json.results.map((r: { name: string }) => r.name)).to.deep.equal(['none', 'illava', 'tome', 'fastv']);
      const illava = json.results[1];
      expect(illava.median.imageTokensAfterVision).to.equal(8);
      expect(illava.median.imageTokensAfterLlm).to.equal(5);
      expect(illava.median.newTokens).to.equal(3);
      expect(illava.vsNone.prefillSpeedup).to.be.a('number');
      expect(illava.median.prefillLayerMs).to.have.length(2);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
