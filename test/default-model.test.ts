// The shipped default model (models/default, trained on the synthetic shapes task by
// scripts/train.ts) loads with LlavaModel.fromPretrained and answers questions about generated
// images it never saw (validation split indices past those used to pick the checkpoint).
import { expect } from 'chai';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { LlavaModel } from '../src/llava.js';
import { examples } from '../src/train/shapes.js';
import { REPO_ROOT } from './helpers/fixture.js';

const DIR = join(REPO_ROOT, 'models/default');

describe('default model (models/default)', function () {
  this.timeout(60000);
  let model: LlavaModel;

  before(async () => {
    model = await LlavaModel.fromPretrained(DIR, { backend: 'wasm' });
  });

  after(() => model?.dispose());

  it('is a small LLaVA-1.5 folder under 20 MB', () => {
    const bytes = statSync(join(DIR, 'model.safetensors')).size;
    expect(bytes).to.be.lessThan(20 * 1024 * 1024);
    expect(model.config.vision.imageSize).to.equal(112);
    expect(model.config.vision.imageSize / model.config.vision.patchSize).to.equal(8);
  });

  it('answers the sample image question', async () => {
    const sample = JSON.parse(readFileSync(join(DIR, 'sample.json'), 'utf8')) as { image: string; prompt: string; answer: string };
    const out = await model.generate({ prompt: sample.prompt, images: [join(DIR, sample.image)], maxNewTokens: 4 });
    expect(out.text.trim()).to.equal(sample.answer);
    expect(out.finishReason).to.equal('stop');
    expect(out.sequenceLength.input).to.equal(out.promptIds.length - 1 + 64);
  });

  // The shipped model reaches 95% on validation and 94.2% on test (see README). On these 20 fixed
  // validation images (indices 5000-5019, never used to pick the checkpoint; the truth comes from
  // the generator) it answers 19 right, all checked against the generator's answers; those must
  // stay right, and the total must stay at 19 or more.
  const VERIFIED_RIGHT = new Set([0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);

  it('answers fixed generated questions: the 19 verified ones exactly, at least 19 of 20 in all', async () => {
    const data = examples('val', 20, 5000);
    let right = 0;
    const wrong: string[] = [];
    for (const [i, e] of data.entries()) {
      const out = await model.generate({ prompt: e.question, images: [e.scene.image], maxNewTokens: 3 });
      const answer = out.text.trim();
      if (answer === e.answer) right++;
      else wrong.push(`${e.question} -> '${answer}' (expected ${e.answer})`);
      if (VERIFIED_RIGHT.has(i)) expect(answer, `example ${i}: ${e.question}`).to.equal(e.answer);
    }
    expect(right, wrong.join('; ')).to.be.at.least(19);
  });

  it('runs with the iLLaVA preset (64 -> 32 tokens in the vision stage, then the language stage)', async () => {
    const sample = JSON.parse(readFileSync(join(DIR, 'sample.json'), 'utf8')) as { image: string; prompt: string; answer: string };
    const out = await model.generate({ prompt: sample.prompt, images: [join(DIR, sample.image)], maxNewTokens: 4, merge: 'illava' });
    expect(out.merges[0].patches).to.equal(64);
    expect(out.merges[0].vision[out.merges[0].vision.length - 1].tokens).to.equal(32);
    expect(out.sequenceLength.afterMerge).to.be.lessThan(out.sequenceLength.input);
    expect(['red', 'green', 'blue', 'yellow', 'purple']).to.include(out.text.trim());
  });
});
