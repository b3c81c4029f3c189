// A short soak (scripts/soak.ts; `npm run soak` runs 200 calls): consecutive generate calls on the
// embedded model alternating merge presets and images keep tf.memory().numTensors constant and
// RSS flat, repeat every answer, and two concurrent calls each give their answer alone.
import { expect } from 'chai';
import { soak } from '../scripts/soak.js';

describe('soak (20 calls on the embedded model)', function () {
  this.timeout(120000);
  it('numTensors constant, RSS flat, identical answers for identical inputs, concurrent calls correct', async () => {
    const r = await soak(20);
    expect(r.inputs).to.equal(16);
    expect(r.mismatches).to.deep.equal([]);
    expect(r.tensorDrift).to.deep.equal([]);
    expect(r.end.numTensors).to.equal(r.start.numTensors);
    expect(r.end.rssMb - r.warm.rssMb, 'RSS growth after every input ran once').to.be.below(32);
    expect(r.concurrent.ok, r.concurrent.detail).to.equal(true);
  });
});
