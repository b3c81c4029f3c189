// npm run bench:browser [-- --rounds N]: the embedded model's load time and answer time in
// headless Chromium (the bundle, wasm backend) next to Node's, interleaved in one run (Node, page,
// Node, page, ...) so both see the same machine load. Each round loads afresh (Node: a new
// LlavaModel.fromPretrained; page: a new page, loadLlava over HTTP from 127.0.0.1) and answers the
// sample question (image decoded from sample.png, greedy, merge none). Prints a markdown table.
import { Command } from 'commander';
import { join } from 'node:path';
import { LlavaModel } from '../src/llava.js';
import { findChromium, startBrowserSession } from '../test/helpers/browser.js';
import { pageGenerate } from '../test/helpers/browser-page.js';
import { REPO_ROOT } from '../test/helpers/fixture.js';

const opts = new Command('bench-browser').option('--rounds <n>', 'rounds (each: Node then page)', '5').option('--merge <preset>', 'merge preset', 'none').parse().opts<{ rounds: string; merge: string }>();
const rounds = Number(opts.rounds);
if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds must be a positive integer, got '${opts.rounds}'`);
const chromium = findChromium();
if (!chromium) throw new Error('bench-browser: no Chromium installed (apt-get install chromium, or set CHROMIUM_PATH)');
const dir = join(REPO_ROOT, 'models/default');
const prompt = 'What colour is the star?';
const session = await startBrowserSession(chromium);
const rows: Record<'node' | 'page', { load: number[]; answer: number[]; text: string }> = { node: { load: [], answer: [], text: '' }, page: { load: [], answer: [], text: '' } };
try {
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    const model = await LlavaModel.fromPretrained(dir, { backend: 'wasm' });
    const t1 = performance.now();
    const out = await model.generate({ prompt, images: [join(dir, 'sample.png')], merge: opts.merge as 'none', maxNewTokens: 8 });
    const t2 = performance.now();
    model.dispose();
    rows.node.load.push(t1 - t0);
    rows.node.answer.push(t2 - t1);
    rows.node.text = out.text;
    const { page } = await session.newPage();
    const got = await pageGenerate(page, { dir: '/models/default/', image: '/models/default/sample.png', prompt, merge: opts.merge, backend: 'wasm', maxNewTokens: 8 });
    await page.close();
    rows.page.load.push(got.loadMs);
    rows.page.answer.push(got.answerMs);
    rows.page.text = got.text;
  }
} finally {
  await session.close();
}
const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const fmt = (v: number[]) => `${median(v).toFixed(0)} (${Math.min(...v).toFixed(0)}-${Math.max(...v).toFixed(0)})`;
console.log(`embedded model (models/default), wasm backend, merge ${opts.merge}, ${rounds} interleaved rounds; median (min-max) ms`);
console.log('| where | load ms | answer ms | answer |');
console.log('|---|---|---|---|');
for (const k of ['node', 'page'] as const) console.log(`| ${k === 'node' ? 'Node' : 'Chromium page'} | ${fmt(rows[k].load)} | ${fmt(rows[k].answer)} | ${JSON.stringify(rows[k].text.trim())} |`);
