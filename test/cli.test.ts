// The `illava` command line, run as a user would (a child process on the built CLI).
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, TINY_LLAVA_DIR } from './helpers/fixture.js';

function illava(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [join(REPO_ROOT, 'dist/src/cli.js'), ...args], { encoding: 'utf8', timeout: 120000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('illava CLI', function () {
  it('generate on the embedded default model streams text and prints counts and times per stage', () => {
    const r = illava('generate', '--max-new-tokens', '4', '--merge', 'illava', '--backend', 'wasm');
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout.trim().length).to.be.greaterThan(0);
    expect(r.stderr).to.match(/backend: wasm/);
    // models/default: 4 encoder blocks run, 64 patches; the illava preset scales to blocks 0-3
    // removing 8 each (64 -> 32), then keep 0.65 before LLM layer 1 (32 - round(11.2) = 21).
    expect(r.stderr).to.match(/image 1: 64 patches -> vision layer 0: 56 -> vision layer 1: 48 -> vision layer 2: 40 -> vision layer 3: 32 -> llm layer 1: 21/);
    expect(r.stderr).to.match(/time: preprocess \d+ ms, vision \d+ ms, prefill \d+ ms/);
  });

  it('generate with --model, --image and a JSON merge config', () => {
    const merge = JSON.stringify({ llm: { rule: 'fastv', layers: [1], keep: 0.5 } });
    const r = illava('generate', '--model', TINY_LLAVA_DIR, '--image', join(TINY_LLAVA_DIR, 'image.png'), '--prompt', 'What is it?', '--max-new-tokens', '2', '--merge', merge);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stderr).to.match(/llm layer 1: 8/);
  });

  it('--threads 2 --weights streamed gives the same answer as the defaults', () => {
    const args = ['generate', '--model', TINY_LLAVA_DIR, '--image', join(TINY_LLAVA_DIR, 'image.png'), '--max-new-tokens', '5'];
    const plain = illava(...args);
    const other = illava(...args, '--threads', '2', '--weights', 'streamed');
    expect(plain.code, plain.stderr).to.equal(0);
    expect(other.code, other.stderr).to.equal(0);
    expect(other.stderr).to.match(/weights streamed; 2 thread\(s\)/);
    expect(other.stdout).to.equal(plain.stdout);
    expect(illava(...args, '--threads', '3').code).to.equal(1);
  });

  it('info prints the architecture, parameter count, dtype and backend', () => {
    const r = illava('info', '--model', TINY_LLAVA_DIR);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/vision\s+CLIP ViT 3 layers, width 64/);
    expect(r.stdout).to.match(/decoder\s+LLaMA 2 layers, width 64/);
    expect(r.stdout).to.match(/parameters\s+[\d,]+ loaded/);
    expect(r.stdout).to.match(/stored dtype\s+F32/);
    expect(r.stdout).to.match(/backend\s+(wasm|tensorflow|cpu)/);
  });

  it('--model takes a shipped model by name from any directory; a folder of that name in the working directory wins', () => {
    const cli = join(REPO_ROOT, 'dist/src/cli.js');
    const run = (cwd: string, ...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 120000, cwd });
    const byName = run(tmpdir(), 'info', '--model', 'default');
    expect(byName.status, byName.stderr).to.equal(0);
    expect(byName.stdout).to.match(/^model\s+\S*models\/default\n/);
    expect(byName.stdout).to.match(/decoder\s+LLaMA 4 layers, width 128/);
    const work = mkdtempSync(join(tmpdir(), 'illava-cwd-'));
    try {
      cpSync(TINY_LLAVA_DIR, join(work, 'default'), { recursive: true });
      const local = run(work, 'info', '--model', 'default');
      expect(local.status, local.stderr).to.equal(0);
      expect(local.stdout).to.match(/vision\s+CLIP ViT 3 layers, width 64/);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
    const missing = run(tmpdir(), 'info', '--model', 'no-such-model');
    expect(missing.status).to.equal(1);
    expect(missing.stderr.trim()).to.match(/^illava: model folder '.*no-such-model' does not exist \(shipped models, by name: default[,)]/);
  });

  it('errors are one clear line with a non-zero exit code', () => {
    const cases: Array<[string[], RegExp]> = [
      [['info', '--model', '/nonexistent/model'], /model folder '\/nonexistent\/model' does not exist/],
      [['generate', '--merge', 'bogus', '--max-new-tokens', '1'], /merge spec 'bogus' is neither a preset/],
      [['generate', '--image', '/nonexistent.png', '--max-new-tokens', '1'], /nonexistent\.png.*not found/],
      [['generate', '--max-new-tokens', 'abc'], /--max-new-tokens expects an integer/],
    ];
    for (const [args, pattern] of cases) {
      const r = illava(...args);
      expect(r.code, args.join(' ')).to.equal(1);
      const lines = r.stderr.trim().split('\n').filter((l) => l.startsWith('illava:') || l.startsWith('error:'));
      expect(lines, r.stderr).to.have.length(1);
      expect(lines[0]).to.match(pattern);
    }
  });
});
