// Run from the repository root after npm run build: node bench/eval/shapes-clip/position-probe.mjs MODEL_DIR [QUESTIONS]
// Does the decoder read where a patch is from its RoPE position? The same image features, no
// merging, fed with the image rows in raster order (plain), shuffled, or reversed within the
// image span (every position id unchanged): accuracy per question type on validation questions.
import * as tf from '@tensorflow/tfjs-core';
import seedrandom from 'seedrandom';
import { LlavaModel } from '../../../dist/src/llava.js';
import { KVCache } from '../../../dist/layers/kv-cache.js';
import { range } from '../../../dist/src/generation.js';
import { argmax } from '../../../dist/src/sampling.js';
import { examples, TASK_V4_TYPES } from '../../../dist/src/train/shapes.js';
const model = await LlavaModel.fromPretrained(process.argv[2], { backend: 'wasm' });
const data = examples('val', Number(process.argv[3] ?? 300), 5000, TASK_V4_TYPES);
const rng = seedrandom('shuffle');
const res = {};
for (const e of data) {
  const answer = model.tokenizer.encode(e.answer, { addBos: false })[0];
  for (const mode of ['plain', 'shuffled', 'reversed-rows']) {
    const p = await model.prepare({ prompt: e.question, images: [e.scene.image] });
    const [s, en] = p.spans[0];
    const n = p.embeddings.shape[0];
    const order = range(n);
    const img = range(en - s).map((i) => s + i);
    if (mode === 'shuffled') for (let i = img.length - 1; i > 0; i--) { const j = Math.floor(rng() * (i + 1)); [img[i], img[j]] = [img[j], img[i]]; }
    if (mode === 'reversed-rows') img.reverse();
    img.forEach((v, k) => (order[s + k] = v));
    const x = tf.tidy(() => tf.gather(p.embeddings, order));
    p.embeddings.dispose();
    const cache = new KVCache(model.decoder.layers.length);
    const logits = model.decoder.forward(x, range(n), cache).logits;
    cache.dispose(); x.dispose();
    const r = ((res[mode] ??= {})[e.type] ??= [0, 0]);
    r[0] += argmax(logits) === answer ? 1 : 0; r[1]++;
  }
}
for (const [mode, t] of Object.entries(res)) {
  const all = Object.values(t).reduce((a, [c, n]) => [a[0] + c, a[1] + n], [0, 0]);
  console.log(mode.padEnd(14), `${(100 * all[0] / all[1]).toFixed(1)} %`, Object.entries(t).map(([k, [c, n]]) => `${k} ${c}/${n}`).join('  '));
}
