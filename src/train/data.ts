// Batches of the shapes task for the training forward: images through the model's own
// CLIPImageProcessor (preprocessor_config.json), prompts through its tokenizer and the LLaVA-1.5
// chat template, exactly as LlavaModel.generate builds them.
import { buildLlavaPrompt } from '../chat.js';
import type { ImageProcessor } from '../preprocess.js';
import type { LlavaTokenizer } from '../tokenizer.js';
import { longestQuestion, patchOwners, QUADRANTS, QUESTION_TYPES, sceneWithQuestions, type Question, type QuestionType, type Scene, type Split } from './shapes.js';
import { unfoldPatches, type TinyLlavaShape, type TrainBatch } from './model.js';

/** Suffix ids after <image> for one turn: question, "ASSISTANT:", answer (task v3's longest question: 7 words). */
export const SUFFIX_LENGTH = 10;
/** Extra suffix ids per further turn: EOS, "USER:", question, "ASSISTANT:", answer. */
export const TURN_LENGTH = 13;

/** Suffix length of a batch with `turns` questions per sequence of these types (longer with 'relation'). */
export function suffixLength(turns: number, types: readonly QuestionType[] = QUESTION_TYPES): number {
  const extra = longestQuestion(types) - longestQuestion(QUESTION_TYPES);
  return SUFFIX_LENGTH + extra + (TURN_LENGTH + extra) * (turns - 1);
}

export interface LabelledBatch extends TrainBatch {
  /**
   * One entry per answer (sequence-major, turn order): its sequence, the suffix index of the last
   * prompt token (whose logits predict the answer; the answer's own row predicts EOS), its id.
   */
  answerSeq: number[];
  answerRow: number[];
  answerId: number[];
  eosId: number;
  questions: Question[];
  scenes: Scene[];
  /** Per image, per patch: [colour id, shape id, quadrant id] of the shape in it, or null (background). */
  patchTargets: Array<Array<[number, number, number] | null>>;
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

/** Ids of a later turn's prompt, "USER: {question} ASSISTANT:" (LLaVA-1.5 multi-turn format, after "</s>"). */
export function turnIds(ctx: BatchContext, question: string): number[] {
  return ctx.tokenizer.encode(`USER: ${question} ASSISTANT:`, { addBos: false });
}

export function answerId(ctx: BatchContext, answer: string): number {
  const ids = ctx.tokenizer.encode(answer, { addBos: false });
  if (ids.length !== 1 || ids[0] === 0) throw new Error(`answer '${answer}' is not one known token: ${JSON.stringify(ids)}`);
  return ids[0];
}

/**
 * Images [start, start + numImages) of a split, `perImage` sequences each, each sequence a
 * conversation of up to `turns` different questions about the image (LLaVA-1.5's multi-turn
 * format: "USER: <image>\nq1 ASSISTANT: a1</s>USER: q2 ASSISTANT: a2</s>..."). The first turn is
 * exactly the single-question prompt of LlavaModel.generate; later turns reuse the image tokens
 * (64 of a sequence's ~117 positions), so a training step sees several answers per sequence.
 */
export function makeBatch(ctx: BatchContext, split: Split, start: number, numImages: number, perImage: number, maxShapes = 4, turns = 1, types: readonly QuestionType[] = QUESTION_TYPES): LabelledBatch {
  const v = ctx.shape.vision;
  const N = (v.imageSize / v.patchSize) ** 2;
  const k = 3 * v.patchSize * v.patchSize;
  const S = suffixLength(turns, types);
  const patches = new Float32Array(numImages * N * k);
  const textIds = new Int32Array(numImages * perImage * (3 + S)).fill(ctx.shape.padId);
  const batch: Omit<LabelledBatch, keyof TrainBatch | 'eosId' | 'noId'> = { answerSeq: [], answerRow: [], answerId: [], questions: [], scenes: [], patchTargets: [] };
  const quadrantIds = QUADRANTS.map((q) => answerId(ctx, q));
  for (let i = 0; i < numImages; i++) {
    const { scene, questions: qs } = sceneWithQuestions(split, start + i, perImage * turns, maxShapes, types);
    batch.scenes.push(scene);
    batch.patchTargets.push(patchOwners(scene, v.patchSize).map((it) => (it ? [answerId(ctx, it.colour), answerId(ctx, it.shape), quadrantIds[it.quadrant]] : null)));
    const processed = ctx.processor.preprocess(scene.image);
    unfoldPatches(processed.pixelValues, v.imageSize, v.patchSize, patches, i * N * k);
    for (let j = 0; j < perImage; j++) {
      const s = i * perImage + j;
      const seen = new Set<string>();
      const suffix: number[] = [];
      let before: number[] = [];
      for (const q of qs.slice(j * turns, (j + 1) * turns)) {
        if (seen.has(q.question)) continue; // a repeated question could be answered from the context
        seen.add(q.question);
        let prompt: number[];
        if (suffix.length === 0) {
          const parts = promptParts(ctx, q.question);
          before = parts.before;
          prompt = parts.after;
        } else prompt = [ctx.shape.eosId, ...turnIds(ctx, q.question)];
        const a = answerId(ctx, q.answer);
        suffix.push(...prompt, a);
        batch.answerSeq.push(s);
        batch.answerRow.push(suffix.length - 2);
        batch.answerId.push(a);
        batch.questions.push(q);
      }
      if (suffix.length > S) throw new Error(`conversation too long (${suffix.length} > ${S} ids): ${qs.map((q) => q.question).join(' / ')}`);
      textIds.set(before, s * (3 + S));
      textIds.set(suffix, s * (3 + S) + 3);
    }
  }
  return { patches, numImages, perImage, textIds, suffixLength: S, ...batch, eosId: ctx.shape.eosId, noId: answerId(ctx, 'no') };
}
