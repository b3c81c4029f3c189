// The eval's accuracy plot (scripts/eval.ts): accuracy against the image tokens the decoder ends
// with, one colour per rule, each measured point with its 95 % interval as a vertical bar; no line
// joins points (nothing between them was measured). Dashed black: unmerged; dotted grey: chance.
// Points of different rules at the same token count are spread a little sideways to stay visible.
import { Jimp, loadFont } from 'jimp';
import { SANS_16_BLACK } from 'jimp/fonts';
import type { EvalRow } from './eval-table.js';

const COLOURS: Record<string, number> = {
  none: 0x000000ff,
  illava: 0xd62728ff,
  'illava-similarity': 0xff7f0eff,
  'illava-prune': 0x8c564bff,
  redundancy: 0x9467bdff,
  tome: 0x1f77b4ff,
  fastv: 0x2ca02cff,
};

export async function plotAccuracy(rows: EvalRow[], path: string, chance: number, title: string): Promise<void> {
  const W = 820;
  const H = 480;
  const img = new Jimp({ width: W, height: H, color: 0xffffffff });
  const font = await loadFont(SANS_16_BLACK);
  const left = 70;
  const right = W - 200;
  const top = 40;
  const bottom = H - 60;
  const yMin = Math.max(0, Math.floor((Math.min(chance, ...rows.map((r) => r.ci95[0])) - 0.05) * 10) / 10);
  const yMax = 1;
  const X = (t: number) => left + (t / 64) * (right - left);
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
  img.print({ font, x: left + 120, y: H - 28, text: 'image tokens in the decoder (of 64)' });
  img.print({ font, x: left, y: 10, text: title });
  const none = rows.find((r) => r.rule === 'none');
  if (none) line(X(0), Y(none.accuracy), X(64), Y(none.accuracy), COLOURS.none, 0, 6);
  line(X(0), Y(chance), X(64), Y(chance), 0x888888ff, 0, 2);
  const rules = Object.keys(COLOURS).filter((rule) => rows.some((r) => r.rule === rule));
  let legendY = top;
  rules.forEach((rule, k) => {
    const offset = rule === 'none' ? 0 : (k - rules.length / 2) * 1.6;
    for (const r of rows.filter((x) => x.rule === rule)) {
      const x = X(r.imageTokens) + offset;
      line(x, Y(r.ci95[0]), x, Y(r.ci95[1]), COLOURS[rule], 0);
      dot(x, Y(r.accuracy), COLOURS[rule], 3);
    }
    dot(right + 30, legendY + 9, COLOURS[rule], 3);
    img.print({ font, x: right + 45, y: legendY, text: rule });
    legendY += 24;
  });
  line(right + 20, legendY + 9, right + 40, legendY + 9, 0x888888ff, 0, 2);
  img.print({ font, x: right + 45, y: legendY, text: 'chance' });
  await img.write(path as `${string}.png`);
}
