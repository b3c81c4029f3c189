// Batches of the shapes task for the training forward: images through the model's own
// CLIPImageProcessor (preprocessor_config.json), prompts through its tokenizer and the LLaVA-1.5
// chat template, exactly as LlavaModel.generate builds them.
import { buildLlavaPrompt } from '../chat.js';
import type { ImageProcessor } from '../preprocess.js';
import type { LlavaTokenizer } from '../tokenizer.js';
import { patchOwners, sceneWithQuestions, type Question, type Scene, type Split } from './shapes.js';
import { unfoldPatches, type TinyLlavaShape, type TrainBatch } from './model.js';

/** Suffix ids after <image> (question, "ASSISTANT:", answer) are padded to this length. */
export const SUFFIX_LENGTH = 10;

export interface LabelledBatch extends TrainBatch {
  /** Per sequence: suffix index of the last prompt token (its logits predict the answer). */
  answerRow: number[];
  answerId: number[];
  eosId: number;
  questions: Question[];
  scenes: Scene[];
  /** Per image, per patch: [colour id, shape id] of the shape covering it, or null (background). */
  patchTargets: Array<Array<[number, number] | null>>;
  /** Id of 'no' (the background target). */
  noId: number;
}

export interface BatchContext {
  shape: TinyLlavaShape;
  processor: ImageProcessor;
  tokenizer: LlavaTokenizer;
}

/** Prompt ids split around the image: [3 ids before it, ids after it]. */
export function promptParts(ctx: BatchContext, question: string): { before: number[]; after: number[] } {
  const ids = ctx.tokenizer.encode(buildLlavaPrompt(question, 1));
  const at = ids.indexOf(ctx.shape.imageTokenId);
  if (at !== 3) throw new Error(`expected <image> at index 3 of ${JSON.stringify(ids)}`);
  return { before: ids.slice(0, 3), after: ids.slice(4) };
}

export function answerId(ctx: BatchContext, answer: string): number {
  const ids = ctx.tokenizer.encode(answer, { addBos: false });
  if (ids.length !== 1 || ids[0] === 0) throw new Error(`answer '${answer}' is not one known token: ${JSON.stringify(ids)}`);
  return ids[0];
}

/** Images [start, start + numImages) of a split, `perImage` questions each. */
export function makeBatch(ctx: BatchContext, split: Split, start: number, numImages: number, perImage: number, maxShapes = 4): LabelledBatch {
  const v = ctx.shape.vision;
  const N = (v.imageSize / v.patchSize) ** 2;
  const k = 3 * v.patchSize * v.patchSize;
  const patches = new Float32Array(numImages * N * k);
  const textIds = new Int32Array(numImages * perImage * (3 + SUFFIX_LENGTH)).fill(ctx.shape.padId);
  const answerRow: number[] = [];
  const answerIds: number[] = [];
  const questions: Question[] = [];
  const scenes: Scene[] = [];
  const patchTargets: Array<Array<[number, number] | null>> = [];
  for (let i = 0; i < numImages; i++) {
    const { scene, questions: qs } = sceneWithQuestions(split, start + i, perImage, maxShapes);
    scenes.push(scene);
    patchTargets.push(patchOwners(scene, v.patchSize).map((it) => (it ? [answerId(ctx, it.colour), answerId(ctx, it.shape)] : null)));
    const processed = ctx.processor.preprocess(scene.image);
    unfoldPatches(processed.pixelValues, v.imageSize, v.patchSize, patches, i * N * k);
    for (let j = 0; j < perImage; j++) {
      const q = qs[j % qs.length];
      const s = i * perImage + j;
      const { before, after } = promptParts(ctx, q.question);
      const a = answerId(ctx, q.answer);
      const suffix = [...after, a];
      if (suffix.length > SUFFIX_LENGTH) throw new Error(`question too long: ${q.question}`);
      textIds.set(before, s * (3 + SUFFIX_LENGTH));
      textIds.set(suffix, s * (3 + SUFFIX_LENGTH) + 3);
      answerRow.push(after.length - 1);
      answerIds.push(a);
      questions.push(q);
    }
  }
  return { patches, numImages, perImage, textIds, suffixLength: SUFFIX_LENGTH, answerRow, answerId: answerIds, eosId: ctx.shape.eosId, questions, scenes, patchTargets, noId: answerId(ctx, 'no') };
}
