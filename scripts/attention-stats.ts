// Where the vision tower's attention goes (issue 14): per encoder block, the attention each patch
// token receives (iLLaVA's vision score: mean over heads and queries), shape patches against
// background patches, over test images. This is what decides what iLLaVA merges first.
//   node dist/scripts/attention-stats.js [--model default|DIR] [--images 200] [--out FILE.json]
// How the attention is read: the 'illava-prune' rule with remove 0 (an identity plan: the answer is
// untouched) at every block makes the model hand the block's attention probabilities to the rule;
// this script wraps that registry entry's plan function to record attentionReceived() first. The
// wrap lives only in this process.
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { scriptArgs, runScript } from './args.js';
import { LlavaModel } from '../src/llava.js';
import { VISION_RULE_ENTRIES, attentionReceived, type VisionRuleInput, type VisionStep } from '../merge/index.js';
import { examples, patchOwners, TASK_V4_TYPES } from '../src/train/shapes.js';
import { resolveModelDir } from '../src/embedded.js';

const args = scriptArgs('attention-stats', 'usage: node dist/scripts/attention-stats.js [--model default|DIR] [--images 200] [--out FILE.json]', {
  model: { type: 'string', default: 'default' },
  images: { type: 'string', default: '200' },
  out: { type: 'string' },
});

const BLOCKS = [0, 1, 2, 3];

interface BlockStats {
  block: number;
  /** Mean attention received by a shape patch / by a background patch, each over the patch mean (1 = average patch). */
  shapeRelative: number;
  backgroundRelative: number;
  /** Images whose least-attended patch is a shape patch. */
  leastAttendedIsShape: number;
  /** Mean rank of the shape patches among the 64 (0 = least attended, 1 = most), over all shape patches. */
  shapeRankPercentile: number;
  /** Share of all attention that goes to the CLS token. */
  clsShare: number;
}

async function main(): Promise<void> {
  const model = await LlavaModel.fromPretrained(resolveModelDir(args.model), { backend: 'wasm' });
  const count = Number(args.images);
  const recorded: Float32Array[] = [];
  const entry = VISION_RULE_ENTRIES['illava-prune'];
  const original = entry.plan;
  entry.plan = (s: VisionStep, i: VisionRuleInput) => {
    recorded.push(attentionReceived(i.attn!));
    return original(s, i);
  };
  const acc = BLOCKS.map(() => ({ shape: 0, shapeN: 0, bg: 0, bgN: 0, least: 0, rank: 0, cls: 0 }));
  const data = examples('test', count, 0, TASK_V4_TYPES);
  for (const e of data) {
    recorded.length = 0;
    await model.generate({ prompt: e.question, images: [e.scene.image], maxNewTokens: 1, merge: { vision: { rule: 'illava-prune', layers: BLOCKS, remove: 0 } } });
    const owners = patchOwners(e.scene, 14);
    recorded.forEach((scores, b) => {
      const patches = Array.from(scores.subarray(1));
      const mean = patches.reduce((x, y) => x + y, 0) / patches.length;
      const order = patches.map((_, i) => i).sort((x, y) => patches[x] - patches[y]);
      const rankOf = new Map(order.map((p, r) => [p, r / (patches.length - 1)]));
      const a = acc[b];
      a.cls += scores[0] / (scores[0] + patches.reduce((x, y) => x + y, 0));
      patches.forEach((v, p) => {
        if (owners[p]) {
          a.shape += v / mean;
          a.shapeN++;
          a.rank += rankOf.get(p)!;
        } else {
          a.bg += v / mean;
          a.bgN++;
        }
      });
      a.least += owners[order[0]] ? 1 : 0;
    });
  }
  model.dispose();
  const stats: BlockStats[] = acc.map((a, b) => ({
    block: BLOCKS[b],
    shapeRelative: a.shape / a.shapeN,
    backgroundRelative: a.bg / a.bgN,
    leastAttendedIsShape: a.least / count,
    shapeRankPercentile: a.rank / a.shapeN,
    clsShare: a.cls / count,
  }));
  console.log(`${args.model}: ${count} test images, attention received per patch over the patch mean`);
  console.log('| block | shape patches | background patches | least-attended patch is a shape | mean rank of shape patches (0 = least) | CLS share |');
  console.log('|---|---|---|---|---|---|');
  for (const s of stats) console.log(`| ${s.block} | ${s.shapeRelative.toFixed(2)} | ${s.backgroundRelative.toFixed(2)} | ${(100 * s.leastAttendedIsShape).toFixed(0)} % | ${s.shapeRankPercentile.toFixed(2)} | ${(100 * s.clsShare).toFixed(1)} % |`);
  if (args.out) writeFileSync(resolve(args.out), JSON.stringify({ model: args.model, images: count, split: 'test', blocks: stats }, null, 2) + '\n');
}

runScript('attention-stats', main);
