// Task v4 of the synthetic shapes data (issue 14): counting back, the relation question, the scene
// captions of the contrastive pretraining; expectations worked out by hand from hand-placed scenes.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { candidates, sceneCaption, sceneWithQuestions, TASK_V4_TYPES, vocabularyWords, type Scene, type ShapeItem } from '../src/train/shapes.js';
import { vocabulary } from '../src/train/vocab.js';
import { REPO_ROOT } from './helpers/fixture.js';

/** An item centred in cell (gx, gy) of the 8 x 8 grid of 14 px cells. */
const at = (shape: ShapeItem['shape'], colour: ShapeItem['colour'], gx: number, gy: number): ShapeItem => ({
  shape, colour, cx: gx * 14 + 7, cy: gy * 14 + 7, r: 5, quadrant: (gy < 4 ? 0 : 2) + (gx < 4 ? 0 : 1),
});
const scene = (items: ShapeItem[]): Scene => ({ items, image: { width: 112, height: 112, data: new Uint8Array(112 * 112 * 3) }, owner: new Uint8Array(112 * 112) });
const never = () => 0;

describe('shapes task v4: count, relation, captions', () => {
  it('relation: every ordered pair of unique objects in different columns, "left of" by cell column', () => {
    // red circle col 1, blue star col 5, green square col 1 (same column as the circle), yellow triangle col 3
    const s = scene([at('circle', 'red', 1, 1), at('star', 'blue', 5, 2), at('square', 'green', 1, 6), at('triangle', 'yellow', 3, 4)]);
    const qs = candidates(s, 'relation', never).map((q) => `${q.question} ${q.answer}`);
    expect(qs.sort()).to.deep.equal([
      'Is the blue star left of the green square? no',
      'Is the blue star left of the red circle? no',
      'Is the blue star left of the yellow triangle? no',
      'Is the green square left of the blue star? yes',
      'Is the green square left of the yellow triangle? yes',
      'Is the red circle left of the blue star? yes',
      'Is the red circle left of the yellow triangle? yes',
      'Is the yellow triangle left of the blue star? yes',
      'Is the yellow triangle left of the green square? no',
      'Is the yellow triangle left of the red circle? no',
    ]);
  });

  it('relation skips objects that are not unique by colour and shape; count counts each shape (zero included)', () => {
    const s = scene([at('circle', 'red', 1, 1), at('circle', 'red', 6, 1), at('star', 'blue', 3, 3)]);
    expect(candidates(s, 'relation', never)).to.deep.equal([]);
    const counts = candidates(s, 'count', never).map((q) => `${q.question} ${q.answer}`);
    expect(counts).to.deep.equal(['How many circles are there? two', 'How many squares are there? zero', 'How many triangles are there? zero', 'How many stars are there? one']);
  });

  it('caption: objects in raster order of their cells, then the counts in SHAPES order', () => {
    const s = scene([at('star', 'blue', 5, 2), at('circle', 'red', 1, 1), at('circle', 'green', 0, 6)]);
    expect(sceneCaption(s)).to.equal('red circle top-left blue star top-right green circle bottom-left two circles one star');
  });

  it('the vocabulary keeps models/default\'s 50 ids and adds "left", "of"; every v4 question and caption is known words', () => {
    const shipped = JSON.parse(readFileSync(join(REPO_ROOT, 'models/default/tokenizer.json'), 'utf8')).model.vocab as Record<string, number>;
    const vocab = vocabulary();
    for (const [w, id] of Object.entries(shipped)) expect(vocab[w], w).to.equal(id);
    expect(vocab.left).to.equal(50);
    expect(vocab.of).to.equal(51);
    const words = new Set(vocabularyWords());
    const seen = new Map<string, number>();
    for (let i = 0; i < 300; i++) {
      const { scene: sc, questions } = sceneWithQuestions('train', i, 4, 4, TASK_V4_TYPES);
      const text = [sceneCaption(sc), ...questions.flatMap((q) => [q.question, q.answer])].join(' ').toLowerCase().replace(/\?/g, ' ');
      for (const w of text.split(/\s+/).filter(Boolean)) expect(words.has(w), w).to.equal(true);
      for (const q of questions) seen.set(q.type, (seen.get(q.type) ?? 0) + 1);
    }
    // types are drawn uniformly: 1200 questions, 200 expected each (relation needs two unique objects, so a little less)
    for (const t of TASK_V4_TYPES) expect(seen.get(t) ?? 0, t).to.be.within(140, 260);
  });
});
