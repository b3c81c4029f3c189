// tfjs weights manifests: writer round trips (float32 bit-exact, float16 rounded), agreement
// with @tensorflow/tfjs-core's own encodeWeights/decodeWeights, malformed manifests, and the
// convert-to-tfjs script end to end.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { expect } from 'chai';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  f16BitsToNumber, numberToF16Bits, openWeights, readRaw, writeTfjsWeights,
  type TensorInfo, type TfjsWeightsJson, type WeightSource,
} from '../weights/index.js';
import { REPO_ROOT, TINY_LLAVA_DIR } from './helpers/fixture.js';
import { f32le, tempDir, u16le } from './helpers/weights-files.js';

function manifestOf(dir: string): TfjsWeightsJson {
  return JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as TfjsWeightsJson;
}

/** The group's shard files concatenated, as tf.io's loaders hand them to decodeWeights. */
function groupBytes(dir: string, group = 0): ArrayBuffer {
  const buf = Buffer.concat(manifestOf(dir).weightsManifest[group].paths.map((p) => readFileSync(join(dir, p))));
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
}

/** Half of the spacing of binary16 numbers around x: the largest round-to-nearest error. */
function halfUlpF16(x: number): number {
  const a = Math.abs(x);
  return a < 2 ** -14 ? 2 ** -25 : 2 ** (Math.floor(Math.log2(a)) - 11);
}

/** An in-memory source (no readRaw), as model tests might build. */
function memorySource(tensors: Record<string, { shape: number[]; data: number[] }>): WeightSource {
  return {
    origin: 'memory',
    names: () => Object.keys(tensors).sort(),
    info: (name): TensorInfo | undefined => tensors[name] && { name, dtype: 'F32', shape: tensors[name].shape },
    readFloat32: (name) => Float32Array.from(tensors[name].data),
    close: () => undefined,
  };
}

describe('weights: tfjs weights manifest', () => {
  const tmp = tempDir();
  let fixture: WeightSource;
  // tfjs-core is only used here as an independent encoder/decoder; restore the backend other test
  // files chose, since mocha runs them all in one process.
  let previousBackend: string | null = null;
  before(async () => {
    previousBackend = tf.engine().backendName;
    await tf.setBackend('cpu');
    fixture = openWeights(TINY_LLAVA_DIR);
  });
  after(async () => {
    fixture.close();
    tmp.cleanup();
    if (previousBackend && previousBackend !== 'cpu') await tf.setBackend(previousBackend);
  });

  it('float32: writes a tfjs manifest and reads every tensor back bit-identical', () => {
    const out = join(tmp.dir, 'f32');
    const result = writeTfjsWeights(fixture, out, { shardBytes: 1024 * 1024 + 3 }); // odd size: tensors straddle shards
    const json = manifestOf(out);
    expect(json.format).to.equal('illava-weights');
    expect(json.generatedBy).to.be.a('string');
    const group = json.weightsManifest[0];
    expect(group.paths).to.have.length(result.shardPaths.length);
    expect(group.paths[0]).to.equal(`group1-shard1of${group.paths.length}.bin`);
    expect(group.weights.map((w) => w.name)).to.deep.equal(fixture.names());
    expect(group.paths.reduce((s, p) => s + statSync(join(out, p)).size, 0)).to.equal(result.bytes);
    const back = openWeights(out);
    expect(back.names()).to.deep.equal(fixture.names());
    for (const name of fixture.names()) {
      expect(back.info(name)).to.deep.equal(fixture.info(name));
      const a = back.readFloat32(name);
      const b = fixture.readFloat32(name);
      expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer)), name).to.equal(true);
    }
    back.close();
  });

  it('float16: every value is the round-to-nearest-even half of the original', () => {
    const out = join(tmp.dir, 'f16');
    writeTfjsWeights(fixture, out, { float16: true });
    expect(manifestOf(out).weightsManifest[0].weights[0].quantization).to.deep.equal({ dtype: 'float16', original_dtype: 'float32' });
    const back = openWeights(out);
    let maxRel = 0;
    for (const name of fixture.names()) {
      const x = fixture.readFloat32(name);
      const y = back.readFloat32(name);
      expect(back.info(name)).to.deep.include({ dtype: 'F16', shape: fixture.info(name)!.shape });
      const raw = readRaw(back, name);
      expect(raw.dtype).to.equal('F16');
      expect(raw.bytes.length).to.equal(x.length * 2);
      for (let i = 0; i < x.length; i++) {
        if (y[i] !== f16BitsToNumber(numberToF16Bits(x[i])) || Math.abs(y[i] - x[i]) > halfUlpF16(x[i])) {
          expect.fail(`${name}[${i}]: ${x[i]} stored as ${y[i]}`);
        }
        if (Math.abs(x[i]) >= 2 ** -14) maxRel = Math.max(maxRel, Math.abs(y[i] - x[i]) / Math.abs(x[i]));
      }
    }
    expect(maxRel).to.be.at.most(2 ** -11); // relative rounding error of a normal half (subnormals: absolute 2^-25)
    expect(maxRel).to.be.greaterThan(0);
    back.close();
  });

  it('agrees with @tensorflow/tfjs-core decodeWeights (float32 and float16 shards)', () => {
    for (const sub of ['f32', 'f16']) {
      const dir = join(tmp.dir, sub);
      const decoded = tf.io.decodeWeights(groupBytes(dir), manifestOf(dir).weightsManifest[0].weights);
      const ours = openWeights(dir);
      for (const name of ours.names()) {
        const a = ours.readFloat32(name);
        const b = decoded[name].dataSync() as Float32Array;
        expect(decoded[name].shape).to.deep.equal(ours.info(name)!.shape);
        expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength)), `${sub} ${name}`).to.equal(true);
      }
      ours.close();
      tf.dispose(Object.values(decoded));
    }
  });

  it('reads a model.json written with tfjs-core encodeWeights and tfjs-converter fields (new HF names)', async () => {
    const dir = join(tmp.dir, 'tfjs-core');
    mkdirSync(dir);
    const t1 = tf.tensor2d([[1, 2, 3], [4, 5, 6]]);
    const t2 = tf.tensor1d([-0.5, 0.25]);
    const { data, specs } = await tf.io.encodeWeights({ 'model.language_model.norm.weight': t2, 'lm_head.weight': t1 });
    tf.dispose([t1, t2]);
    writeFileSync(join(dir, 'w.bin'), Buffer.from(data as ArrayBuffer));
    const specsWithExtra = specs.map((s) => ({ ...s, group: 'model' }));
    writeFileSync(join(dir, 'model.json'), JSON.stringify({
      modelTopology: { node: [] }, format: 'graph-model', generatedBy: '2.15.0', convertedBy: 'TensorFlow.js Converter v4.22.0',
      signature: {}, userDefinedMetadata: { x: 1 }, weightsManifest: [{ paths: ['w.bin'], weights: specsWithExtra }],
    }));
    const src = openWeights(dir);
    expect(src.names()).to.deep.equal(['language_model.lm_head.weight', 'language_model.model.norm.weight']);
    expect(Array.from(src.readFloat32('language_model.lm_head.weight'))).to.deep.equal([1, 2, 3, 4, 5, 6]);
    expect(Array.from(src.readFloat32('model.language_model.norm.weight'))).to.deep.equal([-0.5, 0.25]);
    expect(src.info('lm_head.weight')?.shape).to.deep.equal([2, 3]);
    src.close();
  });

  it('dequantizes uint8 / uint16 affine weights as value = q * scale + min, across groups', () => {
    const dir = join(tmp.dir, 'affine');
    mkdirSync(dir);
    writeFileSync(join(dir, 'a.bin'), Buffer.from([0, 1, 255]));
    writeFileSync(join(dir, 'b1.bin'), Buffer.concat([u16le([0, 2]), f32le([7]).subarray(0, 1)]));
    writeFileSync(join(dir, 'b2.bin'), f32le([7]).subarray(1)); // a float32 weight split over two shard files
    writeFileSync(join(dir, 'model.json'), JSON.stringify({ weightsManifest: [
      { paths: ['a.bin'], weights: [{ name: 'u8', shape: [3], dtype: 'float32', quantization: { dtype: 'uint8', scale: 0.5, min: -1, original_dtype: 'float32' } }] },
      { paths: ['b1.bin', 'b2.bin'], weights: [
        { name: 'u16', shape: [2], dtype: 'float32', quantization: { dtype: 'uint16', scale: 0.25, min: 1 } },
        { name: 'f', shape: [], dtype: 'float32' },
      ] },
    ] }));
    const src = openWeights(dir);
    expect(Array.from(src.readFloat32('u8'))).to.deep.equal([-1, -0.5, 126.5]);
    expect(Array.from(src.readFloat32('u16'))).to.deep.equal([1, 1.5]);
    expect(Array.from(src.readFloat32('f'))).to.deep.equal([7]);
    expect(readRaw(src, 'u8')).to.deep.include({ dtype: 'F32', shape: [3] });
    src.close();
  });

  it('rejects malformed manifests with clear errors', () => {
    const dir = join(tmp.dir, 'bad');
    mkdirSync(dir);
    const manifest = join(dir, 'model.json');
    const write = (json: unknown): void => writeFileSync(manifest, JSON.stringify(json));
    writeFileSync(join(dir, 's.bin'), f32le([1, 2]));
    const w = { name: 'w', shape: [2], dtype: 'float32' };
    write({ modelTopology: {} });
    expect(() => openWeights(dir)).to.throw(/model.json: no 'weightsManifest' array/);
    write({ weightsManifest: [{ paths: ['s.bin'], weights: [{ ...w, dtype: 'int32' }] }] });
    expect(() => openWeights(dir)).to.throw(/weightsManifest\[0\].weights\[0\] \('w'\): unsupported dtype "int32"/);
    write({ weightsManifest: [{ paths: ['s.bin'], weights: [{ ...w, quantization: { dtype: 'int4' } }] }] });
    expect(() => openWeights(dir)).to.throw(/unsupported quantization dtype "int4"/);
    write({ weightsManifest: [{ paths: ['s.bin'], weights: [{ ...w, quantization: { dtype: 'uint8' } }] }] });
    expect(() => openWeights(dir)).to.throw(/uint8 quantization needs finite numeric 'scale' and 'min'/);
    write({ weightsManifest: [{ paths: ['s.bin'], weights: [{ ...w, shape: [-2] }] }] });
    expect(() => openWeights(dir)).to.throw(/invalid shape \[-2\]/);
    write({ weightsManifest: [{ paths: ['s.bin', 'gone.bin'], weights: [w] }] });
    expect(() => openWeights(dir)).to.throw(/weightsManifest\[0\]: shard files missing from .*: gone.bin/);
    write({ weightsManifest: [{ paths: ['s.bin'], weights: [{ ...w, shape: [3] }] }] });
    expect(() => openWeights(dir)).to.throw(/shard files hold 8 bytes but the manifest's weights need 12 \(shard too short: truncated\)/);
    write({ weightsManifest: [{ paths: ['s.bin'], weights: [{ ...w, name: 'lm_head.weight' }, { ...w, name: 'language_model.lm_head.weight', shape: [0] }] }] });
    expect(() => openWeights(dir)).to.throw(/both map to the canonical name 'language_model.lm_head.weight'/);
  });

  it('reports a truncated shard of a written model', () => {
    const dir = join(tmp.dir, 'short');
    writeTfjsWeights(fixture, dir, { shardBytes: 4 * 1024 * 1024 });
    const paths = manifestOf(dir).weightsManifest[0].paths;
    const last = join(dir, paths[paths.length - 1]);
    truncateSync(last, statSync(last).size - 4);
    expect(() => openWeights(dir)).to.throw(/model.json: weightsManifest\[0\]: shard files hold \d+ bytes but the manifest's weights need \d+ \(shard too short: truncated\)/);
  });

  it('writes sources without readRaw, and refuses values that overflow float16', () => {
    const src = memorySource({ a: { shape: [2], data: [1.5, -3] }, big: { shape: [1], data: [1e6] } });
    const dir = join(tmp.dir, 'memory');
    writeTfjsWeights(src, dir, { shardBytes: 5 });
    const back = openWeights(dir);
    expect(Array.from(back.readFloat32('big'))).to.deep.equal([1e6]);
    back.close();
    expect(() => writeTfjsWeights(src, join(tmp.dir, 'memory16'), { float16: true })).to.throw(/memory: tensor 'big' value 1000000 at index 0 overflows float16/);
    expect(() => writeTfjsWeights(src, dir, { shardBytes: 0 })).to.throw(/shardBytes must be a positive integer/);
  });

  it('convert-to-tfjs script: converts the fixture folder end to end, and fails with one line', () => {
    const out = join(tmp.dir, 'cli');
    const script = join(REPO_ROOT, 'dist/scripts/convert-to-tfjs.js');
    const stdout = execFileSync(process.execPath, [script, '--model', TINY_LLAVA_DIR, '--out', out, '--float16'], { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    expect(stdout).to.match(/80 tensors/);
    for (const f of ['model.json', 'config.json', 'tokenizer.json', 'tokenizer_config.json', 'preprocessor_config.json', 'generation_config.json']) {
      expect(existsSync(join(out, f)), f).to.equal(true);
    }
    expect(readFileSync(join(out, 'config.json'), 'utf8')).to.equal(readFileSync(join(TINY_LLAVA_DIR, 'config.json'), 'utf8'));
    const back = openWeights(out);
    expect(back.names()).to.deep.equal(fixture.names());
    back.close();
    const bad = spawnSync(process.execPath, [script, '--model', join(tmp.dir, 'nope'), '--out', join(tmp.dir, 'x')], { cwd: REPO_ROOT, encoding: 'utf8' });
    expect(bad.status).to.equal(1);
    expect(bad.stderr.trim().split('\n')).to.have.length(1);
    expect(bad.stderr).to.match(/convert-to-tfjs: error: --model .*nope: no such file or directory/);
  });
});
