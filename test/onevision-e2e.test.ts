// LLaVA-OneVision through the user API (LlavaModel.fromPretrained -> generate / chat) against the
// tiny-llava-onevision fixture: the folder's Qwen2 tokenizer and Jinja chat template give the
// fixture's prompt ids, the processor's <image>/<video> expansion gives its expanded ids, and the
// model (from the PNGs: preprocessing is Pillow-exact) its float64 last-position logits and greedy
// tokens (each step's top-16 from expected.json), with the KV cache and with full recompute.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LlavaModel, type GenerateOutput } from '../src/llava.js';
import type { PixelValues } from '../src/generate-types.js';
import { maxAbsDiff, onevisionArray, relativeL2, topK, TINY_ONEVISION_DIR } from './helpers/fixture.js';
import { rejects } from './helpers/assert.js';

/** Issue 12: last-position logits within 1e-4 relative L2 (and the README's 1e-4 max |diff| for float32). */
const TOLERANCE = 1e-4;

type RunName = 'image_a' | 'image_b' | 'video' | 'text';
interface Run { last_top5_ids: number[]; greedy_ids: number[]; greedy_step_top16: Array<{ ids: number[]; logits: number[] }>; feature_positions: [number, number] | null }
const expected = JSON.parse(readFileSync(join(TINY_ONEVISION_DIR, 'expected.json'), 'utf8')) as {
  input_ids: Record<'image' | 'video' | 'text', number[]>;
  num_image_tokens: Record<'image_a' | 'image_b', number>;
  num_video_tokens: number;
  runs: Record<RunName, Run>;
};

const IMAGE_QUESTION = 'What is shown in this image?';
const VIDEO_QUESTION = 'What is happening in this video?';
const TEXT_QUESTION = 'Tell me a story.';
const file = (name: string) => join(TINY_ONEVISION_DIR, name);
const FRAMES = [0, 1, 2, 3].map((i) => file(`video_frame_${i}.png`));

function ids(name: string): number[] {
  return Array.from(onevisionArray(name).data);
}

function floats(name: string): Float32Array {
  return onevisionArray(name).data as Float32Array;
}

/** The fixture's expectations on one run: expanded ids, last logits, greedy ids and each step's top-16. */
function checkRun(run: RunName, out: GenerateOutput, what: string): void {
  const ref = expected.runs[run];
  const logits = out.logits ?? [];
  expect(out.inputIds, `${what}: expanded input ids`).to.deep.equal(ids(`${run}_input_ids_expanded`));
  const want = floats(`${run}_last_logits`);
  const rel = relativeL2(logits[0], want);
  const max = maxAbsDiff(logits[0], want);
  let stepDiff = 0;
  for (let step = 0; step < 10; step++) {
    const top = ref.greedy_step_top16[step];
    expect(topK(logits[step], 16), `${what}: step ${step} top-16 ids`).to.deep.equal(top.ids);
    stepDiff = Math.max(stepDiff, maxAbsDiff(top.ids.map((id) => logits[step][id]), top.logits));
  }
  if (process.env.ILLAVA_REPORT) console.log(`${what}: last logits rel L2 ${rel.toExponential(2)} max ${max.toExponential(2)}; step top-16 max ${stepDiff.toExponential(2)}`);
  expect(rel, `${what}: last logits relative L2`).to.be.at.most(TOLERANCE);
  expect(max, `${what}: last logits max |diff|`).to.be.at.most(TOLERANCE);
  expect(topK(logits[0], 5), `${what}: top-5`).to.deep.equal(ref.last_top5_ids);
  expect(stepDiff, `${what}: step top-16 logits max |diff|`).to.be.at.most(TOLERANCE);
  expect(out.tokenIds, `${what}: greedy ids`).to.deep.equal(ref.greedy_ids);
}

describe('LLaVA-OneVision end to end (fromPretrained, generate, chat) on tiny-llava-onevision', function () {
  let model: LlavaModel;
  before(async () => {
    model = await LlavaModel.fromPretrained(TINY_ONEVISION_DIR, { backend: 'wasm', weightFormat: 'f32', quantizedCache: false });
  });
  after(() => model?.dispose());

  it("renders the folder's chat template and tokenizes to the fixture's prompt ids (image, video, text)", () => {
    expect(model.chatTemplate?.origin).to.match(/chat_template\.json$/);
    expect(model.promptIds({ prompt: IMAGE_QUESTION, images: [file('image_a.png')] })).to.deep.equal(expected.input_ids.image);
    expect(model.promptIds({ prompt: VIDEO_QUESTION, video: FRAMES })).to.deep.equal(expected.input_ids.video);
    expect(model.promptIds({ prompt: TEXT_QUESTION })).to.deep.equal(expected.input_ids.text);
  });

  for (const [run, images, video, question] of [
    ['image_a', [file('image_a.png')], undefined, IMAGE_QUESTION],
    ['image_b', [file('image_b.png')], undefined, IMAGE_QUESTION],
    ['video', undefined, FRAMES, VIDEO_QUESTION],
    ['text', undefined, undefined, TEXT_QUESTION],
  ] as const) {
    it(`generate(): ${run} from the PNG(s): expanded ids, last logits, 10 greedy tokens with the KV cache and with full recompute`, async () => {
      for (const useCache of [true, false]) {
        const out = await model.generate({ prompt: question, images: images ? [...images] : undefined, video: video ? [...video] : undefined, maxNewTokens: 10, returnLogits: true, useCache });
        checkRun(run, out, `${run} (${useCache ? 'KV cache' : 'full recompute'})`);
      }
    });
  }

  it('generate() on the stored pixel_values (tiles + image size) gives the same as from the PNG', async () => {
    const pixels: PixelValues = { pixelValues: floats('image_a_pixel_values'), height: 42, width: 42, tiles: 11, imageSize: { height: 60, width: 200 } };
    checkRun('image_a', await model.generate({ prompt: IMAGE_QUESTION, images: [pixels], maxNewTokens: 10, returnLogits: true }), 'image_a (stored pixel_values)');
  });

  it('generate() on the stored video pixel values (4 frames)', async () => {
    const all = floats('video_pixel_values');
    const plane = 3 * 42 * 42;
    const frames: PixelValues[] = [0, 1, 2, 3].map((f) => ({ pixelValues: all.slice(f * plane, (f + 1) * plane), height: 42, width: 42 }));
    checkRun('video', await model.generate({ prompt: VIDEO_QUESTION, video: frames, maxNewTokens: 10, returnLogits: true }), 'video (stored pixel values)');
  });

  it('chat() with an image_url part renders the template and gives the fixture ids and greedy tokens', async () => {
    const out = await model.chat([{ role: 'user', content: [{ type: 'image_url', image_url: { url: file('image_a.png') } }, { type: 'text', text: IMAGE_QUESTION }] }], { maxNewTokens: 10, returnLogits: true });
    expect(out.prompt).to.equal(`<|im_start|>user\n<image>\n${IMAGE_QUESTION}<|im_end|>\n<|im_start|>assistant\n`);
    expect(out.promptIds).to.deep.equal(expected.input_ids.image);
    checkRun('image_a', out, 'chat image_a');
    const text = await model.chat([{ role: 'user', content: TEXT_QUESTION }], { maxNewTokens: 10, returnLogits: true });
    checkRun('text', text, 'chat text');
  });

  // References for prompts the fixture does not cover, from make_multi_reference.py (numpy + Pillow, float64; it reproduces the fixture's own logits first).
  const multiRef = JSON.parse(readFileSync(file('multi-reference.json'), 'utf8')) as {
    runs: Record<'image_a_video' | 'two_images_video', { prompt_ids: number[]; input_ids_expanded: number[]; greedy_ids: number[]; greedy_step_top16: Array<{ ids: number[]; logits: number[] }>; last_logits_offset: number; last_logits_count: number }>;
    multi_image_pixel_values_offset: number;
  };
  const multiBin = readFileSync(file('multi-reference.bin'));
  const multiFloats = (offset: number, count: number) => Float32Array.from({ length: count }, (_, i) => multiBin.readFloatLE(offset + 4 * i));

  for (const [run, images, what] of [
    ['image_a_video', ['image_a.png'], 'one image and a video: the image keeps its anyres tiles (73 ids), the video its 17'],
    ['two_images_video', ['image_a.png', 'image_b.png'], 'two images and a video: each image one padded tile + image_newline (10 ids), the video 17'],
  ] as const) {
    it(`${what}; ids, last logits and greedy tokens match the numpy reference`, async () => {
      const ref = multiRef.runs[run];
      const out = await model.generate({ prompt: VIDEO_QUESTION, images: images.map(file), video: FRAMES, maxNewTokens: 10, returnLogits: true });
      expect(out.promptIds).to.deep.equal(ref.prompt_ids);
      expect(out.inputIds).to.deep.equal(ref.input_ids_expanded);
      const logits = out.logits ?? [];
      const want = multiFloats(ref.last_logits_offset, ref.last_logits_count);
      let stepDiff = 0;
      ref.greedy_step_top16.forEach((top, step) => {
        expect(topK(logits[step], 16), `step ${step} top-16 ids`).to.deep.equal(top.ids);
        stepDiff = Math.max(stepDiff, maxAbsDiff(top.ids.map((id) => logits[step][id]), top.logits));
      });
      if (process.env.ILLAVA_REPORT) console.log(`${run}: last logits rel L2 ${relativeL2(logits[0], want).toExponential(2)} max ${maxAbsDiff(logits[0], want).toExponential(2)}; step top-16 max ${stepDiff.toExponential(2)}`);
      expect(relativeL2(logits[0], want), 'last logits relative L2').to.be.at.most(TOLERANCE);
      expect(maxAbsDiff(logits[0], want), 'last logits max |diff|').to.be.at.most(TOLERANCE);
      expect(stepDiff, 'step top-16 logits max |diff|').to.be.at.most(TOLERANCE);
      expect(out.tokenIds).to.deep.equal(ref.greedy_ids);
    });
  }

  it("several images: each image's padded tile is Pillow's (pad_to_square with int(mean * 255), bicubic to the tile)", async () => {
    const plane = 3 * 42 * 42;
    const want = multiFloats(multiRef.multi_image_pixel_values_offset, 2 * plane);
    for (const [i, name] of ['image_a.png', 'image_b.png'].entries()) {
      const pixels = await model.pixelValues(file(name), 2);
      expect(pixels.tiles).to.equal(1);
      expect(maxAbsDiff(pixels.pixelValues, want.subarray(i * plane, (i + 1) * plane)), name).to.equal(0);
    }
  });

  it('refuses mismatched inputs with one-line errors', async () => {
    await rejects(model.generate({ prompt: `<image>\n${IMAGE_QUESTION}`, template: 'raw', images: [], maxNewTokens: 1 }), /^the prompt has 1 <image> placeholder\(s\) but 0 image\(s\) were given$/);
    await rejects(model.generate({ prompt: `<|im_start|>user\n${VIDEO_QUESTION}`, template: 'raw', video: FRAMES, maxNewTokens: 1 }), /^the prompt has 0 <video> placeholder\(s\) but one video was given/);
    const tiles = floats('image_a_pixel_values');
    await rejects(model.generate({ prompt: IMAGE_QUESTION, images: [{ pixelValues: tiles, height: 42, width: 42, tiles: 11 }], maxNewTokens: 1 }), /^anyres pixel values need imageSize/);
    await rejects(model.generate({ prompt: IMAGE_QUESTION, images: [{ pixelValues: tiles, height: 42, width: 42, tiles: 11, imageSize: { height: 300, width: 451 } }], maxNewTokens: 1 }), /^an image of 451x300 takes 1 \+ 4x6 tiles, got 11$/);
  });
});
