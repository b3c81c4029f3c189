// Packed weight formats on the anyres fixtures (tiny-llava-onevision: SigLIP + Qwen2 with q/k/v
// biases and a tied lm_head; tiny-llava-next: CLIP + LLaMA), against the float32 model (itself
// checked against the fixtures' references in onevision-e2e.test.ts and next.test.ts): f16 gives
// the same greedy tokens with logits within 1e-3 relative at every step. q8_0 on OneVision: the
// same greedy tokens (top-1 equal at every step). On NeXT (float32 weights) q8_0's weight rounding
// alone (float32 on the rounded weights) leaves float32's greedy path at the sixth token (its
// logits differ by 1.3-1.9e-2 before), so q8_0 is checked as on tiny-llava (packed-model.test.ts):
// against float32 on the q8_0-rounded weights, within 3e-4 with the same tokens, and against
// float32 itself: top-1 equal at every step until the greedy paths part (step 5), and at that step
// float32's own top-2 margin (3.5e-3 of the largest |logit|) is below q8_0's logit error there
// (1.6e-2), so no q8_0 kernel could keep float32's token. Errors printed.
import { expect } from 'chai';
import { join } from 'node:path';
import { LlavaModel, type GenerateOutput } from '../src/llava.js';
import { argmax } from '../src/sampling.js';
import { rmSync } from 'node:fs';
import { maxRelDiff, TINY_NEXT_DIR, TINY_ONEVISION_DIR } from './helpers/fixture.js';
import { roundedWeightsCopy } from './helpers/rounded-weights.js';

/** (top-1 - top-2) / max |logit|: how far the float32 choice is from a tie, on maxRelDiff's scale. */
const topTwoMargin = (v: Float32Array) => {
  const sorted = Array.from(v).sort((a, b) => b - a);
  return (sorted[0] - sorted[1]) / Math.max(...Array.from(v, Math.abs));
};

for (const [name, dir] of [['llava_onevision', TINY_ONEVISION_DIR], ['llava_next', TINY_NEXT_DIR]] as const) {
  describe(`packed weights on ${name} (tiny fixture)`, function () {
    this.timeout(180000);
    const input = { prompt: 'What is shown in this image?', images: [join(dir, 'image_a.png')], maxNewTokens: 10, stopIds: [], returnLogits: true };
    let reference: GenerateOutput;
    before(async () => {
      const f32 = await LlavaModel.fromPretrained(dir, { weightFormat: 'f32' });
      reference = await f32.generate(input);
      f32.dispose();
    });

    for (const [format, bound] of (name === 'llava_next' ? [['f16', 1e-3]] : [['f16', 1e-3], ['q8_0', Infinity]]) as Array<['f16' | 'q8_0', number]>) {
      it(`${format}: the float32 greedy tokens${bound < Infinity ? `, logits within ${bound} relative at every step` : ', top-1 equal at every step'}`, async () => {
        const model = await LlavaModel.fromPretrained(dir, { weightFormat: format, quantizedCache: false });
        const out = await model.generate(input);
        model.dispose();
        expect(out.tokenIds).to.deep.equal(reference.tokenIds);
        const refLogits = reference.logits as Float32Array[];
        const errors = (out.logits as Float32Array[]).map((l, s) => maxRelDiff(l, refLogits[s]));
        (out.logits as Float32Array[]).forEach((l, s) => expect(argmax(l), `step ${s}`).to.equal(argmax(refLogits[s])));
        process.stdout.write(`      ${name} ${format}: max rel error ${Math.max(...errors).toExponential(2)} over ${errors.length} steps\n`);
        if (bound < Infinity) expect(Math.max(...errors)).to.be.below(bound);
      });
    }

    if (name === 'llava_next') {
      it('q8_0: within 3e-4 relative of float32 on q8_0-rounded weights at every step, the same greedy tokens; top-1 equal to float32 until the paths part at a float32 near-tie', async () => {
        const copy = roundedWeightsCopy(dir, 'q8_0');
        const roundedModel = await LlavaModel.fromPretrained(copy.dir, { weightFormat: 'f32' });
        const rounded = await roundedModel.generate(input);
        roundedModel.dispose();
        rmSync(copy.dir, { recursive: true, force: true });
        const model = await LlavaModel.fromPretrained(dir, { weightFormat: 'q8_0', quantizedCache: false });
        const out = await model.generate(input);
        model.dispose();
        expect(out.tokenIds).to.deep.equal(rounded.tokenIds);
        const kernel = (out.logits as Float32Array[]).map((l, s) => maxRelDiff(l, (rounded.logits as Float32Array[])[s]));
        const format = (out.logits as Float32Array[]).map((l, s) => maxRelDiff(l, (reference.logits as Float32Array[])[s]));
        const refLogits = reference.logits as Float32Array[];
        const parted = out.tokenIds.findIndex((t, s) => t !== reference.tokenIds[s]);
        const agreed = parted < 0 ? out.tokenIds.length : parted;
        process.stdout.write(`      ${name} q8_0: max rel error ${Math.max(...kernel).toExponential(2)} vs its rounded weights, ${Math.max(...format.slice(0, agreed + 1)).toExponential(2)} vs float32 over the ${agreed + 1} steps up to where the paths part (step ${parted}; float32's margin there ${parted >= 0 ? topTwoMargin(refLogits[parted]).toExponential(2) : '-'})\n`);
        expect(Math.max(...kernel)).to.be.below(3e-4);
        for (let s = 0; s < agreed; s++) expect(argmax((out.logits as Float32Array[])[s]), `step ${s}`).to.equal(argmax(refLogits[s]));
        if (parted >= 0) expect(topTwoMargin(refLogits[parted]), `float32's top-2 margin at step ${parted}`).to.be.below(format[parted]);
      });
    }
  });
}
