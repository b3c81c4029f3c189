// Run from the repository root after npm run build: node bench/eval/shapes-clip/probe-tower.mjs TOWER.safetensors [...]
// Ridge-regression probe of the frozen tower's patch features (layer -2): colour and shape of the
// shape in a patch, and shape-vs-background, trained on 150 val images, tested on 150 others.
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../../../dist/src/backend.js';
import { ImageProcessor } from '../../../dist/src/preprocess.js';
import { LlavaTokenizer } from '../../../dist/src/tokenizer.js';
import { makeCaptionBatch } from '../../../dist/src/train/contrastive.js';
import { SHAPES_MODEL } from '../../../dist/src/train/export.js';
import { TrainableLlava } from '../../../dist/src/train/model.js';
import { patchOwners, COLOURS, SHAPES } from '../../../dist/src/train/shapes.js';
import { SafetensorsFile } from '../../../dist/weights/safetensors.js';
await selectBackend('wasm');
const dir = 'models/default'; // tokenizer + preprocessor only
const ctx = { shape: SHAPES_MODEL, processor: await ImageProcessor.fromFile(dir), tokenizer: await LlavaTokenizer.fromDir(dir) };
function feats(m, start, n) {
  const X = [], col = [], shp = [], fg = [];
  for (let s = start; s < start + n; s += 25) {
    const b = makeCaptionBatch(ctx, 'val', s, 25);
    const x = tf.tidy(() => m.towerTokens(tf.tensor2d(b.patches, [25 * 64, 588]), 25, 5, 4).arraySync());
    b.scenes.forEach((sc, i) => patchOwners(sc, 14).forEach((it, p) => {
      X.push([...x[i * 65 + 1 + p], 1]); fg.push(it ? 1 : 0);
      col.push(it ? COLOURS.indexOf(it.colour) : -1); shp.push(it ? SHAPES.indexOf(it.shape) : -1);
    }));
  }
  return { X, col, shp, fg };
}
function ridge(X, Y) { return tf.tidy(() => { const x = tf.tensor2d(X), y = tf.tensor2d(Y); const a = tf.add(tf.matMul(x, x, true, false), tf.mul(tf.eye(x.shape[1]), 1e-2)); return tf.matMul(tf.matMul(tf.tensor2d(inv(a.arraySync())), x, false, true), y).arraySync(); }); }
function inv(A) { const n = A.length; const M = A.map((r, i) => [...r, ...r.map((_, j) => (i === j ? 1 : 0))]); for (let c = 0; c < n; c++) { let p = c; for (let r = c + 1; r < n; r++) if (Math.abs(M[r][c]) > Math.abs(M[p][c])) p = r; [M[c], M[p]] = [M[p], M[c]]; const d = M[c][c]; for (let j = 0; j < 2 * n; j++) M[c][j] /= d; for (let r = 0; r < n; r++) if (r !== c) { const f = M[r][c]; for (let j = 0; j < 2 * n; j++) M[r][j] -= f * M[c][j]; } } return M.map((r) => r.slice(n)); }
const acc = (W, X, labels, k) => { let ok = 0, n = 0; X.forEach((x, i) => { if (labels[i] < 0) return; const s = W[0].map((_, j) => x.reduce((a, v, d) => a + v * W[d][j], 0)); ok += s.indexOf(Math.max(...s)) === labels[i] ? 1 : 0; n++; }); return `${ok}/${n}`; };
for (const file of process.argv.slice(2)) {
  const m = new TrainableLlava(SHAPES_MODEL, 0);
  const f = SafetensorsFile.open(file);
  m.importTensors((n) => (f.entry(n) ? f.readFloat32(n) : undefined), new Set(m.towerVariables()));
  const tr = feats(m, 0, 150), te = feats(m, 1000, 150);
  const onehot = (l, k) => l.map((v) => Array.from({ length: k }, (_, j) => (v === j ? 1 : 0)));
  const sel = (d, l) => d.X.filter((_, i) => l[i] >= 0);
  const Wc = ridge(sel(tr, tr.col), onehot(tr.col.filter((v) => v >= 0), 5));
  const Ws = ridge(sel(tr, tr.shp), onehot(tr.shp.filter((v) => v >= 0), 4));
  const Wf = ridge(tr.X, onehot(tr.fg, 2));
  console.log(file, 'colour', acc(Wc, te.X, te.col), 'shape', acc(Ws, te.X, te.shp), 'shape-vs-background', acc(Wf, te.X, te.fg));
}
