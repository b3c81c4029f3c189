// Merging through the user API on tiny-llava-onevision (LlavaModel.fromPretrained -> generate): every
// preset gives its configured counts per tile and per image in out.merges, for one anyres image, the
// several-images mode (one padded tile each), and an image with a video. Counts are worked out by hand
// from the fixture's sizes (see test/onevision-merge.test.ts for the geometry).
import { expect } from 'chai';
import { join } from 'node:path';
import { LlavaModel } from '../src/llava.js';
import type { MergeOption } from '../merge/index.js';
import { TINY_ONEVISION_DIR } from './helpers/fixture.js';

const file = (name: string) => join(TINY_ONEVISION_DIR, name);
const FRAMES = [0, 1, 2, 3].map((i) => file(`video_frame_${i}.png`));
const QUESTION = 'What is shown in this image?';

describe('iLLaVA merging through generate() on tiny-llava-onevision', function () {
  let model: LlavaModel;
  before(async () => {
    model = await LlavaModel.fromPretrained(TINY_ONEVISION_DIR, { backend: 'wasm', weightFormat: 'f32', quantizedCache: false });
  });
  after(() => model?.dispose());

  it("merge 'none' is the plain model: the same ids, logits and tokens as no merge option", async () => {
    const plain = await model.generate({ prompt: QUESTION, images: [file('image_a.png')], maxNewTokens: 4, returnLogits: true });
    const none = await model.generate({ prompt: QUESTION, images: [file('image_a.png')], maxNewTokens: 4, returnLogits: true, merge: 'none' });
    expect(none.inputIds).to.deep.equal(plain.inputIds);
    expect(none.tokenIds).to.deep.equal(plain.tokenIds);
    expect((none.logits ?? []).map((l) => Array.from(l))).to.deep.equal((plain.logits ?? []).map((l) => Array.from(l)));
    expect(none.merges).to.deep.equal([{ patches: 73, vision: [], language: [], tokens: 73 }]);
  });

  // image_a: 11 tiles of 9; illava keeps 4 per tile (44), packs 48 on a 2 x 2 side, keeps 34 after LLM layer 1.
  const cases: Array<{ option: MergeOption; tile: number; vision: number[]; tokens: number }> = [
    { option: 'illava', tile: 4, vision: [44], tokens: 34 },
    { option: 'fastv', tile: 9, vision: [], tokens: 37 },
    { option: 'tome', tile: 9, vision: [], tokens: 73 },
    { option: { vision: { rule: 'illava-prune', layers: [1], remove: 5 } }, tile: 4, vision: [44], tokens: 48 },
  ];
  for (const c of cases) {
    it(`${typeof c.option === 'string' ? c.option : 'illava-prune (square)'}: ${c.tile} tokens per tile, ${c.tokens} image tokens in the LLM`, async () => {
      const out = await model.generate({ prompt: QUESTION, images: [file('image_a.png')], maxNewTokens: 2, merge: c.option });
      const r = out.merges[0];
      expect(r.vision.map((v) => v.tokens)).to.deep.equal(c.vision);
      expect(r.tokens).to.equal(c.tokens);
      if (c.vision.length) expect(r.tiles?.map((t) => t.tokens)).to.deep.equal(Array(11).fill(c.tile));
      expect(out.sequenceLength.input).to.equal(out.inputIds.length);
      expect(out.sequenceLength.afterMerge).to.equal(out.inputIds.length - (out.inputIds.filter((id) => id === 151646).length - c.tokens));
    });
  }

  it('several images (one padded tile each: 4 + newline = 5) and an image with a video are separate spans', async () => {
    const two = await model.generate({ prompt: 'What differs?', images: [file('image_a.png'), file('image_b.png')], maxNewTokens: 1, merge: 'illava' });
    // Each: 9 -> 4 in block 1, + one image_newline = 5; keep 0.7: round(1.5) = 2 go -> 3.
    expect(two.merges.map((m) => [m.vision[0]?.tokens, m.tokens])).to.deep.equal([[4, 3], [4, 3]]);
    expect(two.inputIds.filter((id) => id === 151646)).to.have.length(10);
    // Image (48 -> 34 with the video LLM stage: layer 1, keep 0.7) and video (frames 9 -> 4 in block 0,
    // pooled to 1 each + newline = 5 -> 3).
    const mixed = await model.generate({ prompt: 'Compare them.', images: [file('image_a.png')], video: FRAMES, maxNewTokens: 1, merge: 'illava' });
    expect(mixed.merges.map((m) => m.stages?.map((s) => [s.stage, s.layer, s.tokens]))).to.deep.equal([
      [['vision', 1, 44], ['llm', 1, 34]],
      [['vision', 0, 16], ['llm', 1, 3]],
    ]);
  });

  it("a vision stage that leaves no square per tile is refused at once, naming the layout", async () => {
    let message = '';
    await model.generate({ prompt: QUESTION, images: [file('image_a.png')], maxNewTokens: 1, merge: { vision: { rule: 'illava', layers: [1], remove: 3 } } }).catch((e: Error) => (message = e.message));
    expect(message).to.match(/^vision: layers \[1\] removing 3 each leave 6 of 9 tokens per tile, not a perfect square; layout 'square'/);
  });
});
