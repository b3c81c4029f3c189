// Accuracy table of a shapes model under each merge rule (npm run eval).
//
// Test split (disjoint seeds, never used for choosing anything): one question per image, types drawn
// from --types (default: task v4's six; models/default was trained on colour,shape,where,exist).
// Every rule at 1/2, 1/3, 1/6 and 1/9 of the 64 image tokens (settings()); the answer is the greedy
// first token of LlavaModel.generate (every answer is one token), compared with the truth. Per
// setting: accuracy with its 95 % Wilson interval, the same per question type, images/s (questions
// answered per second, preprocessing included), the vision stage's measured time (tower + projector,
// summed over the run) and its speed-up over 'none' in the same run, and the token-blocks ratio
// (tokens entering each running block's MLP, summed, over the unmerged count: what the vision-stage
// speed-up would be if time were linear in tokens).
// Writes results.json, results.md and accuracy.png to --out.
//   node dist/scripts/eval.js [--model default|DIR] [--count 1000] [--out bench/eval] [--only none,fastv] [--types colour,shape]
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { scriptArgs, runScript } from './args.js';
import { LlavaModel } from '../src/llava.js';
import type { MergeReport } from '../merge/index.js';
import { examples, ALL_QUESTION_TYPES, TASK_V4_TYPES, type QuestionType } from '../src/train/shapes.js';
import { plotAccuracy } from './eval-plot.js';
import { budgetTable, markdownTable, wilson, type EvalRow } from './eval-table.js';
import { PATCHES, settings, tokenBlocksRatio } from './eval-settings.js';
import { resolveModelDir } from '../src/embedded.js';

const args = scriptArgs('eval', 'usage: node dist/scripts/eval.js [--model default|DIR] [--count 1000] [--out bench/eval] [--only none,fastv] [--types colour,shape] [--split test|val] [--backend wasm]', {
  model: { type: 'string', default: 'default' },
  count: { type: 'string', default: '1000' },
  out: { type: 'string', default: 'bench/eval' },
  only: { type: 'string' },
  types: { type: 'string' },
  backend: { type: 'string', default: 'wasm' },
  // 'val' for trying things out (choices are made on validation, the table is on test)
  split: { type: 'string', default: 'test' },
});

async function main(): Promise<void> {
  const dir = resolveModelDir(args.model);
  const model = await LlavaModel.fromPretrained(dir, { backend: args.backend as 'wasm' });
  const count = Number(args.count);
  if (!Number.isInteger(count) || count < 1) throw new Error(`--count must be a positive integer, got ${args.count}`);
  const types: readonly QuestionType[] = args.types ? parseTypes(args.types) : TASK_V4_TYPES;
  if (args.split !== 'test' && args.split !== 'val') throw new Error(`--split must be test or val, got '${args.split}'`);
  const data = examples(args.split, count, 0, types);
  const only = args.only ? new Set(args.only.split(',')) : null;
  const answerIds = data.map((e) => model.tokenizer.encode(e.answer, { addBos: false })[0]);
  console.log(`${dir}: ${count} ${args.split} questions (${types.join(', ')}), backend ${model.backend.name}`);
  // warm-up (kernels, caches)
  for (let i = 0; i < 5; i++) await model.generate({ prompt: data[i].question, images: [data[i].scene.image], maxNewTokens: 1 });
  const rows: EvalRow[] = [];
  let baseVisionMs: number | null = null;
  for (const s of settings()) {
    if (only && !only.has(s.rule)) continue;
    let correct = 0;
    let visionMs = 0;
    let report: MergeReport | null = null;
    const perType: Record<string, [number, number]> = {};
    const start = performance.now();
    for (let i = 0; i < data.length; i++) {
      const e = data[i];
      const out = await model.generate({ prompt: e.question, images: [e.scene.image], maxNewTokens: 1, merge: s.merge });
      const ok = out.tokenIds.length === 1 ? out.tokenIds[0] === answerIds[i] : false;
      correct += ok ? 1 : 0;
      visionMs += out.timings.visionMs;
      const t = (perType[e.type] ??= [0, 0]);
      t[0] += ok ? 1 : 0;
      t[1]++;
      report ??= out.merges[0];
    }
    const seconds = (performance.now() - start) / 1000;
    const m = report!;
    const visionTokens = m.vision.length > 0 ? m.vision[m.vision.length - 1].tokens : m.patches;
    if (s.rule === 'none') baseVisionMs = visionMs;
    const row: EvalRow = {
      rule: s.rule,
      budget: s.budget,
      imageTokens: m.tokens,
      visionTokens,
      accuracy: correct / data.length,
      ci95: wilson(correct, data.length),
      correct,
      questions: data.length,
      imagesPerSecond: data.length / seconds,
      visionMsPerImage: visionMs / data.length,
      visionSpeedup: baseVisionMs === null ? null : baseVisionMs / visionMs,
      tokenBlocksRatio: tokenBlocksRatio(m),
      byType: Object.fromEntries(ALL_QUESTION_TYPES.filter((q) => perType[q]).map((q) => [q, { accuracy: perType[q][0] / perType[q][1], correct: perType[q][0], questions: perType[q][1], ci95: wilson(perType[q][0], perType[q][1]) }])),
      merge: s.merge,
    };
    rows.push(row);
    const ci = `[${(100 * row.ci95[0]).toFixed(1)}, ${(100 * row.ci95[1]).toFixed(1)}]`;
    console.log(`${s.rule.padEnd(17)} ${s.budget.padEnd(4)} tokens ${String(row.imageTokens).padStart(2)}: accuracy ${(100 * row.accuracy).toFixed(1)}% ${ci}, ${row.imagesPerSecond.toFixed(1)} images/s, vision ${row.visionMsPerImage.toFixed(2)} ms/image`);
  }
  model.dispose();
  const outDir = resolve(args.out!);
  mkdirSync(outDir, { recursive: true });
  const table = `${budgetTable(rows)}\n\n${markdownTable(rows)}`;
  console.log('\n' + table);
  const chance = chanceByType(types);
  writeFileSync(
    join(outDir, 'results.json'),
    JSON.stringify({ model: args.model, split: args.split, questions: count, types, patches: PATCHES, backend: args.backend, date: new Date().toISOString(), chance, rows }, null, 2) + '\n',
  );
  writeFileSync(join(outDir, 'results.md'), table + '\n');
  await plotAccuracy(rows, join(outDir, 'accuracy.png'), chance.overall, `${args.model}: test accuracy vs image tokens kept`);
  console.log(`wrote ${join(outDir, 'results.json')}, results.md, accuracy.png`);
}

/**
 * Chance accuracy (a guess uniform over the answers a type can have): colour 1/5, shape 1/4,
 * count 1/5 (zero-four), where 1/4, exist 1/2, relation 1/2; overall = their mean over `types`
 * (askQuestions draws types uniformly).
 */
function chanceByType(types: readonly QuestionType[]): { overall: number; byType: Record<string, number> } {
  const per: Record<QuestionType, number> = { colour: 1 / 5, shape: 1 / 4, count: 1 / 5, where: 1 / 4, exist: 1 / 2, relation: 1 / 2 };
  const byType = Object.fromEntries(types.map((t) => [t, per[t]]));
  return { overall: types.reduce((a, t) => a + per[t], 0) / types.length, byType };
}

function parseTypes(list: string): QuestionType[] {
  const types = list.split(',').map((t) => t.trim());
  for (const t of types) if (!(ALL_QUESTION_TYPES as readonly string[]).includes(t)) throw new Error(`--types: unknown question type '${t}' (known: ${ALL_QUESTION_TYPES.join(', ')})`);
  return types as QuestionType[];
}

runScript('eval', main);
