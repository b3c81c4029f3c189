// The browser bundle (dist/web, scripts/build-web.ts) in a real headless Chromium: the page's
// LlavaModel gives the same answer and logits as Node's on the embedded model and the tiny-llava
// fixture (wasm backend, merge presets none and illava), its preprocessing reproduces the
// fixture's pixel_values (an independent reference: HF CLIPImageProcessor on PIL), webgl gives
// the same greedy tokens, and the demo page answers (screenshot in the artifact folder).
// Skipped, with a message, only when no Chromium is installed (.ci/run installs Debian's).
import { expect } from 'chai';
import { mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { LlavaModel } from '../src/llava.js';
import { findChromium, startBrowserSession, type BrowserSession } from './helpers/browser.js';
import { REPO_ROOT, expectedArray, maxAbsDiff, maxRelDiff } from './helpers/fixture.js';
import { pageGenerate, pagePixelValues, type PageAnswer } from './helpers/browser-page.js';

/** Where the demo screenshot is written ($ILLAVA_ARTIFACTS_DIR, default artifacts/ at the repo root). */
const ARTIFACTS = process.env.ILLAVA_ARTIFACTS_DIR ?? join(REPO_ROOT, 'artifacts');

interface Case {
  name: string;
  /** Folder under the repo root, and its URL path on the test server. */
  dir: string;
  url: string;
  image: string;
  prompt: string;
  maxNewTokens: number;
}

const CASES: Case[] = [
  { name: 'embedded default model', dir: 'models/default', url: '/models/default/', image: 'sample.png', prompt: 'What colour is the star?', maxNewTokens: 4 },
  { name: 'tiny-llava fixture', dir: 'test/fixtures/tiny-llava', url: '/fixtures/tiny-llava/', image: 'image.png', prompt: 'What is shown in this image?', maxNewTokens: 4 },
];

/** Node's answer for the same call (wasm backend, image decoded from the file). */
async function nodeGenerate(model: LlavaModel, c: Case, merge: string) {
  // (model: loaded with the same weightFormat as the page's)
  const out = await model.generate({ prompt: c.prompt, images: [join(REPO_ROOT, c.dir, c.image)], merge: merge as 'none', maxNewTokens: c.maxNewTokens, returnLogits: true });
  return { text: out.text, tokenIds: out.tokenIds, logits: (out.logits ?? []).map((l) => Array.from(l)), merges: out.merges.map((m) => ({ patches: m.patches, vision: m.vision, language: m.language, tokens: m.tokens })) };
}

/** Console errors other than the 404s of optional model files (index.json, chat_template.json). */
const realErrors = (errors: string[]) => errors.filter((e) => !/status of 404/.test(e));

describe('browser: the bundle in headless Chromium', function () {
  this.timeout(600_000);
  const chromium = findChromium();
  let session: BrowserSession | undefined;

  before(async function () {
    if (!chromium) {
      console.log('      browser tests skipped: no Chromium installed (apt-get install chromium, or set CHROMIUM_PATH)');
      this.skip();
    }
    statSync(join(REPO_ROOT, 'dist/web/illava.browser.js')); // built by npm run build
    session = await startBrowserSession(chromium as string);
  });

  after(async () => {
    await session?.close();
  });

  for (const c of CASES) {
    describe(c.name, () => {
      let node: LlavaModel;
      before(async function () {
        if (!session) this.skip();
        node = await LlavaModel.fromPretrained(join(REPO_ROOT, c.dir), { backend: 'wasm' });
      });
      after(() => node?.dispose());

      for (const merge of ['none', 'illava']) {
        it(`wasm, merge ${merge}: same answer, tokens and merge counts as Node, logits within 1e-4 relative`, async () => {
          const { page, errors } = await (session as BrowserSession).newPage();
          try {
            const got: PageAnswer = await pageGenerate(page, { dir: c.url, image: c.url + c.image, prompt: c.prompt, merge, backend: 'wasm', maxNewTokens: c.maxNewTokens });
            const want = await nodeGenerate(node, c, merge);
            expect([got.backend, got.decoderFormat]).to.deep.equal(['wasm', 'f32']);
            expect(got.text).to.equal(want.text);
            expect(got.tokenIds).to.deep.equal(want.tokenIds);
            expect(got.merges).to.deep.equal(want.merges);
            expect(got.logits.length).to.equal(want.logits.length);
            const rel = Math.max(...got.logits.map((row, i) => maxRelDiff(row, want.logits[i])));
            console.log(`      page vs Node: '${got.text.trim()}', ${got.tokenIds.length} tokens, logits max rel diff ${rel.toExponential(2)}`);
            expect(rel).to.be.at.most(1e-4);
            expect(realErrors(errors)).to.deep.equal([]);
          } finally {
            await page.close();
          }
        });
      }
      it('wasm, weights packed as q8_0 (our AssemblyScript kernels in the page): same tokens as Node q8_0, logits within 1e-4 relative', async () => {
        const nodeQ8 = await LlavaModel.fromPretrained(join(REPO_ROOT, c.dir), { backend: 'wasm', weightFormat: 'q8_0', quantizedCache: false });
        const { page, errors } = await (session as BrowserSession).newPage();
        try {
          const got = await pageGenerate(page, { dir: c.url, image: c.url + c.image, prompt: c.prompt, merge: 'none', backend: 'wasm', maxNewTokens: c.maxNewTokens, weightFormat: 'q8_0' });
          const want = await nodeGenerate(nodeQ8, c, 'none');
          expect([got.decoderFormat, got.packedBytes]).to.deep.equal([nodeQ8.layout.formats.decoder, nodeQ8.layout.packedBytes]);
          expect(got.decoderFormat).to.equal('q8_0');
          expect(got.kernels, 'Chromium validates relaxed SIMD: the page compiles kernels-relaxed.wasm').to.equal('relaxed');
          expect(got.tokenIds).to.deep.equal(want.tokenIds);
          expect(got.text).to.equal(want.text);
          const rel = Math.max(...got.logits.map((row, i) => maxRelDiff(row, want.logits[i])));
          console.log(`      page vs Node, q8_0: '${got.text.trim()}', logits max rel diff ${rel.toExponential(2)}`);
          expect(rel).to.be.at.most(1e-4);
          expect(realErrors(errors)).to.deep.equal([]);
        } finally {
          nodeQ8.dispose();
          await page.close();
        }
      });
    });
  }

  it("preprocesses the fixture photo in the page to the reference pixel_values (HF CLIPImageProcessor on PIL)", async function () {
    if (!session) this.skip();
    const { page } = await session.newPage();
    try {
      const got = await pagePixelValues(page, '/fixtures/tiny-llava/', '/fixtures/tiny-llava/image.png');
      const want = expectedArray('pixel_values');
      expect(got.length).to.equal(want.data.length);
      const diff = maxAbsDiff(got, want.data);
      console.log(`      page preprocessing: max pixel_values diff ${diff.toExponential(2)}`);
      expect(diff).to.be.at.most(1e-6); // the same bound as Node's (test/image.test.ts)
    } finally {
      await page.close();
    }
  });

  it('bad input in the page gets one clear line: a missing folder, a Node-only call, weightFormat auto, a non-image blob, an unknown backend', async function () {
    if (!session) this.skip();
    const { page } = await session.newPage();
    try {
      const messages = await page.evaluate(`(async () => {
        const il = await import('/illava.browser.js');
        const errorOf = async (f) => { try { await f(); return 'no error'; } catch (e) { return e.message; } };
        return [
          await errorOf(() => il.loadLlava('/models/no-such-model/', { backend: 'wasm' })),
          await errorOf(() => il.LlavaModel.fromPretrained('/models/default/')),
          await errorOf(() => il.loadLlava('/models/default/', { backend: 'wasm', weightFormat: 'auto' })),
          await errorOf(() => il.browserImageToRgb(new Blob(['not an image'], { type: 'text/plain' }))),
          await errorOf(() => il.loadLlava('/models/default/', { backend: 'metal' })),
        ];
      })()`) as string[];
      expect(messages[0]).to.match(/models\/no-such-model\/config\.json: file not found$/);
      expect(messages[1]).to.match(/^node:\S+ \w+\(\) is Node-only: the browser build loads models with loadLlava/);
      expect(messages[2]).to.match(/^weightFormat 'auto' is Node's choice/);
      expect(messages[3]).to.match(/^image: the browser cannot decode this text\/plain/);
      expect(messages[4]).to.match(/^unknown backend 'metal'/);
    } finally {
      await page.close();
    }
  });

  it('loads from File objects (a picked or dropped folder) to the same answer as from the URL', async function () {
    if (!session) this.skip();
    const { page } = await session.newPage();
    try {
      const got = await page.evaluate(`(async () => {
        const il = await import('/illava.browser.js');
        const names = ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'preprocessor_config.json', 'model.safetensors', 'README.md'];
        const files = await Promise.all(names.map(async (n) => new File([await (await fetch('/models/default/' + n)).blob()], n)));
        const rgb = await il.browserImageToRgb(await (await fetch('/models/default/sample.png')).blob());
        const ask = async (m) => (await m.generate({ prompt: 'What colour is the star?', images: [rgb], maxNewTokens: 4, returnLogits: true }));
        const fromFiles = await il.loadLlava(files, { backend: 'wasm' });
        const fromUrl = await il.loadLlava('/models/default/', { backend: 'wasm' });
        const a = await ask(fromFiles);
        const b = await ask(fromUrl);
        let diff = 0;
        a.logits.forEach((row, i) => row.forEach((v, j) => { diff = Math.max(diff, Math.abs(v - b.logits[i][j])); }));
        return { a: a.text, b: b.text, diff, origin: fromFiles.dir };
      })()`) as { a: string; b: string; diff: number; origin: string };
      expect(got.origin).to.equal('the files given');
      expect(got.a).to.equal(got.b);
      expect(got.diff).to.equal(0);
    } finally {
      await page.close();
    }
  });

  it('webgl (SwiftShader): the same greedy tokens as Node on the embedded model', async function () {
    if (!session) this.skip();
    const c = CASES[0];
    const { page, errors } = await session.newPage();
    const node = await LlavaModel.fromPretrained(join(REPO_ROOT, c.dir), { backend: 'wasm' });
    try {
      const got = await pageGenerate(page, { dir: c.url, image: c.url + c.image, prompt: c.prompt, merge: 'none', backend: 'webgl', maxNewTokens: c.maxNewTokens });
      const want = await nodeGenerate(node, c, 'none');
      expect(got.backend).to.equal('webgl');
      expect(got.tokenIds).to.deep.equal(want.tokenIds);
      expect(got.text).to.equal(want.text);
      expect(realErrors(errors)).to.deep.equal([]);
    } finally {
      node.dispose();
      await page.close();
    }
  });

  it('webgpu (SwiftShader over Vulkan): the same greedy tokens as Node on the embedded model; auto passes over the software adapter', async function () {
    if (!session) this.skip();
    // Without these flags this Chromium's WebGPU returns zeros from every compute shader (checked by hand).
    const gpu = await startBrowserSession(chromium as string, ['--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-vulkan=swiftshader', '--use-webgpu-adapter=swiftshader']);
    const c = CASES[0];
    const node = await LlavaModel.fromPretrained(join(REPO_ROOT, c.dir), { backend: 'wasm' });
    try {
      const { page } = await gpu.newPage();
      const hasAdapter = await page.evaluate('(async () => !!(navigator.gpu && await navigator.gpu.requestAdapter()))()');
      if (!hasAdapter) {
        console.log('      webgpu check skipped: this Chromium gives no WebGPU adapter even with --enable-unsafe-webgpu');
        this.skip();
      }
      const want = await nodeGenerate(node, c, 'none');
      const got = await pageGenerate(page, { dir: c.url, image: c.url + c.image, prompt: c.prompt, merge: 'none', backend: 'webgpu', maxNewTokens: c.maxNewTokens });
      expect(got.backend).to.equal('webgpu');
      expect(got.tokenIds).to.deep.equal(want.tokenIds);
      expect(got.text).to.equal(want.text);
      const fresh = (await gpu.newPage()).page; // 'auto' keeps a backend already chosen: ask in a new page
      const auto = await pageGenerate(fresh, { dir: c.url, image: c.url + c.image, prompt: c.prompt, merge: 'none', backend: 'auto', maxNewTokens: 1 });
      expect(auto.backend).to.equal('wasm'); // software WebGPU and WebGL are passed over
    } finally {
      node.dispose();
      await gpu.close();
    }
  });

  it('the demo page answers the sample question as Node does (merge illava); a screenshot is written to the artifact folder', async function () {
    if (!session) this.skip();
    const c = CASES[0];
    const node = await LlavaModel.fromPretrained(join(REPO_ROOT, c.dir), { backend: 'wasm' });
    const want = await nodeGenerate(node, { ...c, maxNewTokens: 32 }, 'illava');
    node.dispose();
    const { page, errors } = await session.newPage('index.html?backend=wasm');
    try {
      await page.setViewport({ width: 1100, height: 900 });
      await page.waitForSelector('#ask:not([disabled])', { timeout: 120_000 });
      await page.select('#merge', 'illava');
      await page.click('#ask');
      await page.waitForSelector('body[data-state="answered"]', { timeout: 120_000 });
      const answer = await page.$eval('#answer', (e) => e.textContent ?? '');
      expect(answer).to.equal(want.text);
      const counts = await page.$eval('#counts', (e) => e.textContent ?? '');
      const m = want.merges[0];
      expect(counts).to.contain(`image: ${m.patches} patches -> ${m.tokens} tokens`);
      const pictures = await page.$$eval('#pictures canvas', (cs) => cs.length);
      expect(pictures).to.equal(1 + m.vision.length + m.language.length); // the input, then one per merge step
      mkdirSync(join(ARTIFACTS, 'browser'), { recursive: true });
      const path = join(ARTIFACTS, 'browser', 'demo-answer.png');
      await page.screenshot({ path, fullPage: true });
      const bytes = statSync(path).size;
      console.log(`      demo screenshot: ${path} (${bytes} bytes), answer '${answer.trim()}', ${counts.split('\n')[0]}`);
      expect(bytes).to.be.within(20_000, 5_000_000);
      expect(realErrors(errors)).to.deep.equal([]);
    } finally {
      await page.close();
    }
  });
});
