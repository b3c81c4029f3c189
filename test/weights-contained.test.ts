// Weight files stay inside the model folder (weights/contained.ts): shards named by an index or
// a tfjs manifest, and the folder's own weight files, must not be symbolic links out of it (the
// Hugging Face hub cache's snapshot -> blobs links excepted); and NaN/Inf weights are refused at
// load (weights/source.ts checkFinite), NaN logits at generation (src/sampling.ts).
import { expect } from 'chai';
import { copyFileSync, mkdirSync, readFileSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkFinite, openWeights, SafetensorsFile, writeTfjsWeights } from '../weights/index.js';
import { LlavaModel } from '../src/llava.js';
import { TokenSampler } from '../src/sampling.js';
import { TINY_LLAVA_DIR } from './helpers/fixture.js';
import { tempDir } from './helpers/weights-files.js';
import { rejects } from './helpers/assert.js';

const FIXTURE_WEIGHTS = join(TINY_LLAVA_DIR, 'model.safetensors');
const SHARD = 'model-00001-of-00001.safetensors';

/** An index putting every fixture tensor in one shard file. */
function writeIndex(dir: string): void {
  const f = SafetensorsFile.open(FIXTURE_WEIGHTS);
  const weightMap = Object.fromEntries(f.names().map((n) => [n, SHARD]));
  f.close();
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
}

describe('weights: files outside the model folder are never read', () => {
  const tmp = tempDir('illava-contained-');
  after(tmp.cleanup);
  const outside = join(tmp.dir, 'outside');
  before(() => {
    mkdirSync(outside);
    copyFileSync(FIXTURE_WEIGHTS, join(outside, SHARD)); // a valid shard: following the link would "work"
    writeFileSync(join(outside, 'passwd'), 'root:x:0:0:root:/root:/bin/bash\n');
  });

  it('an index shard linked out of the folder is refused, naming the shard and never quoting the target', () => {
    const dir = join(tmp.dir, 'index-out');
    mkdirSync(dir);
    writeIndex(dir);
    symlinkSync(join(outside, SHARD), join(dir, SHARD));
    expect(() => openWeights(dir)).to.throw(new RegExp(`model.safetensors.index.json: shard '${SHARD}': is a symbolic link to '${outside}/${SHARD}', outside the model folder`));
    const secret = join(tmp.dir, 'index-secret');
    mkdirSync(secret);
    writeIndex(secret);
    symlinkSync(join(outside, 'passwd'), join(secret, SHARD));
    expect(() => openWeights(secret)).to.throw(/outside the model folder/).and.satisfy((e: Error) => !e.message.includes('root:'));
  });

  it('links inside the folder, and a Hugging Face hub snapshot linking into its blobs, are read', () => {
    const dir = join(tmp.dir, 'index-in');
    mkdirSync(join(dir, 'sub'), { recursive: true });
    writeIndex(dir);
    copyFileSync(FIXTURE_WEIGHTS, join(dir, 'sub', 'real.safetensors'));
    symlinkSync(join('sub', 'real.safetensors'), join(dir, SHARD));
    const inside = openWeights(dir);
    expect(inside.names()).to.have.length(SafetensorsFile.open(FIXTURE_WEIGHTS).names().length);
    inside.close();
    const repo = join(tmp.dir, 'models--org--tiny');
    const snapshot = join(repo, 'snapshots', 'abc123');
    mkdirSync(snapshot, { recursive: true });
    mkdirSync(join(repo, 'blobs'));
    copyFileSync(FIXTURE_WEIGHTS, join(repo, 'blobs', 'f00d'));
    symlinkSync('../../blobs/f00d', join(snapshot, 'model.safetensors'));
    const hub = openWeights(snapshot);
    expect(hub.info('language_model.lm_head.weight')?.shape).to.deep.equal([32064, 64]);
    hub.close();
  });

  it("the folder's own model.safetensors or index linked out of it is refused", () => {
    const dir = join(tmp.dir, 'single-out');
    mkdirSync(dir);
    symlinkSync(join(outside, SHARD), join(dir, 'model.safetensors'));
    expect(() => openWeights(dir)).to.throw(/model\.safetensors: is a symbolic link to .*, outside the model folder/);
    const idx = join(tmp.dir, 'index-link');
    mkdirSync(idx);
    writeIndex(outside);
    symlinkSync(join(outside, 'model.safetensors.index.json'), join(idx, 'model.safetensors.index.json'));
    expect(() => openWeights(idx)).to.throw(/model\.safetensors\.index\.json: is a symbolic link to .*, outside the model folder/);
    // Named directly, a file is the user's choice and is read wherever it is.
    expect(openWeights(join(dir, 'model.safetensors')).names().length).to.be.above(10);
  });

  it('a tfjs manifest shard linked out of the folder is refused', () => {
    const dir = join(tmp.dir, 'tfjs-out');
    const source = openWeights(FIXTURE_WEIGHTS);
    const { shardPaths } = writeTfjsWeights(source, dir, { shardBytes: 8 * 1024 * 1024 });
    source.close();
    const victim = shardPaths[1];
    copyFileSync(victim, join(outside, 'shard.bin'));
    unlinkSync(victim);
    symlinkSync(join(outside, 'shard.bin'), victim);
    expect(() => openWeights(dir)).to.throw(/model\.json: weightsManifest\[0\]\.paths: 'group1-shard2of3\.bin': is a symbolic link to .*, outside the model folder/);
  });
});

describe('weights: NaN and infinite weights are refused', () => {
  const tmp = tempDir('illava-nonfinite-');
  after(tmp.cleanup);

  it('checkFinite names the tensor, the counts and the first index', () => {
    const ok = new Float32Array([1, -2, 0]);
    expect(checkFinite('w', 't', ok)).to.equal(ok);
    expect(() => checkFinite('w.safetensors', 'layer.weight', new Float32Array([0, 1, NaN, Infinity, NaN, -Infinity])))
      .to.throw("w.safetensors: tensor 'layer.weight' holds 2 NaN and 2 infinite value(s) (the first at index 2): the checkpoint is corrupt, refused");
  });

  for (const value of [NaN, Infinity, -Infinity]) {
    it(`a model whose checkpoint holds one ${value} is refused at load, naming the tensor`, async () => {
      const dir = join(tmp.dir, `model-${value}`);
      mkdirSync(dir);
      for (const f of ['config.json', 'preprocessor_config.json', 'tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(TINY_LLAVA_DIR, f), join(dir, f));
      const bytes = Buffer.from(readFileSync(FIXTURE_WEIGHTS));
      const f = SafetensorsFile.open(FIXTURE_WEIGHTS);
      const name = 'language_model.model.layers.1.mlp.down_proj.weight';
      const e = f.entry(name)!;
      const dataStart = 8 + f.headerLength;
      f.close();
      bytes.writeFloatLE(value, dataStart + e.begin + 4 * 7);
      writeFileSync(join(dir, 'model.safetensors'), bytes);
      await rejects(LlavaModel.fromPretrained(dir, { backend: 'wasm' }), new RegExp(`tensor '${name.replace(/\./g, '\\.')}' holds ${Number.isNaN(value) ? 1 : 0} NaN and ${Number.isNaN(value) ? 0 : 1} infinite value\\(s\\) \\(the first at index 7\\)`));
    });
  }

  it('NaN logits stop generation with an error instead of an empty answer', () => {
    const logits = new Float32Array([0.5, NaN, 1]);
    expect(() => new TokenSampler().next(logits)).to.throw(/the model produced NaN logits \(first at token id 1\)/);
    expect(() => new TokenSampler({ temperature: 0.7, seed: 1 }).next(logits)).to.throw(/NaN logits/);
    expect(new TokenSampler().next(new Float32Array([0.5, -Infinity, 1]))).to.equal(2);
  });
});
