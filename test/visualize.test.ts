// Merge visualisation (src/visualize.ts, `illava visualize`) on the tiny fixture: the PNG files are
// written, decode, and have the expected pixel sizes; the pictures follow the merge report.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Jimp } from 'jimp';
import { LlavaModel } from '../src/llava.js';
import { defaultScale, stagePictureSize, visualize } from '../src/visualize.js';
import { REPO_ROOT, TINY_LLAVA_DIR } from './helpers/fixture.js';

async function size(file: string): Promise<{ width: number; height: number }> {
  const image = await Jimp.read(file);
  return { width: image.bitmap.width, height: image.bitmap.height };
}

describe('merge visualisation (tiny-llava)', function () {
  this.timeout(60000);
  let model: LlavaModel;
  let dir: string;
  const image = join(TINY_LLAVA_DIR, 'image.png');

  before(async () => {
    model = await LlavaModel.fromPretrained(TINY_LLAVA_DIR, { backend: 'wasm' });
    dir = mkdtempSync(join(tmpdir(), 'illava-vis-'));
  });
  after(() => {
    model?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes one picture per merge step (vision layers and the language stage), an overview and the count plot', async () => {
    const out = await visualize(model, { image, merge: 'illava', outDir: join(dir, 'api') });
    // tiny preset: vision merges at layers 0 and 1 (16 -> 12 -> 8), LLM merge before layer 1 (-> 5).
    expect(out.stages.map((s) => `${s.stage}:${s.layer}:${s.tokens}`)).to.deep.equal(['input:-1:16', 'vision:0:12', 'vision:1:8', 'llm:1:5']);
    expect(out.config.trackSources).to.equal(true);
    expect(defaultScale(56)).to.equal(8);
    const expected = stagePictureSize(56, 8);
    expect(expected).to.deep.equal({ width: 448, height: 476 });
    for (const s of out.stages) {
      expect(existsSync(s.file), s.file).to.equal(true);
      expect(await size(s.file)).to.deep.equal(expected);
    }
    expect(await size(out.overview)).to.deep.equal({ width: 4 * 448 + 3 * 8, height: 476 });
    expect(await size(out.plot)).to.deep.equal({ width: 760, height: 420 });
    expect(out.files).to.have.length(6);
    // Merged regions are visible: after the vision stage 16 patches sit in 8 tokens, so some tokens hold several.
    expect(out.stages[2].regions).to.be.greaterThan(0);
    expect(out.counts.map((c) => c.name)).to.deep.equal(['none', 'illava', 'tome', 'fastv']);
    expect(out.counts[0]).to.deep.equal({ name: 'none', vision: [16, 16], llm: [16, 16] });
    expect(out.counts[1]).to.deep.equal({ name: 'illava', vision: [12, 8], llm: [8, 5] });
    expect(out.counts[3]).to.deep.equal({ name: 'fastv', vision: [16, 16], llm: [16, 8] });
  });

  it('draws dropped patches for FastV (no vision stage) and takes a custom scale', async () => {
    const out = await visualize(model, { image, merge: 'fastv', outDir: join(dir, 'fastv'), scale: 4, plot: [{ name: 'none', option: 'none' }] });
    expect(out.stages.map((s) => s.stage)).to.deep.equal(['input', 'llm']);
    expect(out.stages[1].dropped).to.equal(8);
    expect(await size(out.stages[1].file)).to.deep.equal(stagePictureSize(56, 4));
    expect(out.counts.map((c) => c.name)).to.deep.equal(['none', 'fastv']);
  });

  it('`illava visualize` writes the files from the command line', () => {
    const outDir = join(dir, 'cli');
    const stdout = execFileSync(process.execPath, [join(REPO_ROOT, 'dist/src/cli.js'), 'visualize', '--model', TINY_LLAVA_DIR, '--image', image, '--merge', 'tome', '--plot', 'none,tome', '--out', outDir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const files = stdout.split('\n').filter((l) => l.includes('.png')).map((l) => l.split('  ')[0]);
    expect(files).to.include(join(outDir, 'tome-01-vision-layer00.png'));
    expect(files).to.include(join(outDir, 'token-counts.png'));
    for (const f of files) expect(existsSync(f), f).to.equal(true);
  });
});
