// Vision-stage speed of every eval setting (scripts/eval.ts settings()), measured interleaved: image
// i is run under every setting before image i + 1, so a change in the machine's load (it is shared)
// hits all settings alike. Per setting: the median over the images of StageTimings.visionMs (tower +
// projector, the vision-stage merges included) and the speed-up of 'none''s median over it.
//   node dist/scripts/vision-speed.js [--model default|DIR] [--images 100] [--out FILE.json]
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { scriptArgs, runScript } from './args.js';
import { LlavaModel } from '../src/llava.js';
import { examples, TASK_V4_TYPES } from '../src/train/shapes.js';
import { settings } from './eval-settings.js';
import { resolveModelDir } from '../src/embedded.js';

const args = scriptArgs('vision-speed', 'usage: node dist/scripts/vision-speed.js [--model default|DIR] [--images 100] [--out FILE.json]', {
  model: { type: 'string', default: 'default' },
  images: { type: 'string', default: '100' },
  out: { type: 'string' },
});

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

async function main(): Promise<void> {
  const model = await LlavaModel.fromPretrained(resolveModelDir(args.model), { backend: 'wasm' });
  const data = examples('test', Number(args.images), 0, TASK_V4_TYPES);
  const all = settings();
  const times = all.map(() => [] as number[]);
  // warm-up: every setting once (kernels for every token count)
  for (const s of all) await model.generate({ prompt: data[0].question, images: [data[0].scene.image], maxNewTokens: 1, merge: s.merge });
  for (const e of data) {
    for (let k = 0; k < all.length; k++) {
      const out = await model.generate({ prompt: e.question, images: [e.scene.image], maxNewTokens: 1, merge: all[k].merge });
      times[k].push(out.timings.visionMs);
    }
  }
  model.dispose();
  const base = median(times[0]);
  const rows = all.map((s, k) => ({ rule: s.rule, budget: s.budget, visionMsMedian: median(times[k]), speedup: base / median(times[k]) }));
  console.log(`${args.model}: vision stage, median of ${data.length} interleaved images`);
  console.log('| rule | budget | vision ms (median) | speed-up |\n|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.rule} | ${r.budget} | ${r.visionMsMedian.toFixed(2)} | ${r.speedup.toFixed(2)}x |`);
  if (args.out) writeFileSync(resolve(args.out), JSON.stringify({ model: args.model, images: data.length, rows }, null, 2) + '\n');
}

runScript('vision-speed', main);
