// A short seeded run of the fuzz harness (scripts/fuzz.ts; `npm run fuzz` runs it at length):
// every mutated input must end as a clean one-line error or be accepted, never crash, hang, blow
// up memory or read a file outside its model folder.
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { failed, fuzz, runCase, table } from '../scripts/fuzz.js';
import { TINY_LLAVA_DIR } from './helpers/fixture.js';

describe('fuzz harness (short seeded run)', function () {
  this.timeout(300000);
  it('10 seeded cases: 0 crashes, 0 hangs, 0 memory blow-ups, 0 reads outside the model folder', () => {
    const results = fuzz(10, 7, 30000, 2048);
    const bad = results.filter(failed);
    expect(bad, `${table(results)}\n${bad.map((r) => `${r.outcome} ${r.kind} ${r.what}: ${r.detail} ${r.outside.join(', ')}`).join('\n')}`).to.deep.equal([]);
    expect(results).to.have.length(10);
    expect(new Set(results.map((r) => r.kind)).size).to.be.above(3);
  });

  it('the child sees every file opened outside the folder it is allowed', () => {
    // The model folder itself is not allowed here: its weights, config and image count as outside.
    const elsewhere = mkdtempSync(join(tmpdir(), 'illava-fuzz-allow-'));
    try {
      const r = runCase({ kind: 'probe', what: 'allowed folder is elsewhere', dir: elsewhere, args: ['info', '--model', TINY_LLAVA_DIR] }, 30000, 2048);
      expect(r.outcome, r.detail).to.equal('accepted');
      expect(r.outside).to.include(join(TINY_LLAVA_DIR, 'config.json'));
      expect(r.outside).to.include(join(TINY_LLAVA_DIR, 'model.safetensors'));
    } finally {
      rmSync(elsewhere, { recursive: true, force: true });
    }
  });
});
