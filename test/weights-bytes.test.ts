// weights/safetensors-bytes.ts: safetensors files held in memory (what the browser bundle loads
// weights with) read the same tensors as the file reader, and malformed bytes get the same
// one-line errors naming the file.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BytesSafetensorsSource, openSafetensors } from '../weights/index.js';
import { TINY_LLAVA_DIR } from './helpers/fixture.js';

describe('weights: safetensors from bytes (BytesSafetensorsSource)', () => {
  const path = join(TINY_LLAVA_DIR, 'model.safetensors');
  const bytes = new Uint8Array(readFileSync(path));

  it('lists and reads every tensor of the fixture exactly as the file reader does', () => {
    const fromFile = openSafetensors(path);
    const fromBytes = new BytesSafetensorsSource('tiny', new Map([['model.safetensors', bytes]]));
    try {
      expect(fromBytes.names()).to.deep.equal(fromFile.names());
      for (const name of fromFile.names()) {
        expect(fromBytes.info(name)).to.deep.equal(fromFile.info(name));
        expect(Buffer.from(fromBytes.readRaw(name).bytes).equals(Buffer.from(fromFile.readRaw(name).bytes)), name).to.equal(true);
      }
    } finally {
      fromFile.close();
    }
  });

  it('refuses truncated, empty and oversized-header files, and a tensor in two shards, naming the file', () => {
    const make = (b: Uint8Array) => () => new BytesSafetensorsSource('m', new Map([['model.safetensors', b]]));
    expect(make(bytes.subarray(0, 5))).to.throw(/^model\.safetensors: truncated file: 5 bytes/);
    expect(make(bytes.subarray(0, bytes.length - 1))).to.throw(/^model\.safetensors: /);
    const zero = new Uint8Array(16);
    expect(make(zero)).to.throw(/^model\.safetensors: header length is 0/);
    const huge = new Uint8Array(16);
    new DataView(huge.buffer).setBigUint64(0, 2n ** 40n, true);
    expect(make(huge)).to.throw(/over the 104857600-byte \(100 MiB\) limit/);
    expect(() => new BytesSafetensorsSource('m', new Map())).to.throw(/^m: no safetensors file given$/);
    expect(() => new BytesSafetensorsSource('m', new Map([['a.safetensors', bytes], ['b.safetensors', bytes]]))).to.throw(/^m: tensor '.+' is in both 'a\.safetensors' and 'b\.safetensors'$/);
  });
});
