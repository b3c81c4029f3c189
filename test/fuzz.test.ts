// A short seeded run of the fuzz harness (scripts/fuzz.ts; `npm run fuzz` runs it at length):
// every mutated input must end as a clean one-line error or be accepted, never crash, hang or
// blow up memory.
import { expect } from 'chai';
import { fuzz, table } from '../scripts/fuzz.js';

describe('fuzz harness (short seeded run)', function () {
  this.timeout(300000);
  it('10 seeded cases: 0 crashes, 0 hangs, 0 memory blow-ups', () => {
    const results = fuzz(10, 7, 30000, 2048);
    const bad = results.filter((r) => r.outcome !== 'clean' && r.outcome !== 'accepted');
    expect(bad, `${table(results)}\n${bad.map((r) => `${r.outcome} ${r.kind} ${r.what}: ${r.detail}`).join('\n')}`).to.deep.equal([]);
    expect(results).to.have.length(10);
  });
});
