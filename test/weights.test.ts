// Safetensors reader on the tiny-llava fixture and on hand-built malformed files; naming schemes;
// folder detection; missing-tensor and readChecked messages.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { canonicalNameMap, openWeights, readChecked, readRaw, SafetensorsFile, toCanonicalName, type WeightSource } from '../weights/index.js';
import { TINY_LLAVA_DIR } from './helpers/fixture.js';
import { f32le, safetensorsBytes, tempDir, writeFile } from './helpers/weights-files.js';

interface FixtureConfig {
  text_config: { hidden_size: number; intermediate_size: number; num_hidden_layers: number; num_attention_heads: number; num_key_value_heads: number; head_dim: number; vocab_size: number };
  vision_config: { hidden_size: number; intermediate_size: number; num_hidden_layers: number; num_channels: number; image_size: number; patch_size: number };
}

/** Every tensor the fixture should hold, with its shape, derived from config.json alone. */
function expectedShapes(cfg: FixtureConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const v = cfg.vision_config;
  const t = cfg.text_config;
  const vp = 'vision_tower.vision_model.';
  const patches = (v.image_size / v.patch_size) ** 2;
  m.set(`${vp}embeddings.class_embedding`, [v.hidden_size]);
  m.set(`${vp}embeddings.patch_embedding.weight`, [v.hidden_size, v.num_channels, v.patch_size, v.patch_size]);
  m.set(`${vp}embeddings.position_embedding.weight`, [patches + 1, v.hidden_size]);
  for (const ln of ['pre_layrnorm', 'post_layernorm']) for (const p of ['weight', 'bias']) m.set(`${vp}${ln}.${p}`, [v.hidden_size]);
  for (let i = 0; i < v.num_hidden_layers; i++) {
    const l = `${vp}encoder.layers.${i}.`;
    for (const ln of ['layer_norm1', 'layer_norm2']) for (const p of ['weight', 'bias']) m.set(`${l}${ln}.${p}`, [v.hidden_size]);
    for (const proj of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) {
      m.set(`${l}self_attn.${proj}.weight`, [v.hidden_size, v.hidden_size]);
      m.set(`${l}self_attn.${proj}.bias`, [v.hidden_size]);
    }
    m.set(`${l}mlp.fc1.weight`, [v.intermediate_size, v.hidden_size]);
    m.set(`${l}mlp.fc1.bias`, [v.intermediate_size]);
    m.set(`${l}mlp.fc2.weight`, [v.hidden_size, v.intermediate_size]);
    m.set(`${l}mlp.fc2.bias`, [v.hidden_size]);
  }
  m.set('multi_modal_projector.linear_1.weight', [t.hidden_size, v.hidden_size]);
  m.set('multi_modal_projector.linear_1.bias', [t.hidden_size]);
  m.set('multi_modal_projector.linear_2.weight', [t.hidden_size, t.hidden_size]);
  m.set('multi_modal_projector.linear_2.bias', [t.hidden_size]);
  const lp = 'language_model.model.';
  m.set(`${lp}embed_tokens.weight`, [t.vocab_size, t.hidden_size]);
  m.set(`${lp}norm.weight`, [t.hidden_size]);
  m.set('language_model.lm_head.weight', [t.vocab_size, t.hidden_size]);
  for (let i = 0; i < t.num_hidden_layers; i++) {
    const l = `${lp}layers.${i}.`;
    m.set(`${l}input_layernorm.weight`, [t.hidden_size]);
    m.set(`${l}post_attention_layernorm.weight`, [t.hidden_size]);
    m.set(`${l}self_attn.q_proj.weight`, [t.num_attention_heads * t.head_dim, t.hidden_size]);
    m.set(`${l}self_attn.k_proj.weight`, [t.num_key_value_heads * t.head_dim, t.hidden_size]);
    m.set(`${l}self_attn.v_proj.weight`, [t.num_key_value_heads * t.head_dim, t.hidden_size]);
    m.set(`${l}self_attn.o_proj.weight`, [t.hidden_size, t.num_attention_heads * t.head_dim]);
    m.set(`${l}mlp.gate_proj.weight`, [t.intermediate_size, t.hidden_size]);
    m.set(`${l}mlp.up_proj.weight`, [t.intermediate_size, t.hidden_size]);
    m.set(`${l}mlp.down_proj.weight`, [t.hidden_size, t.intermediate_size]);
  }
  return m;
}

describe('weights: safetensors fixture', () => {
  const cfg = JSON.parse(readFileSync(join(TINY_LLAVA_DIR, 'config.json'), 'utf8')) as FixtureConfig;
  let source: WeightSource;
  before(() => { source = openWeights(TINY_LLAVA_DIR); });
  after(() => source.close());

  it('holds exactly the tensors config.json implies, with their shapes', () => {
    const expected = expectedShapes(cfg);
    expect(source.names()).to.deep.equal([...expected.keys()].sort());
    expect(source.names()).to.have.length(80);
    for (const [name, shape] of expected) {
      expect(source.info(name), name).to.deep.equal({ name, dtype: 'F32', shape });
    }
    expect(source.info('language_model.model.embed_tokens.weight')?.shape).to.deep.equal([32064, 64]);
    expect(source.info('vision_tower.vision_model.embeddings.patch_embedding.weight')?.shape).to.deep.equal([64, 3, 14, 14]);
  });

  it('reads every tensor as the bytes at its header offsets (header parsed here by hand)', () => {
    const file = readFileSync(join(TINY_LLAVA_DIR, 'model.safetensors')); // 17 MB fixture: fine in a test
    const n = Number(file.readBigUInt64LE(0));
    const header = JSON.parse(file.subarray(8, 8 + n).toString('utf8')) as Record<string, { data_offsets: [number, number] }>;
    for (const name of source.names()) {
      const [b, e] = header[name].data_offsets;
      const want = file.subarray(8 + n + b, 8 + n + e);
      const raw = readRaw(source, name);
      expect(raw.dtype).to.equal('F32');
      expect(Buffer.from(raw.bytes).equals(want), name).to.equal(true);
      const f = source.readFloat32(name);
      expect(Buffer.from(f.buffer, f.byteOffset, f.byteLength).equals(want), name).to.equal(true);
    }
  });

  it('exposes the low-level file: header entries, metadata, raw bytes', () => {
    const st = SafetensorsFile.open(join(TINY_LLAVA_DIR, 'model.safetensors'));
    try {
      expect(st.names()).to.have.length(80);
      const e = st.entry('language_model.model.norm.weight');
      expect(e).to.include({ dtype: 'F32' });
      expect(e!.end - e!.begin).to.equal(64 * 4);
      expect(st.allEntries().map((x) => x.name)).to.deep.equal(st.names());
      expect(st.readBytes('language_model.model.norm.weight')).to.have.length(256);
      expect(st.readFloat32('language_model.model.norm.weight')).to.have.length(64);
      expect(() => st.readBytes('nope')).to.throw(/no tensor 'nope'/);
    } finally {
      st.close();
    }
  });

  it('names a missing tensor, and readChecked names both shapes and the reason', () => {
    expect(() => source.readFloat32('language_model.model.layers.9.mlp.up_proj.weight')).to.throw(
      `${source.origin}: tensor 'language_model.model.layers.9.mlp.up_proj.weight' is missing (looked for it under both naming schemes)`);
    expect(() => readChecked(source, 'language_model.model.embed_tokens.weight', [32000, 64], 'config.json (vocab_size=32000)')).to.throw(
      `${source.origin}: tensor 'language_model.model.embed_tokens.weight' has shape [32064,64] but config.json (vocab_size=32000) implies [32000,64]`);
    expect(() => readChecked(source, 'nope.weight', [1], 'x')).to.throw(/tensor 'nope.weight' is missing/);
    expect(readChecked(source, 'language_model.model.norm.weight', [64], 'config.json (hidden_size=64)')).to.have.length(64);
  });
});

describe('weights: malformed safetensors are rejected with a clear error', () => {
  const tmp = tempDir();
  after(() => tmp.cleanup());
  const w4 = { dtype: 'F32', shape: [4], data_offsets: [0, 16] };
  const cases: Array<{ title: string; bytes: () => Buffer; error: RegExp }> = [
    { title: 'truncated data', bytes: () => safetensorsBytes({ w: w4 }, f32le([1, 2])), error: /truncated.*'w'.*\[0, 16\].*past the end/ },
    { title: 'file shorter than 8 bytes', bytes: () => Buffer.from([1, 0, 0]), error: /truncated file: 3 bytes/ },
    {
      title: 'overlapping offsets',
      bytes: () => safetensorsBytes({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, f32le([1, 2, 3])),
      error: /tensors 'a' \[0, 8\] and 'b' \[4, 12\] overlap/,
    },
    { title: 'offset past the end', bytes: () => safetensorsBytes({ w: { dtype: 'F32', shape: [1], data_offsets: [1000, 1004] } }, f32le([1])), error: /'w' data_offsets \[1000, 1004\] point past the end of the data section \(4 bytes/ },
    { title: 'absurd header length 2^40', bytes: () => safetensorsBytes({ w: w4 }, f32le([1, 2, 3, 4]), 2n ** 40n), error: /header length field is over the 104857600-byte \(100 MiB\) limit/ },
    { title: 'header length 2^64-1', bytes: () => safetensorsBytes({}, undefined, 2n ** 64n - 1n), error: /header length field is over the/ },
    { title: 'header length bigger than the file', bytes: () => safetensorsBytes({ w: w4 }, f32le([1, 2, 3, 4]), 5000n), error: /header length field exceeds the \d+ bytes after the 8-byte length/ },
    { title: 'header length 0', bytes: () => safetensorsBytes('', f32le([1])), error: /header length is 0/ },
    { title: 'non-JSON header', bytes: () => safetensorsBytes('{"w": {"dtype": "F32",', f32le([1])), error: /header: not valid JSON/ },
    { title: 'header not valid UTF-8', bytes: () => Buffer.concat([Buffer.from([2, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe])]), error: /header is not valid UTF-8/ },
    { title: 'header an array', bytes: () => safetensorsBytes([1, 2, 3]), error: /header is not a JSON object \(got an array\)/ },
    { title: 'header a number', bytes: () => safetensorsBytes('42'), error: /header is not a JSON object \(got a number\)/ },
    { title: 'unknown dtype', bytes: () => safetensorsBytes({ w: { ...w4, dtype: 'F33' } }, f32le([1, 2, 3, 4])), error: /unknown dtype 'F33' for tensor 'w'/ },
    { title: 'unsupported dtype I8', bytes: () => safetensorsBytes({ w: { dtype: 'I8', shape: [4], data_offsets: [0, 4] } }, f32le([1])), error: /unsupported dtype 'I8' for tensor 'w' \(supported: F32, F16, BF16\)/ },
    { title: 'unsupported dtype F64', bytes: () => safetensorsBytes({ w: { dtype: 'F64', shape: [2], data_offsets: [0, 16] } }, f32le([1, 2, 3, 4])), error: /unsupported dtype 'F64'/ },
    { title: 'missing dtype', bytes: () => safetensorsBytes({ w: { shape: [4], data_offsets: [0, 16] } }, f32le([1, 2, 3, 4])), error: /tensor 'w': dtype is missing/ },
    {
      title: 'shape/bytes mismatch',
      bytes: () => safetensorsBytes({ w: { dtype: 'F16', shape: [3, 2], data_offsets: [0, 8] } }, f32le([1, 2])),
      error: /tensor 'w': shape \[3,2\] with dtype F16 needs 12 bytes but data_offsets \[0, 8\] hold 8 \(shape\/bytes mismatch\)/,
    },
    { title: 'negative shape', bytes: () => safetensorsBytes({ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, f32le([1])), error: /header: w\.shape\.0 must be a non-negative integer/ },
    { title: 'non-integer shape', bytes: () => safetensorsBytes({ w: { dtype: 'F32', shape: [1.5], data_offsets: [0, 4] } }, f32le([1])), error: /header: w\.shape\.0 must be a non-negative integer/ },
    { title: 'string shape', bytes: () => safetensorsBytes({ w: { dtype: 'F32', shape: ['1'], data_offsets: [0, 4] } }, f32le([1])), error: /tensor 'w': invalid shape/ },
    { title: 'offsets begin > end', bytes: () => safetensorsBytes({ w: { dtype: 'F32', shape: [0], data_offsets: [4, 0] } }, f32le([1])), error: /begin > end/ },
    { title: 'offsets not integers', bytes: () => safetensorsBytes({ w: { dtype: 'F32', shape: [1], data_offsets: [0, '4'] } }, f32le([1])), error: /tensor 'w': invalid data_offsets/ },
    {
      title: 'hole in the data',
      bytes: () => safetensorsBytes({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [12, 20] } }, f32le([1, 2, 3, 4, 5])),
      error: /hole in the data section: bytes \[8, 12\) belong to no tensor \(between 'a' and 'b'\)/,
    },
    { title: 'unindexed bytes after the last tensor', bytes: () => safetensorsBytes({ w: w4 }, f32le([1, 2, 3, 4, 5])), error: /hole in the data section: 4 bytes after the last tensor/ },
    { title: '__metadata__ not string->string', bytes: () => safetensorsBytes({ __metadata__: { format: 1 }, w: w4 }, f32le([1, 2, 3, 4])), error: /__metadata__ value of 'format'/ },
    { title: 'offset written 25600.0', bytes: () => safetensorsBytes('{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16.0]}}', f32le([1, 2, 3, 4])), error: /w\.data_offsets\.1 must be a non-negative integer/ },
    { title: 'offset written 1.6e1', bytes: () => safetensorsBytes('{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,1.6e1]}}', f32le([1, 2, 3, 4])), error: /w\.data_offsets\.1 must be a non-negative integer/ },
    { title: 'offset written -0', bytes: () => safetensorsBytes('{"w":{"dtype":"F32","shape":[4],"data_offsets":[-0,16]}}', f32le([1, 2, 3, 4])), error: /w\.data_offsets\.0 must be a non-negative integer/ },
    { title: 'shape written 4.0', bytes: () => safetensorsBytes('{"w":{"dtype":"F32","shape":[4.0],"data_offsets":[0,16]}}', f32le([1, 2, 3, 4])), error: /w\.shape\.0 must be a non-negative integer/ },
    { title: 'duplicate tensor name', bytes: () => safetensorsBytes('{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', f32le([1, 2, 3, 4])), error: /duplicate key 'w'/ },
    { title: 'duplicate field in an entry', bytes: () => safetensorsBytes('{"w":{"dtype":"F32","shape":[4],"shape":[2],"data_offsets":[0,16]}}', f32le([1, 2, 3, 4])), error: /duplicate key 'w\.shape'/ },
    { title: 'BOM before the header', bytes: () => safetensorsBytes('\ufeff{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', f32le([1, 2, 3, 4])), error: /byte order mark/ },
    { title: 'JSON errors do not quote the header', bytes: () => safetensorsBytes('root:x:0:0:root', f32le([1])), error: /^(?!.*root:x).*not valid JSON \(syntax error( at position \d+)?\)$/ },
    { title: 'bytes of a text file as the header length', bytes: () => Buffer.from('root:x:0:0:root:/root:/bin/bash\n'), error: /^(?!.*3475222254926655346).*header length field is over/ },
    { title: 'entry not an object', bytes: () => safetensorsBytes({ w: [1] }), error: /tensor 'w': header entry is an array/ },
  ];
  for (const c of cases) {
    it(c.title, () => {
      const path = writeFile(tmp.dir, `${c.title.replace(/\W+/g, '_')}.safetensors`, c.bytes());
      let message = '';
      try {
        SafetensorsFile.open(path).close();
      } catch (e) {
        message = (e as Error).message;
      }
      expect(message, 'no error thrown').to.not.equal('');
      expect(message.startsWith(`${path}: `), message).to.equal(true);
      expect(message).to.match(c.error);
    });
  }

  it('accepts a valid hand-built file with metadata, padding and a zero-size tensor', () => {
    const header = JSON.stringify({ __metadata__: { format: 'pt' }, e: { dtype: 'F32', shape: [0, 3], data_offsets: [8, 8] }, a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } });
    const padded = header + ' '.repeat((8 - (header.length % 8)) % 8); // the spec allows trailing spaces
    const path = writeFile(tmp.dir, 'valid.safetensors', safetensorsBytes(padded, f32le([1.5, -2])));
    const st = SafetensorsFile.open(path);
    expect(st.metadata).to.deep.equal({ format: 'pt' });
    expect(Array.from(st.readFloat32('a'))).to.deep.equal([1.5, -2]);
    expect(st.readFloat32('e')).to.have.length(0);
    st.close();
  });
});

describe('weights: Hugging Face naming schemes', () => {
  const tmp = tempDir();
  after(() => tmp.cleanup());

  it('maps the new scheme (transformers >= 4.52) to canonical names', () => {
    expect(toCanonicalName('model.language_model.layers.0.self_attn.q_proj.weight')).to.equal('language_model.model.layers.0.self_attn.q_proj.weight');
    expect(toCanonicalName('model.vision_tower.vision_model.post_layernorm.bias')).to.equal('vision_tower.vision_model.post_layernorm.bias');
    expect(toCanonicalName('model.multi_modal_projector.linear_2.weight')).to.equal('multi_modal_projector.linear_2.weight');
    expect(toCanonicalName('lm_head.weight')).to.equal('language_model.lm_head.weight');
    expect(toCanonicalName('language_model.model.norm.weight')).to.equal('language_model.model.norm.weight');
    expect(toCanonicalName('image_newline')).to.equal('image_newline');
  });

  it('reads a new-scheme file under canonical names (and either name)', () => {
    const header = {
      'model.language_model.embed_tokens.weight': { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] },
      'model.vision_tower.vision_model.post_layernorm.weight': { dtype: 'F32', shape: [2], data_offsets: [16, 24] },
      'model.multi_modal_projector.linear_1.bias': { dtype: 'F32', shape: [1], data_offsets: [24, 28] },
      'lm_head.weight': { dtype: 'F32', shape: [1, 2], data_offsets: [28, 36] },
      'some_extra.buffer': { dtype: 'F32', shape: [], data_offsets: [36, 40] },
    };
    writeFile(tmp.dir, 'new-scheme.safetensors', safetensorsBytes(header, f32le([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])));
    const src = openWeights(join(tmp.dir, 'new-scheme.safetensors'));
    expect(src.names()).to.deep.equal([
      'language_model.lm_head.weight', 'language_model.model.embed_tokens.weight', 'multi_modal_projector.linear_1.bias',
      'some_extra.buffer', 'vision_tower.vision_model.post_layernorm.weight',
    ]);
    expect(Array.from(src.readFloat32('language_model.lm_head.weight'))).to.deep.equal([8, 9]);
    expect(Array.from(src.readFloat32('lm_head.weight'))).to.deep.equal([8, 9]);
    expect(Array.from(src.readFloat32('vision_tower.vision_model.post_layernorm.weight'))).to.deep.equal([5, 6]);
    expect(src.info('model.language_model.embed_tokens.weight')).to.deep.equal({ name: 'language_model.model.embed_tokens.weight', dtype: 'F32', shape: [2, 2] });
    expect(src.info('some_extra.buffer')?.shape).to.deep.equal([]);
    src.close();
  });

  it('rejects two stored names that map to one canonical name', () => {
    const header = {
      'lm_head.weight': { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
      'language_model.lm_head.weight': { dtype: 'F32', shape: [1], data_offsets: [4, 8] },
    };
    const path = writeFile(tmp.dir, 'collision.safetensors', safetensorsBytes(header, f32le([1, 2])));
    expect(() => openWeights(path)).to.throw(/both map to the canonical name 'language_model.lm_head.weight'/);
    expect(() => canonicalNameMap(['model.vision_tower.x', 'vision_tower.x'], 'o')).to.throw(/^o: tensors 'model.vision_tower.x' and 'vision_tower.x'/);
  });
});

describe('weights: openWeights folder detection', () => {
  const tmp = tempDir();
  after(() => tmp.cleanup());

  it('lists what it looked for in an empty folder', () => {
    expect(() => openWeights(tmp.dir)).to.throw(/no weights found: looked for model.safetensors.index.json, model.safetensors, a single \*.safetensors file and model.json/);
    expect(() => openWeights(join(tmp.dir, 'absent'))).to.throw(/absent: no such file or directory/);
  });

  it('opens the only *.safetensors file, refuses to guess among several', () => {
    writeFile(tmp.dir, 'weights-a.safetensors', safetensorsBytes({ x: { dtype: 'BF16', shape: [1], data_offsets: [0, 2] } }, Buffer.from([0x80, 0x3f])));
    const src = openWeights(tmp.dir);
    expect(src.origin).to.match(/weights-a\.safetensors$/);
    expect(Array.from(src.readFloat32('x'))).to.deep.equal([1]);
    expect(readRaw(src, 'x')).to.deep.include({ dtype: 'BF16', shape: [1] });
    src.close();
    writeFile(tmp.dir, 'weights-b.safetensors', safetensorsBytes({}));
    expect(() => openWeights(tmp.dir)).to.throw(/2 .safetensors files \(weights-a.safetensors, weights-b.safetensors\) but no model.safetensors.index.json/);
  });
});
