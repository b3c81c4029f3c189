// Writes the sample image of a shapes model (sample.png) and its questions (sample.json): a
// generated scene from its own seed (not in any split), 4 shapes. --task v3 (models/default): four
// different shapes, a colour question first; --task v4 (models/shapes-clip): a shape present
// twice, a counting question first, then relation / where / colour (answers from the task's own
// question generator, src/train/shapes.ts candidates()).
//   node dist/scripts/shapes-sample.js [--out models/default] [--task v3|v4]
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { scriptArgs, runScript } from './args.js';
import { Jimp } from 'jimp';
import seedrandom from 'seedrandom';
import { candidates, drawScene, QUADRANTS, type Question, type Scene } from '../src/train/shapes.js';

const args = scriptArgs('shapes-sample', 'usage: node dist/scripts/shapes-sample.js [--out models/default] [--task v3|v4]', {
  out: { type: 'string', default: 'models/default' },
  task: { type: 'string', default: 'v3' },
});

export async function writePng(scene: Scene, path: string): Promise<void> {
  const { width, height, data } = scene.image;
  const rgba = Buffer.alloc(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    rgba[4 * i] = data[3 * i];
    rgba[4 * i + 1] = data[3 * i + 1];
    rgba[4 * i + 2] = data[3 * i + 2];
    rgba[4 * i + 3] = 255;
  }
  const img = new Jimp({ width, height, data: rgba });
  await img.write(path as `${string}.png`);
}

/** v3: four different shapes; the star's colour, then exist / where / shape. */
function v3Questions(scene: Scene): Array<{ prompt: string; answer: string | null }> | null {
  const shapes = new Set(scene.items.map((s) => s.shape));
  if (shapes.size !== 4) return null;
  const star = scene.items.find((s) => s.shape === 'star')!;
  return [
    { prompt: 'What colour is the star?', answer: star.colour },
    { prompt: `Is there a ${star.colour} star?`, answer: 'yes' },
    { prompt: `Where is the ${star.colour} star?`, answer: QUADRANTS[star.quadrant] },
    { prompt: `What shape is the ${scene.items[0].colour} object?`, answer: scene.items.filter((s) => s.colour === scene.items[0].colour).length === 1 ? scene.items[0].shape : null },
  ];
}

/** v4: a shape present exactly twice; its count, then one relation, where and colour question each. */
function v4Questions(scene: Scene): Array<{ prompt: string; answer: string | null }> | null {
  const never = () => 0;
  const count = candidates(scene, 'count', never).find((q) => q.answer === 'two');
  const others = (['relation', 'where', 'colour'] as const).map((t) => candidates(scene, t, never)[0] as Question | undefined);
  if (!count || others.some((q) => !q)) return null;
  return [count, ...(others as Question[])].map((q) => ({ prompt: q.question, answer: q.answer }));
}

async function main(): Promise<void> {
  if (args.task !== 'v3' && args.task !== 'v4') throw new Error(`--task must be v3 or v4, got '${args.task}'`);
  for (let i = 0; ; i++) {
    const scene = drawScene(seedrandom(`illava-shapes/sample/${i}`));
    if (scene.items.length !== 4) continue;
    const questions = args.task === 'v3' ? v3Questions(scene) : v4Questions(scene);
    if (!questions) continue;
    const dir = resolve(args.out!);
    await writePng(scene, join(dir, 'sample.png'));
    const sample = {
      image: 'sample.png',
      prompt: questions[0].prompt,
      answer: questions[0].answer,
      other_questions: questions.slice(1),
      seed: `illava-shapes/sample/${i}`,
      items: scene.items.map((s) => ({ shape: s.shape, colour: s.colour, x: Math.round(s.cx), y: Math.round(s.cy), r: s.r })),
    };
    writeFileSync(join(dir, 'sample.json'), JSON.stringify(sample, null, 2) + '\n');
    console.log(`wrote ${join(dir, 'sample.png')} (${sample.seed}): ${JSON.stringify(sample.items)}`);
    return;
  }
}

runScript('shapes-sample', main);
