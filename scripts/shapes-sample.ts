// Writes the sample image of the default model (models/default/sample.png) and its question
// (sample.json): a generated scene from its own seed (not in any split), 4 shapes.
//   node dist/scripts/shapes-sample.js [--out models/default]
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { scriptArgs, runScript } from './args.js';
import { Jimp } from 'jimp';
import seedrandom from 'seedrandom';
import { drawScene, type Scene } from '../src/train/shapes.js';

const args = scriptArgs('shapes-sample', 'usage: node dist/scripts/shapes-sample.js [--out models/default]', { out: { type: 'string', default: 'models/default' } });

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

async function main(): Promise<void> {
  for (let i = 0; ; i++) {
    const scene = drawScene(seedrandom(`illava-shapes/sample/${i}`));
    const shapes = new Set(scene.items.map((s) => s.shape));
    if (scene.items.length !== 4 || shapes.size !== 4) continue;
    const star = scene.items.find((s) => s.shape === 'star')!;
    const dir = resolve(args.out!);
    await writePng(scene, join(dir, 'sample.png'));
    const sample = {
      image: 'sample.png',
      prompt: 'What colour is the star?',
      answer: star.colour,
      other_questions: [
        { prompt: `Is there a ${star.colour} star?`, answer: 'yes' },
        { prompt: `Where is the ${star.colour} star?`, answer: ['top-left', 'top-right', 'bottom-left', 'bottom-right'][star.quadrant] },
        { prompt: `What shape is the ${scene.items[0].colour} object?`, answer: scene.items.filter((s) => s.colour === scene.items[0].colour).length === 1 ? scene.items[0].shape : null },
      ],
      seed: `illava-shapes/sample/${i}`,
      items: scene.items.map((s) => ({ shape: s.shape, colour: s.colour, x: Math.round(s.cx), y: Math.round(s.cy), r: s.r })),
    };
    writeFileSync(join(dir, 'sample.json'), JSON.stringify(sample, null, 2) + '\n');
    console.log(`wrote ${join(dir, 'sample.png')} (${sample.seed}): ${JSON.stringify(sample.items)}`);
    return;
  }
}

runScript('shapes-sample', main);
