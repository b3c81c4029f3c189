// scripts/eval-table.ts: the eval's intervals and its summary table.
import { expect } from 'chai';
import { budgetTable, wilson, type EvalRow } from '../scripts/eval-table.js';

function row(rule: string, budget: string, imageTokens: number, correct: number): EvalRow {
  const questions = 100;
  return { rule, budget, imageTokens, visionTokens: imageTokens, accuracy: correct / questions, ci95: wilson(correct, questions), correct, questions, imagesPerSecond: 1, visionMsPerImage: 1, visionSpeedup: 1, tokenBlocksRatio: 1, byType: {}, merge: {} };
}

describe('eval table (scripts/eval-table.ts)', () => {
  it('Wilson intervals match the textbook values (50/100: 40.38-59.62 %; 0/10: 0-27.75 %, i.e. 1.96² / (10 + 1.96²))', () => {
    const [lo, hi] = wilson(50, 100);
    expect(lo).to.be.closeTo(0.40383, 1e-5);
    expect(hi).to.be.closeTo(0.59617, 1e-5);
    const [zero, top] = wilson(0, 10);
    expect(zero).to.equal(0);
    expect(top).to.be.closeTo(3.8416 / 13.8416, 1e-9);
  });

  it('the summary has one column per budget, the unmerged row once, and a token count where a rule ends elsewhere', () => {
    const rows = [row('none', 'all', 64, 94), row('illava', '1/2', 32, 50), row('tome', '1/2', 32, 90), row('fastv', '1/2', 32, 93), row('illava', '1/9', 7, 40), row('tome', '1/9', 16, 88), row('fastv', '1/9', 7, 85)];
    expect(budgetTable(rows).split('\n')).to.deep.equal([
      '| rule | 1/2 (32) | 1/9 (7) |',
      '|---|---|---|',
      '| none (64) | 94.0 [87.5, 97.2] | |',
      '| illava | 50.0 [40.4, 59.6] | 40.0 [30.9, 49.8] |',
      '| tome | 90.0 [82.6, 94.5] | 88.0 [80.2, 93.0] (16) |',
      '| fastv | 93.0 [86.3, 96.6] | 85.0 [76.7, 90.7] |',
    ]);
  });
});
