// Training curves of a shapes model: validation accuracy (overall and per question type) against
// the step, from the logs of scripts/train.ts (the segments of one resumed run, in order).
//   node dist/scripts/plot-training.js --out bench/eval/shapes-clip/training LOG...
// writes OUT.png and OUT.json and prints the points as a table.
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Chart } from './plot-canvas.js';
import { validationPoints } from './training-log.js';
import { runScript } from './args.js';

const TYPE_COLOURS: Record<string, number> = {
  colour: 0xd62728ff,
  shape: 0xff7f0eff,
  count: 0x9467bdff,
  where: 0x1f77b4ff,
  exist: 0x2ca02cff,
  relation: 0x8c564bff,
};

async function main(): Promise<void> {
  const usage = 'usage: node dist/scripts/plot-training.js --out PREFIX [--bar 0.93] [--title T] LOG...';
  const { values, positionals } = parseArgs({ options: { out: { type: 'string' }, bar: { type: 'string', default: '0.93' }, title: { type: 'string', default: 'validation accuracy vs training step' }, help: { type: 'boolean', short: 'h' } }, allowPositionals: true });
  if (values.help) return void process.stdout.write(`${usage}\n`);
  if (!values.out || positionals.length === 0) throw new Error(`--out and at least one log are required (${usage})`);
  const bar = Number(values.bar);
  if (!(bar > 0 && bar <= 1)) throw new Error(`--bar expects a fraction in (0, 1], got '${values.bar}'`);
  const points = validationPoints(positionals.map((name) => ({ name, text: readFileSync(name, 'utf8') })));
  if (points.length === 0) throw new Error('no validation lines in the logs');
  const types = Object.keys(TYPE_COLOURS).filter((t) => points.some((p) => t in p.byType));
  const last = points[points.length - 1].step;
  const span = Math.ceil(last / 500) * 500;
  const ticks = Array.from({ length: span / 500 + 1 }, (_, i) => i * 500);
  const lowest = Math.min(...points.flatMap((p) => [p.accuracy, ...Object.values(p.byType)]));
  const chart = await Chart.create({ x: { min: 0, max: span, ticks, label: 'training step (joint stage)' }, yMin: Math.max(0, Math.floor(lowest * 10) / 10), title: values.title! });
  chart.level(bar, 0x000000ff, 6);
  for (const t of types) {
    for (const p of points) if (t in p.byType) chart.dot(chart.X(p.step), chart.Y(p.byType[t]), TYPE_COLOURS[t], 1);
    chart.legend(t, TYPE_COLOURS[t]);
  }
  // overall: the measured points, joined (each segment is between two measured validations)
  points.forEach((p, i) => {
    if (i > 0) chart.line(chart.X(points[i - 1].step), chart.Y(points[i - 1].accuracy), chart.X(p.step), chart.Y(p.accuracy), 0x000000ff, 0);
    chart.dot(chart.X(p.step), chart.Y(p.accuracy), 0x000000ff, 3);
  });
  chart.legend('overall', 0x000000ff);
  chart.legend(`bar ${Math.round(bar * 100)} %`, 0x000000ff, true);
  await chart.write(`${values.out}.png`);
  writeFileSync(`${values.out}.json`, JSON.stringify({ logs: positionals, points }, null, 2) + '\n');
  console.log(`| step | overall | ${types.join(' | ')} |\n|---:|---:|${types.map(() => '---:|').join('')}`);
  for (const p of points) console.log(`| ${p.step} | ${(p.accuracy * 100).toFixed(1)} | ${types.map((t) => (t in p.byType ? Math.round(p.byType[t] * 100) : '')).join(' | ')} |`);
  console.log(`wrote ${values.out}.png and ${values.out}.json`);
}

runScript('plot-training', main);
