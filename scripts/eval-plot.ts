// The eval's accuracy plot (scripts/eval.ts): accuracy against the image tokens the decoder ends
// with, one colour per rule, each measured point with its 95 % interval as a vertical bar; no line
// joins points (nothing between them was measured). Dashed black: unmerged; dotted grey: chance.
// Points of different rules at the same token count are spread a little sideways to stay visible.
import type { EvalRow } from './eval-table.js';
import { Chart } from './plot-canvas.js';

const COLOURS: Record<string, number> = {
  none: 0x000000ff,
  illava: 0xd62728ff,
  'illava-similarity': 0xff7f0eff,
  'illava-prune': 0x8c564bff,
  'illava+positions': 0xe377c2ff,
  redundancy: 0x9467bdff,
  tome: 0x1f77b4ff,
  fastv: 0x2ca02cff,
};

export async function plotAccuracy(rows: EvalRow[], path: string, chance: number, title: string): Promise<void> {
  const yMin = Math.max(0, Math.floor((Math.min(chance, ...rows.map((r) => r.ci95[0])) - 0.05) * 10) / 10);
  const ticks = Array.from({ length: 9 }, (_, i) => i * 8);
  const chart = await Chart.create({ x: { min: 0, max: 64, ticks, label: 'image tokens in the decoder (of 64)' }, yMin, title });
  const none = rows.find((r) => r.rule === 'none');
  if (none) chart.level(none.accuracy, COLOURS.none, 6);
  chart.level(chance, 0x888888ff, 2);
  const rules = Object.keys(COLOURS).filter((rule) => rows.some((r) => r.rule === rule));
  rules.forEach((rule, k) => {
    const offset = rule === 'none' ? 0 : (k - rules.length / 2) * 1.6;
    for (const r of rows.filter((x) => x.rule === rule)) {
      const x = chart.X(r.imageTokens) + offset;
      chart.line(x, chart.Y(r.ci95[0]), x, chart.Y(r.ci95[1]), COLOURS[rule], 0);
      chart.dot(x, chart.Y(r.accuracy), COLOURS[rule], 3);
    }
    chart.legend(rule, COLOURS[rule]);
  });
  chart.legend('chance', 0x888888ff, true);
  await chart.write(path);
}
