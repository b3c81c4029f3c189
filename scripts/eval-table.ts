// The eval's rows, their 95 % intervals and the markdown table (scripts/eval.ts).
import type { MergeConfig } from '../merge/index.js';
import { ALL_QUESTION_TYPES } from '../src/train/shapes.js';

export interface TypeResult {
  accuracy: number;
  correct: number;
  questions: number;
  ci95: [number, number];
}

export interface EvalRow {
  rule: string;
  budget: string;
  /** Image tokens the decoder ends with (after both stages). */
  imageTokens: number;
  /** Image tokens after the vision stage. */
  visionTokens: number;
  accuracy: number;
  ci95: [number, number];
  correct: number;
  questions: number;
  imagesPerSecond: number;
  /** Vision tower + projector, ms per image (StageTimings.visionMs), measured in this run. */
  visionMsPerImage: number;
  /** 'none''s vision time over this setting's, same run (null when 'none' was not run first). */
  visionSpeedup: number | null;
  /** Tokens through the running blocks' MLPs over the unmerged count (eval.ts tokenBlocksRatio). */
  tokenBlocksRatio: number;
  byType: Record<string, TypeResult>;
  merge: MergeConfig;
}

/**
 * Wilson score interval (95 %, z = 1.96) of k successes in n trials: (p + z²/2n ± z sqrt(p(1-p)/n +
 * z²/4n²)) / (1 + z²/n). Unlike p ± 1.96 sqrt(p(1-p)/n) it stays inside [0, 1] and is not empty at
 * p = 0 or 1.
 */
export function wilson(k: number, n: number, z = 1.96): [number, number] {
  if (n === 0) return [0, 1];
  const p = k / n;
  const z2 = z * z;
  const centre = p + z2 / (2 * n);
  const half = z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  const d = 1 + z2 / n;
  return [Math.max(0, (centre - half) / d), Math.min(1, (centre + half) / d)];
}

const pct = (x: number, digits = 1) => (100 * x).toFixed(digits);

export function markdownTable(rows: EvalRow[]): string {
  const types = ALL_QUESTION_TYPES.filter((t) => rows.some((r) => r.byType[t] !== undefined));
  const lines = [
    `| rule | budget | image tokens (after vision stage) | accuracy [95 % CI] | images/s | vision ms/image (speed-up) | token-blocks | ${types.join(' | ')} |`,
    `|---|---|---|---|---|---|---|${types.map(() => '---').join('|')}|`,
  ];
  for (const r of rows) {
    const tokens = r.visionTokens !== r.imageTokens ? `${r.imageTokens} (${r.visionTokens})` : `${r.imageTokens}`;
    const speed = r.visionSpeedup === null ? '' : ` (${r.visionSpeedup.toFixed(2)}x)`;
    const typeCells = types.map((t) => {
      const b = r.byType[t];
      return b ? `${pct(b.accuracy, 0)} [${pct(b.ci95[0], 0)}, ${pct(b.ci95[1], 0)}]` : '-';
    });
    lines.push(`| ${r.rule} | ${r.budget} | ${tokens} | ${pct(r.accuracy)} [${pct(r.ci95[0])}, ${pct(r.ci95[1])}] | ${r.imagesPerSecond.toFixed(1)} | ${r.visionMsPerImage.toFixed(2)}${speed} | ${r.tokenBlocksRatio.toFixed(2)} | ${typeCells.join(' | ')} |`);
  }
  return lines.join('\n');
}

/**
 * The summary: one row per rule, one column per budget (accuracy [95 % CI] in %); a cell whose
 * decoder ends with another token count than the budget's (ToMe's floor) says it in brackets.
 */
export function budgetTable(rows: EvalRow[]): string {
  const budgets = [...new Set(rows.filter((r) => r.budget !== 'all').map((r) => r.budget))];
  const target = (b: string) => rows.find((r) => r.budget === b && r.rule === 'fastv')?.imageTokens ?? rows.find((r) => r.budget === b)!.imageTokens;
  const cell = (r: EvalRow | undefined, tokens: number) =>
    r ? `${pct(r.accuracy)} [${pct(r.ci95[0])}, ${pct(r.ci95[1])}]${r.imageTokens !== tokens ? ` (${r.imageTokens})` : ''}` : '';
  const lines = [`| rule | ${budgets.map((b) => `${b} (${target(b)})`).join(' | ')} |`, `|---|${budgets.map(() => '---').join('|')}|`];
  for (const rule of [...new Set(rows.map((r) => r.rule))]) {
    const own = rows.filter((r) => r.rule === rule);
    if (own.length === 1 && own[0].budget === 'all') {
      lines.push(`| ${rule} (${own[0].imageTokens}) | ${cell(own[0], own[0].imageTokens)} |${budgets.slice(1).map(() => ' |').join('')}`);
      continue;
    }
    lines.push(`| ${rule} | ${budgets.map((b) => cell(own.find((r) => r.budget === b), target(b))).join(' | ')} |`);
  }
  return lines.join('\n');
}
