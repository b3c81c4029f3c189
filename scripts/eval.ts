// Accuracy table of the shipped shapes model under each merge rule (npm run eval).
//
// Test split (disjoint seeds, never used for choosing anything): one question per image.
// For none / illava / tome / fastv at about 1/2, 1/3 and 1/6 of the 64 image tokens, the answer
// is the greedy first token of LlavaModel.generate (every answer is one token), compared with
// the truth; images/s is questions answered per second, preprocessing included.
// Writes bench/eval/results.json, bench/eval/results.md and bench/eval/accuracy.png.
//   node dist/scripts/eval.js [--model models/default] [--count 1000] [--out bench/eval] [--only none,fastv]
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { scriptArgs } from './args.js';
import { Jimp, loadFont } from 'jimp';
import { SANS_16_BLACK } from 'jimp/fonts';
import { LlavaModel } from '../src/llava.js';
import type { MergeConfig } from '../merge/index.js';
import { examples, ALL_QUESTION_TYPES } from '../src/train/shapes.js';

const args = scriptArgs('eval', 'usage: node dist/scripts/eval.js [--model models/default] [--count 1000] [--out bench/eval] [--only none,fastv] [--backend wasm]', {
    model: { type: 'string', default: 'models/default' },
    count: { type: 'string', default: '1000' },
    out: { type: 'string', default: 'bench/eval' },
    only: { type: 'string' },
    backend: { type: 'string', default: 'wasm' },
});

export interface EvalSetting {
  rule: 'none' | 'illava' | 'tome' | 'fastv';
  budget: string;
  merge: MergeConfig;
}

/**
 * Settings for a model with 64 patches, 4 vision blocks that run and 4 decoder layers.
 * - illava: vision stage at blocks 1-2 (to 48 / 32 / 16 tokens), then the language stage before
 *   decoder layer 1 (the preset's depth, 8/32) down to 32 / 21 / 11.
 * - tome: every block that runs (0-3), constant r = 8 / 11 / 12 -> 32 / 20 / 16 (ToMe merges at
 *   most half the tokens of a block, so 4 blocks cannot go below 16 with a constant r).
 * - fastv: before decoder layer 1 (the preset's 2/32 depth, clamped to 1), keep 32 / 21 / 11.
 */
export function settings(): EvalSetting[] {
  const out: EvalSetting[] = [{ rule: 'none', budget: 'all', merge: {} }];
  const budgets: Array<[string, number, number, number]> = [
    // [label, final tokens k, illava vision removal per layer, tome r]
    ['1/2', 32, 8, 8],
    ['1/3', 21, 16, 11],
    ['1/6', 11, 24, 12],
  ];
  for (const [label, k, remove, r] of budgets) {
    const afterVision = 64 - 2 * remove;
    out.push({ rule: 'illava', budget: label, merge: { vision: { rule: 'illava', layers: [1, 2], remove }, llm: { rule: 'illava', layers: [1], keep: k / afterVision } } });
    out.push({ rule: 'tome', budget: label, merge: { vision: { rule: 'tome', layers: [0, 1, 2, 3], remove: r, proportionalAttention: true } } });
    out.push({ rule: 'fastv', budget: label, merge: { llm: { rule: 'fastv', layers: [1], keep: k / 64 } } });
  }
  return out;
}

interface Row {
  rule: string;
  budget: string;
  imageTokens: number;
  visionTokens: number;
  accuracy: number;
  correct: number;
  questions: number;
  imagesPerSecond: number;
  byType: Record<string, number>;
  merge: MergeConfig;
}

async function main(): Promise<void> {
  const dir = resolve(args.model!);
  const model = await LlavaModel.fromPretrained(dir, { backend: args.backend as 'wasm' });
  const count = Number(args.count);
  const data = examples('test', count);
  const only = args.only ? new Set(args.only.split(',')) : null;
  const answerIds = data.map((e) => model.tokenizer.encode(e.answer, { addBos: false })[0]);
  console.log(`${dir}: ${count} test questions, backend ${model.backend.name}`);
  // warm-up (kernels, caches)
  for (let i = 0; i < 5; i++) await model.generate({ prompt: data[i].question, images: [data[i].scene.image], maxNewTokens: 1 });
  const rows: Row[] = [];
  for (const s of settings()) {
    if (only && !only.has(s.rule)) continue;
    let correct = 0;
    let imageTokens = 0;
    let visionTokens = 0;
    const perType: Record<string, [number, number]> = {};
    const start = performance.now();
    for (let i = 0; i < data.length; i++) {
      const e = data[i];
      const out = await model.generate({ prompt: e.question, images: [e.scene.image], maxNewTokens: 1, merge: s.merge });
      const ok = out.tokenIds.length === 1 ? out.tokenIds[0] === answerIds[i] : false;
      correct += ok ? 1 : 0;
      const t = (perType[e.type] ??= [0, 0]);
      t[0] += ok ? 1 : 0;
      t[1]++;
      if (i === 0) {
        const m = out.merges[0];
        visionTokens = m.vision.length > 0 ? m.vision[m.vision.length - 1].tokens : m.patches;
        imageTokens = m.language.length > 0 ? m.language[m.language.length - 1].tokens : visionTokens;
      }
    }
    const seconds = (performance.now() - start) / 1000;
    const row: Row = {
      rule: s.rule,
      budget: s.budget,
      imageTokens,
      visionTokens,
      accuracy: correct / data.length,
      correct,
      questions: data.length,
      imagesPerSecond: data.length / seconds,
      byType: Object.fromEntries(ALL_QUESTION_TYPES.filter((q) => perType[q]).map((q) => [q, perType[q][0] / perType[q][1]])),
      merge: s.merge,
    };
    rows.push(row);
    console.log(`${s.rule.padEnd(7)} ${s.budget.padEnd(4)} tokens ${String(imageTokens).padStart(2)}: accuracy ${(100 * row.accuracy).toFixed(1)}%, ${row.imagesPerSecond.toFixed(1)} images/s`);
  }
  model.dispose();
  const outDir = resolve(args.out!);
  mkdirSync(outDir, { recursive: true });
  const table = markdownTable(rows);
  console.log('\n' + table);
  writeFileSync(
    join(outDir, 'results.json'),
    JSON.stringify({ model: args.model, split: 'test', questions: count, patches: 64, backend: 'wasm', date: new Date().toISOString(), rows }, null, 2) + '\n',
  );
  writeFileSync(join(outDir, 'results.md'), table + '\n');
  await plot(rows, join(outDir, 'accuracy.png'));
  console.log(`wrote ${join(outDir, 'results.json')}, results.md, accuracy.png`);
}

export function markdownTable(rows: Row[]): string {
  const types = ALL_QUESTION_TYPES.filter((t) => rows.some((r) => r.byType[t] !== undefined));
  const lines = [
    `| rule | budget | image tokens (after vision stage) | accuracy | images/s | ${types.join(' | ')} |`,
    `|---|---|---|---|---|${types.map(() => '---').join('|')}|`,
  ];
  for (const r of rows) {
    const tokens = r.visionTokens !== r.imageTokens ? `${r.imageTokens} (${r.visionTokens})` : `${r.imageTokens}`;
    lines.push(`| ${r.rule} | ${r.budget} | ${tokens} | ${(100 * r.accuracy).toFixed(1)}% | ${r.imagesPerSecond.toFixed(1)} | ${types.map((t) => (r.byType[t] !== undefined ? `${(100 * r.byType[t]).toFixed(0)}%` : '-')).join(' | ')} |`);
  }
  return lines.join('\n');
}

const COLOURS: Record<string, number> = { none: 0x000000ff, illava: 0xd62728ff, tome: 0x1f77b4ff, fastv: 0x2ca02cff };

/** Accuracy against image tokens kept, one line per rule (none: a dashed reference line). */
async function plot(rows: Row[], path: string): Promise<void> {
  const W = 720;
  const H = 460;
  const img = new Jimp({ width: W, height: H, color: 0xffffffff });
  const font = await loadFont(SANS_16_BLACK);
  const left = 70;
  const right = W - 150;
  const top = 40;
  const bottom = H - 60;
  const accs = rows.map((r) => r.accuracy);
  const yMin = Math.max(0, Math.floor((Math.min(...accs) - 0.05) * 10) / 10);
  const yMax = 1;
  const xMin = 0;
  const xMax = 64;
  const X = (t: number) => left + ((t - xMin) / (xMax - xMin)) * (right - left);
  const Y = (a: number) => bottom - ((a - yMin) / (yMax - yMin)) * (bottom - top);
  const dot = (x: number, y: number, c: number, r = 1) => {
    for (let dx = -r; dx <= r; dx++) for (let dy = -r; dy <= r; dy++) {
      const px = Math.round(x + dx);
      const py = Math.round(y + dy);
      if (px >= 0 && py >= 0 && px < W && py < H) img.setPixelColor(c, px, py);
    }
  };
  const line = (x0: number, y0: number, x1: number, y1: number, c: number, r = 1, dash = 0) => {
    const n = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0)));
    for (let i = 0; i <= n; i++) {
      if (dash > 0 && Math.floor(i / dash) % 2 === 1) continue;
      dot(x0 + ((x1 - x0) * i) / n, y0 + ((y1 - y0) * i) / n, c, r);
    }
  };
  line(left, bottom, right, bottom, 0x000000ff, 0);
  line(left, top, left, bottom, 0x000000ff, 0);
  for (let t = 0; t <= 64; t += 8) {
    line(X(t), bottom, X(t), bottom + 5, 0x000000ff, 0);
    img.print({ font, x: X(t) - 8, y: bottom + 8, text: String(t) });
  }
  for (let a = yMin; a <= yMax + 1e-9; a += 0.1) {
    line(left - 5, Y(a), left, Y(a), 0x000000ff, 0);
    line(left + 1, Y(a), right, Y(a), 0xddddddff, 0, 3);
    img.print({ font, x: 20, y: Y(a) - 9, text: `${Math.round(a * 100)}%` });
  }
  img.print({ font, x: left + 120, y: H - 28, text: 'image tokens kept (of 64)' });
  img.print({ font, x: left, y: 10, text: 'Shapes VQA test accuracy vs image tokens kept' });
  const none = rows.find((r) => r.rule === 'none');
  if (none) line(X(0), Y(none.accuracy), X(64), Y(none.accuracy), COLOURS.none, 0, 6);
  let legendY = top;
  for (const rule of ['none', 'illava', 'tome', 'fastv']) {
    const pts = rows.filter((r) => r.rule === rule).map((r) => [r.imageTokens, r.accuracy] as const);
    if (pts.length === 0) continue;
    const all = rule === 'none' ? pts : [...pts, ...(none ? [[64, none.accuracy] as const] : [])].sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < all.length; i++) line(X(all[i - 1][0]), Y(all[i - 1][1]), X(all[i][0]), Y(all[i][1]), COLOURS[rule], 1);
    for (const [t, a] of pts) dot(X(t), Y(a), COLOURS[rule], 4);
    line(right + 20, legendY + 9, right + 45, legendY + 9, COLOURS[rule], 1);
    img.print({ font, x: right + 52, y: legendY, text: rule });
    legendY += 24;
  }
  await img.write(path as `${string}.png`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
