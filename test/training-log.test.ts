// scripts/training-log.ts: the validation points of train.ts logs, for the training-curve figure.
import { expect } from 'chai';
import { validationPoints } from '../scripts/training-log.js';

const first = [
  'training 850,304 parameters on wasm (2 threads): 16 images x 3 questions per step, lr 0.001',
  'step 100: loss 1.2 (last 1.1), 0.40 steps/s, 2,880 questions seen, lr 1e-3',
  'validation @ 100: accuracy 0.347 {"count":"0.61","colour":"0.20"}',
  'vision validation @ 100: shape patches (colour/shape/quadrant) 63/47/48 of 64, background 1978/1984',
  'validation @ 200: accuracy 0.350 {"count":"0.61","colour":"0.33"}',
].join('\n');
const resumed = ['resumed from ckpt at step 150 (best validation 0.347)', 'validation @ 200: accuracy 0.400 {"count":"0.70","colour":"0.40"}', 'validation @ 300: accuracy 0.5 {"count":"0.71"}'].join('\n');

describe('training logs (scripts/training-log.ts)', () => {
  it('reads the validation lines by step, numbers as printed, a resumed overlap taking the later log', () => {
    expect(validationPoints([{ name: 'a.log', text: first }, { name: 'b.log', text: resumed }])).to.deep.equal([
      { step: 100, accuracy: 0.347, byType: { count: 0.61, colour: 0.2 } },
      { step: 200, accuracy: 0.4, byType: { count: 0.7, colour: 0.4 } },
      { step: 300, accuracy: 0.5, byType: { count: 0.71 } },
    ]);
  });

  it('a garbled validation line or an accuracy outside [0, 1] is an error naming the file and line', () => {
    expect(() => validationPoints([{ name: 'x.log', text: 'step 1\nvalidation @ 100: accuracy {' }])).to.throw("x.log:2: not a validation line: 'validation @ 100: accuracy {'");
    expect(() => validationPoints([{ name: 'y.log', text: 'validation @ 5: accuracy 0.5 {"count":"1.5"}' }])).to.throw("y.log:1: count accuracy '1.5' is not in [0, 1]");
  });
});
