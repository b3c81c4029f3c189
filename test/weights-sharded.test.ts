// Sharded safetensors: the fixture split by hand into two shards + model.safetensors.index.json.
import { expect } from 'chai';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openWeights, SafetensorsFile, type WeightSource } from '../weights/index.js';
import { TINY_LLAVA_DIR } from './helpers/fixture.js';
import { safetensorsBytes, tempDir } from './helpers/weights-files.js';

const SHARDS = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];

/** The 4 prefix renames of transformers >= 4.52, spelled out here rather than taken from names.ts. */
function newScheme(name: string): string {
  if (name.startsWith('language_model.model.')) return `model.language_model.${name.slice('language_model.model.'.length)}`;
  if (name === 'language_model.lm_head.weight') return 'lm_head.weight';
  if (name.startsWith('vision_tower.')) return `model.${name}`;
  if (name.startsWith('multi_modal_projector.')) return `model.${name}`;
  return name;
}

/**
 * Writes the fixture's tensors into two shards (even / odd positions in file order) with a
 * hand-built header each, and returns the weight_map. Only the data comes from the reader.
 */
function writeShardedCopy(dir: string, rename: (n: string) => string): Record<string, string> {
  mkdirSync(dir, { recursive: true });
  const st = SafetensorsFile.open(join(TINY_LLAVA_DIR, 'model.safetensors'));
  const weightMap: Record<string, string> = {};
  try {
    const names = st.names();
    SHARDS.forEach((shard, s) => {
      const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
      const chunks: Uint8Array[] = [];
      let offset = 0;
      names.filter((_, i) => i % 2 === s).forEach((name) => {
        const bytes = st.readBytes(name);
        const e = st.entry(name)!;
        header[rename(name)] = { dtype: e.dtype, shape: e.shape, data_offsets: [offset, offset + bytes.length] };
        offset += bytes.length;
        chunks.push(bytes);
        weightMap[rename(name)] = shard;
      });
      writeFileSync(join(dir, shard), safetensorsBytes(header, Buffer.concat(chunks)));
    });
  } finally {
    st.close();
  }
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }, null, 2));
  return weightMap;
}

function expectSameTensors(a: WeightSource, b: WeightSource): void {
  expect(a.names()).to.deep.equal(b.names());
  for (const name of a.names()) {
    expect(a.info(name), name).to.deep.equal(b.info(name));
    const x = a.readFloat32(name);
    const y = b.readFloat32(name);
    expect(Buffer.from(x.buffer).equals(Buffer.from(y.buffer)), name).to.equal(true);
  }
}

describe('weights: sharded safetensors', () => {
  const tmp = tempDir();
  let single: WeightSource;
  before(() => { single = openWeights(TINY_LLAVA_DIR); });
  after(() => { single.close(); tmp.cleanup(); });

  it('reads every tensor identical to the single-file version (old and new naming)', () => {
    for (const [sub, rename] of [['old', (n: string) => n], ['new', newScheme]] as const) {
      const dir = join(tmp.dir, sub);
      writeShardedCopy(dir, rename);
      const sharded = openWeights(dir);
      try {
        expect(sharded.origin).to.equal(dir);
        expectSameTensors(sharded, single);
      } finally {
        sharded.close();
      }
    }
  });

  it('reports missing shard files', () => {
    const dir = join(tmp.dir, 'missing-shard');
    writeShardedCopy(dir, (n) => n);
    rmSync(join(dir, SHARDS[1]));
    expect(() => openWeights(dir)).to.throw(/model.safetensors.index.json: 1 of 2 shard files listed in weight_map are missing from .*: model-00002-of-00002.safetensors/);
  });

  it('reports a tensor the index puts in a shard that lacks it', () => {
    const dir = join(tmp.dir, 'absent-tensor');
    const weightMap = writeShardedCopy(dir, (n) => n);
    weightMap['language_model.model.layers.7.mlp.up_proj.weight'] = SHARDS[0];
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: weightMap }));
    expect(() => openWeights(dir)).to.throw(/weight_map puts tensor 'language_model.model.layers.7.mlp.up_proj.weight' in 'model-00001-of-00002.safetensors', but that shard has no such tensor/);
  });

  it('rejects a malformed index', () => {
    const dir = join(tmp.dir, 'bad-index');
    mkdirSync(dir);
    const index = join(dir, 'model.safetensors.index.json');
    writeFileSync(index, '{"weight_map": ');
    expect(() => openWeights(dir)).to.throw(/model.safetensors.index.json: not valid JSON/);
    writeFileSync(index, JSON.stringify({ weight_map: ['a'] }));
    expect(() => openWeights(dir)).to.throw(/'weight_map' is missing or not an object/);
    writeFileSync(index, JSON.stringify({ weight_map: { a: 3 } }));
    expect(() => openWeights(dir)).to.throw(/weight_map entry 'a' is 3/);
    writeFileSync(index, JSON.stringify({ weight_map: { a: '../x.safetensors' } }));
    expect(() => openWeights(dir)).to.throw(/outside the model folder/);
  });
});
